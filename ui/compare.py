"""The pages' "Compare models" section: up to two more models beside the page's own (in the URL as
`compare=a,b`), and the view's per-layer measure of each drawn on one chart by relative depth (views.compare)."""

from __future__ import annotations

import streamlit as st

from runtime.errors import LmscopeError
from ui.models import loaded_model, result_cache, waited
from ui.scaffold import Page, Setting
from views.compare import MOST_MODELS, comparable_models, comparison_figure, measure

OTHERS = MOST_MODELS - 1  # models chosen beside the page's own


def _at_most(chosen: list[str]) -> None:
    if len(chosen) > OTHERS:
        raise LmscopeError(f"at most {OTHERS} models beside the page's own")


def compare_section(page: Page, view: str, text: str | None = None) -> None:
    """The section: the choice, then (once made) the chart of the page's model and the chosen ones; a model that
    cannot be loaded or run is said so, and the rest of the page is not held up."""
    page.settings(
        Setting(
            "compare",
            "multi",
            [],
            options=[name for name in comparable_models() if name != page.handle.name],
            check=_at_most,
            allowed="built-in models or their untrained twins",
        )
    )
    st.subheader("Compare models")
    chosen = page.widget(
        "compare",
        st.multiselect,
        f"Compare {page.handle.name} with",
        max_selections=OTHERS,
        placeholder="another built-in model, or an untrained twin",
        help="Their lines are drawn by relative depth (0: first block, 1: last), so that models of different "
        "depths line up; the hover names each model's own layer. The choice is in the URL.",
    )
    if not chosen:
        return
    handles = [page.handle, *(loaded_model(name) for name in chosen)]
    results = []
    with page.errors(f"Comparing with {', '.join(chosen)}"):
        for handle in handles:
            if handle is None:  # could not be loaded: already said
                return
            done = waited(
                f"Measuring {handle.name}...",
                lambda progress, h=handle: measure(view, 1).probe(h, text, result_cache(), progress),
            )
            results.append((handle.name, done.value))
        page.show(comparison_figure(view, results), "compare_chart", f"{page.handle.name}-compare-{view}")
