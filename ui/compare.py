"""The pages' "Compare models" section: up to two more models beside the page's own (in the URL as
`compare=a,b`), and each of the page's comparisons of them on one chart (views.compare)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from runtime.errors import LmscopeError
from ui.models import loaded_model, result_cache, waited
from ui.scaffold import Page, Setting
from views.compare import MOST_MODELS, comparable_models, comparison

OTHERS = MOST_MODELS - 1  # models chosen beside the page's own


def _at_most(chosen: list[str]) -> None:
    if len(chosen) > OTHERS:
        raise LmscopeError(f"at most {OTHERS} models beside the page's own")


def compare_section(
    page: Page, *views: str, text: str | None = None, options: dict[str, Any] | None = None
) -> dict[str, list[tuple[str, Any]]]:
    """The section: the choice, then (once made) a chart per comparison (`views.compare.COMPARISONS`, run at the
    page's `options`) of the page's model and the chosen ones; a model that cannot be loaded or run is said so, and
    the rest of the page is not held up. Returns each drawn comparison's [(model name, typed result)] (none when no
    model is chosen), for the page's own tables."""
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
    drawn: dict[str, list[tuple[str, Any]]] = {}
    if not chosen:
        return drawn
    others = [loaded_model(name) for name in chosen]
    if None in others:  # could not be loaded: already said
        return drawn
    handles = [page.handle, *(h for h in others if h is not None)]
    settings = options or {}
    for view in views:
        chosen_view = comparison(view, len(handles))
        results = []
        with page.errors(f"Comparing with {', '.join(chosen)}"):
            for handle in handles:
                done = waited(
                    f"Measuring {handle.name}...",
                    lambda progress, h=handle: chosen_view.probe(h, text, result_cache(), progress, settings),
                )
                results.append((handle.name, done.value))
            page.show(chosen_view.draw(results, settings), f"compare_{view}", f"{page.handle.name}-compare-{view}")
            drawn[view] = results
    return drawn
