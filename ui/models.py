"""Loaded models shared by every session of the server (st.cache_resource), with errors shown, not raised."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from probes.batches import Progress
from probes.cache import Cached, ResultCache
from probes.errors import LmscopeError
from probes.models import ModelHandle, load
from ui import state

T = TypeVar("T")


@st.cache_resource(show_spinner=False, max_entries=4)
def _loaded(name: str) -> ModelHandle:
    return load(name)


@st.cache_resource(show_spinner=False)
def result_cache() -> ResultCache:
    """The server's one disk cache of probe results."""
    return ResultCache()


def loaded_model(name: str) -> ModelHandle | None:
    """The model, loaded once per server; on failure an error is shown and None returned."""
    try:
        with st.spinner(f"Loading {name} (the first load of a built-in GGUF model converts it, about a minute)..."):
            return _loaded(name)
    except LmscopeError as exc:  # st.cache_resource does not cache exceptions, so a fixed problem retries
        st.error(str(exc))
        return None


def current_model() -> ModelHandle:
    """The chosen model, loaded; if it cannot be, the page shows why and stops."""
    handle = loaded_model(state.model_name())
    if handle is None:
        st.stop()
    return handle


def probe_with_progress(what: str, run: Callable[[Progress], Cached[T]]) -> Cached[T]:
    """Run a long probe under a progress bar ("what: i of n..."); a user error is shown and stops the page."""
    bar = st.empty()
    try:
        cached = run(lambda done, total: bar.progress(done / total, text=f"{what}: {done} of {total}..."))
    except LmscopeError as exc:
        st.error(str(exc))
        st.stop()
    bar.empty()
    if cached.warning:
        st.warning(cached.warning)
    return cached


def probe_or_stop(spinner: str, run: Callable[[], Cached[T]]) -> Cached[T]:
    """Run a probe under a spinner; a user error is shown with a link home and stops the page."""
    try:
        with st.spinner(spinner):
            cached = run()
    except LmscopeError as exc:
        st.error(str(exc))
        st.page_link("app.py", label="Change the model or text", icon=":material/edit:")
        st.stop()
    if cached.warning:
        st.warning(cached.warning)
    return cached
