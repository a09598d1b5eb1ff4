"""Which routing the derived MoE's forward passes use: a context variable, so that each session's forward passes
on the one shared model route their own way (MoEfication, probes.moefication)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from results.moefication import Setting

# A context variable, not a module attribute: Streamlit serves sessions from threads sharing one model, and
# each must route its own forward passes. None means dense (used only to measure the base model's loss).
_ACTIVE: ContextVar[Setting | None] = ContextVar("moefication_setting", default=Setting())


def current() -> Setting | None:
    """The routing this thread/context's forward passes use; None while `dense()` is in force."""
    return _ACTIVE.get()


def active() -> Setting:
    """The setting forward passes in this thread/context use."""
    return _ACTIVE.get() or Setting()


@contextmanager
def routed(setting: Setting) -> Iterator[None]:
    """Within the block, every MoefiedMLP in this thread/context routes with `setting`."""
    setting.check()
    token = _ACTIVE.set(setting)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@contextmanager
def dense() -> Iterator[None]:
    """Within the block, MoefiedMLPs skip routing entirely and compute the dense MLP."""
    token = _ACTIVE.set(None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
