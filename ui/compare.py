"""The pages' "Compare" section: up to two more models beside the page's own (in the URL as `compare=a,b`), or,
where the page's measures read the text, another text on the page's model (`compare_by=texts&compare_text=...`);
each of the page's comparisons of them on one chart (views.compare)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from probes.text import clean
from runtime.errors import LmscopeError
from ui.models import loaded_model, result_cache, waited
from ui.scaffold import Page, Setting
from ui.state import MAX_URL_TEXT
from views.compare import COMPARISONS, MOST_MODELS, Subject, comparable_models, comparison, text_labels

OTHERS = MOST_MODELS - 1  # models chosen beside the page's own
BY = {"models": "other models", "texts": "another text on this model"}


def _at_most(chosen: list[str]) -> None:
    if len(chosen) > OTHERS:
        raise LmscopeError(f"at most {OTHERS} models beside the page's own")


def _subjects(page: Page, by_texts: bool, text: str | None) -> list[Subject]:
    """The page's model on its text and what the user chose beside it (nothing yet: only the page's own)."""
    own = page.handle
    if by_texts:
        other = clean(page.widget("compare_text", st.text_area, f"Another text for {own.name}", height=100))
        if not other.strip() or text is None:
            return [Subject(own.name, own, text)]
        labels = text_labels([text, other])
        return [Subject(labels[0], own, text), Subject(labels[1], own, other)]
    chosen = page.widget(
        "compare",
        st.multiselect,
        f"Compare {own.name} with",
        max_selections=OTHERS,
        placeholder="another built-in model, or an untrained twin",
        help="Their lines are drawn by relative depth (0: first block, 1: last), so that models of different "
        "depths line up; the hover names each model's own layer. The choice is in the URL.",
    )
    others = [loaded_model(name) for name in chosen]
    if None in others:  # could not be loaded: already said
        return [Subject(own.name, own, text)]
    return [Subject(own.name, own, text), *(Subject(h.name, h, text) for h in others if h is not None)]


def compare_section(
    page: Page, *views: str, text: str | None = None, options: dict[str, Any] | None = None
) -> dict[str, list[tuple[str, Any]]]:
    """The section: the choice, then (once made) a chart per comparison (`views.compare.COMPARISONS`, run at the
    page's `options`) of the page's model and the chosen ones, or of its text and another; a model that cannot be
    loaded or run is said so, and the rest of the page is not held up. Returns each drawn comparison's [(label,
    typed result)] (none when nothing is chosen), for the page's own tables."""
    by_text = [view for view in views if COMPARISONS[view].reads_text]
    offers_texts = bool(by_text) and text is not None
    page.settings(
        Setting(
            "compare_by",
            "choice",
            "models",
            options=list(BY) if offers_texts else ["models"],
            allowed="models or texts",
        ),
        Setting(
            "compare",
            "multi",
            [],
            options=[name for name in comparable_models() if name != page.handle.name],
            check=_at_most,
            allowed="built-in models or their untrained twins",
        ),
        Setting("compare_text", "str", "", length=MAX_URL_TEXT),
    )
    st.subheader("Compare")
    by_texts = offers_texts and (
        page.widget("compare_by", st.radio, "Compare with", horizontal=True, format_func=BY.get) == "texts"
    )
    subjects = _subjects(page, by_texts, text)
    drawn: dict[str, list[tuple[str, Any]]] = {}
    if len(subjects) < 2:
        return drawn
    names = ", ".join(s.label for s in subjects[1:])
    for view in by_text if by_texts else views:
        chosen = comparison(view, len(subjects), texts=by_texts)
        results = []
        with page.errors(f"Comparing with {names}"):
            for subject in subjects:
                done = waited(
                    f"Measuring {subject.label}...",
                    lambda progress, s=subject: chosen.probe(s.handle, s.text, result_cache(), progress, options or {}),
                )
                results.append((subject.label, done.value))
            page.show(chosen.draw(results, options or {}), f"compare_{view}", f"{page.handle.name}-compare-{view}")
            drawn[view] = results
    return drawn
