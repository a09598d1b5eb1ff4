"""Loaded models shared by every session of the server (st.cache_resource), with errors shown, not raised."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.scriptrunner import get_script_run_ctx

from probes.batches import Progress
from runtime import engine, jobs
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.models import load
from ui import state
from ui.markdown import literal
from ui.navigation import HOME

T = TypeVar("T")
log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False, max_entries=4)
def _loaded(name: str, _progress: Progress | None = None) -> ModelHandle:
    return load(name, on_progress=_progress)


@st.cache_resource(show_spinner=False)
def result_cache() -> ResultCache:
    """The server's one disk cache of probe results; the compute engine is started with it (in this process, or a
    Dask cluster: `runtime.engine`)."""
    engine.start()
    return ResultCache()


def compute_engine() -> str:
    """Where this server's probe computations run (the engine is started if need be), or why they cannot."""
    try:
        return f"Computations run {engine.start()}."
    except LmscopeError as exc:
        return str(exc)


def loaded_model(name: str) -> ModelHandle | None:
    """The model, loaded once per server; on failure an error is shown and None returned."""
    try:
        with st.spinner(f"Loading {name} (the first load of a built-in GGUF model converts it, about a minute)..."):
            return waited(
                f"Building {name} (once; it is kept in the model store)", lambda progress: _loaded(name, progress)
            )
    except LmscopeError as exc:  # st.cache_resource does not cache exceptions, so a fixed problem retries
        show_error(exc)
        return None


def show_error(exc: LmscopeError, about: str = "") -> None:
    """A user error on a page, shown the one way every page shows them (as written: its model names and values are
    never read as Markdown)."""
    st.error(literal(f"{about}: {exc}" if about else str(exc)))


def current_model() -> ModelHandle:
    """The chosen model, loaded; if it cannot be, the page shows why and stops."""
    handle = loaded_model(state.model_name())
    if handle is None:
        st.stop()
    return handle


def _session() -> str | None:
    context = get_script_run_ctx(suppress_warning=True)
    return context.session_id if context is not None else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _show_wait(slot: DeltaGenerator, what: str, status: jobs.Status) -> None:
    """Draw what a waiting request is waiting for: its place in the queue, or the computation's progress."""
    if status.state == "queued":
        slot.info(
            f"{what} Queued: {_plural(status.ahead, 'computation')} ahead of yours "
            f"({status.running} running on this server).",
            icon=":material/hourglass_top:",
        )
        return
    shared = " (another session asked for the same result: sharing its computation)" if status.shared else ""
    if status.total:
        slot.progress(min(1.0, status.done / status.total), text=f"{what}: {status.done} of {status.total}...{shared}")
    else:
        slot.info(f"{what}{shared}", icon=":material/progress_activity:")


def waited(what: str, call: Callable[[Progress], T]) -> T:
    """call(progress) with its wait shown below: the queue ahead of it, or the progress of the computation it
    waits for (its own, or another session's identical one). User errors propagate as LmscopeError; anything
    else is logged with its traceback and becomes a plain LmscopeError, so no traceback reaches the browser."""
    slot = st.empty()
    try:
        with jobs.waiting(_session(), lambda status: _show_wait(slot, what, status)):
            return call(jobs.report)
    except LmscopeError:
        raise
    except Exception as exc:
        log.exception("A probe failed unexpectedly: %s", what)
        raise LmscopeError(
            f"Something went wrong on the server while computing this ({type(exc).__name__}); the server log has "
            "the details. Try another text or model."
        ) from exc
    finally:
        slot.empty()


def probe_with_progress(what: str, run: Callable[[Progress], Cached[T]]) -> Cached[T]:
    """Run a long probe with its wait and progress shown ("what: i of n..."); a user error is shown with a link
    home and stops the page."""
    try:
        cached = waited(what, run)
    except LmscopeError as exc:
        show_error(exc)
        st.page_link(HOME, label="Change the model or text", icon=":material/edit:")
        st.stop()
    if cached.warning:
        st.warning(literal(cached.warning))
    return cached


def probe_or_stop(what: str, run: Callable[[], Cached[T]]) -> Cached[T]:
    """Run a probe with its wait shown; a user error is shown with a link home and stops the page."""
    return probe_with_progress(what, lambda progress: run())
