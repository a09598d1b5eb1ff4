"""Loaded models shared by every session of the server (st.cache_resource), with errors shown, not raised."""

from __future__ import annotations

import streamlit as st

from probes.cache import ResultCache
from probes.errors import LmscopeError
from probes.models import ModelHandle, load


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
