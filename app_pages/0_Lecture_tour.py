"""The lecture tour: the sparsity and low-rankness lecture, section by section, with its figures live on real models."""

from __future__ import annotations

import streamlit as st

from lecture import catalog, presets
from lecture.render import render
from runtime.errors import LmscopeError
from ui import state
from ui.charts import show_figure
from ui.layout import page
from ui.models import loaded_model, result_cache, waited
from viz.theme import slide

PRESENTER_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], header { display: none !important; }
.block-container { padding-top: 1.5rem !important; max-width: 100% !important; }
h1 { font-size: 2.2rem !important; } h2 { font-size: 3rem !important; }
[data-testid="stMarkdown"] p, [data-testid="stMarkdown"] li { font-size: 1.7rem !important; }
</style>"""

sections = catalog.sections()
page(
    "Lecture tour",
    "The lecture on sparsity and low-rankness, section by section, each with its figures computed live on the "
    "built-in models. Every figure opens in its own view with the same settings.",
)
state.init_number("tour_section", "section", 0, len(sections))
if "tour_presenter" not in st.session_state:
    st.session_state["tour_presenter"] = st.query_params.get("presenter") == "1"


def step(by: int) -> None:
    """Move to the previous or next section."""
    st.session_state["tour_section"] = min(max(st.session_state["tour_section"] + by, 0), len(sections) - 1)


controls = st.columns([1, 1, 4, 2], vertical_alignment="bottom")
controls[0].button(
    "Previous", icon=":material/arrow_back:", on_click=step, args=(-1,), shortcut="Left", width="stretch"
)
controls[1].button("Next", icon=":material/arrow_forward:", on_click=step, args=(1,), shortcut="Right", width="stretch")
index = controls[2].selectbox(
    "Section", range(len(sections)), format_func=lambda i: f"{i + 1}. {sections[i].title}", key="tour_section"
)
presenter = controls[3].toggle(
    "Presenter mode", key="tour_presenter", help="One section per screen, large fonts; ← → keys step."
)
state.sync_url(section=index, presenter=int(presenter))
if presenter:
    st.html(PRESENTER_CSS)

section = sections[index]
st.header(f"{index + 1}. {section.title}")
st.markdown(section.text)
for name in section.presets:
    preset = catalog.preset(name)
    handle = loaded_model(preset.model)  # the dashboard's own copy, shared rather than loaded a second time
    if handle is None:
        continue
    try:
        rendered = waited(
            preset.title, lambda progress, handle=handle: render(preset, handle, result_cache(), progress)
        )
    except LmscopeError as exc:
        st.error(f"{preset.title}: {exc}")
        continue
    if presenter:  # the figure as a slide; the caption as large text, which wraps to any screen width
        figure = slide(rendered.figure, 1600, 900).update_layout(width=None, autosize=True)  # the screen's width
        show_figure(figure, f"tour_{name}", name)
        st.markdown(f"*{preset.caption}*")
    else:
        show_figure(rendered.figure, f"tour_{name}", name)
        st.caption(preset.caption)
    # A new tab is a new session, so the view starts from the link's settings rather than this session's.
    st.link_button(
        "Open this in its view", presets.view_url(preset.page, rendered.query), icon=":material/open_in_new:"
    )
