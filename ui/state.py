"""What the user chose (model, text, view options), kept in session state and mirrored in the URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

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
N = TypeVar("N", int, float)


def _init() -> None:
    """Fill session state from the URL the first time this session runs (a shared link reopens the view)."""
    if MODEL in st.session_state:
        return
    params = st.query_params
    st.session_state[MODEL] = params.get("model", "").strip() or DEFAULT_MODEL
    text = params.get("text", "")
    st.session_state[TEXT] = clean(text[:MAX_URL_TEXT]) if text.strip() else DEFAULT_TEXT


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


def url_number(name: str, default: N, upper: N, lower: N = 0, cast: Callable[[str], N] = int) -> tuple[N, str | None]:
    """A number view option from the URL (int, or float with cast=float), checked against [lower, upper); bad
    values fall back to the default with a message."""
    raw = st.query_params.get(name)
    if raw is None:
        return default, None
    try:
        value = cast(raw)
    except ValueError:
        return default, f"The link's {name}={raw!r} is not a number; showing {name} {default}."
    if not lower <= value < upper:  # also False for NaN
        top = upper - 1 if cast is int else upper
        return default, f"The link's {name}={value} is out of range ({lower} to {top}); showing {name} {default}."
    return value, None


def init_number(key: str, name: str, default: N, upper: N, lower: N = 0, cast: Callable[[str], N] = int) -> None:
    """Start the widget state `key` from the URL's `name` (checked against [lower, upper), with a warning when
    bad); later, reset it to the default when a new model or text no longer allows it."""
    if key not in st.session_state:
        st.session_state[key], problem = url_number(name, default, upper, lower, cast)
        if problem:
            st.warning(problem)
    elif not lower <= st.session_state[key] < upper:
        st.session_state[key] = default


def url_choice(name: str, options: tuple[str, ...] | list[str], default: str) -> str:
    """A choice from the URL if it is one of the options, else the default."""
    value = st.query_params.get(name, default)
    return value if value in options else default
