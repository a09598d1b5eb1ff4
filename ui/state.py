"""What the user chose (model, text, view options), kept in session state and mirrored in the URL."""

from __future__ import annotations

import streamlit as st

from probes.text import clean
from runtime.builtin import DEFAULT_MODEL

DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog. Attention sinks appear when a model has nowhere else "
    "to put its attention, so the first token soaks it up."
)
# A URL is not a place for a book: longer texts are typed or pasted, not linked.
MAX_URL_TEXT = 8000
MODEL = "lm_model"
TEXT = "lm_text"
CUT = "lm_text_cut"  # the length of a linked text that was cut to MAX_URL_TEXT, until a page says so


def _init() -> None:
    """Fill session state from the URL the first time this session runs (a shared link reopens the view)."""
    if MODEL in st.session_state:
        return
    params = st.query_params
    st.session_state[MODEL] = params.get("model", "").strip() or DEFAULT_MODEL
    text = params.get("text", "")
    if len(text) > MAX_URL_TEXT:
        st.session_state[CUT] = len(text)
    st.session_state[TEXT] = clean(text[:MAX_URL_TEXT]) if text.strip() else DEFAULT_TEXT


def linked_text_cut() -> int | None:
    """The length of the link's text if it was cut to its first MAX_URL_TEXT characters; said once (None after)."""
    _init()
    return st.session_state.pop(CUT, None)


def model_name() -> str:
    """The chosen model: a built-in name, a Hugging Face id or a local folder."""
    _init()
    return st.session_state[MODEL]


def text() -> str:
    """The chosen text."""
    _init()
    return st.session_state[TEXT]


def choose(model: str | None = None, new_text: str | None = None) -> None:
    """Record a new choice of model and/or text."""
    _init()
    if model is not None:
        st.session_state[MODEL] = model.strip()
    if new_text is not None:
        st.session_state[TEXT] = new_text


def sync_url(**view: int | str) -> None:
    """Write the choice and this page's view options into the URL so that a copied link reopens them."""
    params = {"model": model_name(), **{k: str(v) for k, v in view.items()}}
    if len(text()) <= MAX_URL_TEXT:
        params["text"] = text()
    for key in [k for k in st.query_params if k not in params]:
        del st.query_params[key]
    st.query_params.update(params)
