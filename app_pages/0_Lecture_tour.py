"""The lecture tour: the sparsity and low-rankness lecture, section by section, with its figures live on real models."""

from __future__ import annotations

import streamlit as st

from lecture import catalog, presets
from lecture.render import render
from ui.charts import show_figure
from ui.models import loaded_model, result_cache, waited
from ui.scaffold import Setting, start
from viz.theme import slide, title_html

PRESENTER_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], header { display: none !important; }
.block-container { padding-top: 1.5rem !important; max-width: 100% !important; }
h1 { font-size: 2.2rem !important; } h2 { font-size: 3rem !important; }
[data-testid="stMarkdown"] p, [data-testid="stMarkdown"] li { font-size: 1.7rem !important; }
.lm-title { font-size: 2.4rem; color: #2a3f5f; line-height: 1.2; margin-top: 1rem; }
.lm-subtitle { font-size: 1.35rem; color: #2a3f5f; line-height: 1.35; margin-top: 0.4rem; }
</style>"""
SLIDE = (1600, 900)  # the size a presenter's slide is laid out at, then stretched to the screen's width

sections = catalog.sections()
page = start(__file__)
page.settings(
    Setting("section", "choice", 0, options=range(len(sections)), allowed=f"a section (0 to {len(sections) - 1})"),
    Setting("presenter", "bool", False),
)


def step(by: int) -> None:
    """Move to the previous or next section."""
    page.set("section", min(max(page.value("section") + by, 0), len(sections) - 1))


controls = st.columns([1, 1, 4, 2], vertical_alignment="bottom")
controls[0].button("Back", icon=":material/arrow_back:", on_click=step, args=(-1,), shortcut="Left", width="stretch")
controls[1].button("Next", icon=":material/arrow_forward:", on_click=step, args=(1,), shortcut="Right", width="stretch")
index = page.widget("section", controls[2].selectbox, "Section", format_func=lambda i: f"{i + 1}. {sections[i].title}")
presenter = page.widget(
    "presenter", controls[3].toggle, "Presenter mode", help="One section per screen, large fonts; ← → keys step."
)
if presenter:
    st.html(PRESENTER_CSS)


def show(name: str, preset: presets.Preset) -> None:
    """A preset's figure, computed live, with its caption and a link to its view."""
    handle = loaded_model(preset.model)  # the dashboard's own copy, shared rather than loaded a second time
    others = [loaded_model(name) for name in preset.compare]
    if handle is None or None in others:  # could not be loaded: already said
        return
    compared = [other for other in others if other is not None]
    rendered = waited(preset.title, lambda progress: render(preset, handle, result_cache(), progress, compared))
    if presenter:  # the figure as a slide, its titles and caption as large text that wraps to any screen width
        st.html(title_html(rendered.figure))
        figure = slide(rendered.figure, *SLIDE, titles=False, fit_height=True).update_layout(width=None, autosize=True)
        show_figure(figure, page.key(name), name, download=slide(rendered.figure, *SLIDE))
        st.markdown(f"*{preset.caption}*")
    else:
        show_figure(rendered.figure, page.key(name), name)
        st.caption(preset.caption)
    # A new tab is a new session, so the view starts from the link's settings rather than this session's.
    st.link_button(
        "Open this in its view", presets.view_url(preset.page, rendered.query), icon=":material/open_in_new:"
    )


section = sections[index]
st.header(f"{index + 1}. {section.title}")
st.markdown(section.text)
for name in section.presets:
    preset = catalog.preset(name)
    with page.errors(about=preset.title):
        show(name, preset)
