"""Forward hooks that belong to one call, never to the shared model.

Every session of the server shares one loaded model. A hook registered on one of its modules would fire in every
thread's forward pass, and a copy of the model (compression works on a deepcopy) would carry it. So no probe
registers a hook on a module. lmscope registers one forward hook and one forward pre-hook with torch itself, once
per process (`torch.nn.modules.module.register_module_forward_hook`); they look up the callbacks of the current
call in a context variable, keyed by module. A call sets its callbacks with `observing`; another thread's context
does not see them. Outside such a block the global hooks read one context variable and return.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

# (module, positional inputs, output) -> a replacement output, or None to keep it
ForwardCallback = Callable[[nn.Module, tuple, Any], Any]
# (module, positional inputs) -> replacement inputs, or None to keep them
PreCallback = Callable[[nn.Module, tuple], Any]
# (module, positional inputs, keyword inputs) after the call: hears how a module was called, changes nothing
CallCallback = Callable[[nn.Module, tuple, dict], None]


@dataclass(frozen=True)
class _Observers:
    forward: Mapping[nn.Module, tuple[ForwardCallback, ...]]
    pre: Mapping[nn.Module, tuple[PreCallback, ...]]
    calls: Mapping[nn.Module, tuple[CallCallback, ...]]


_ACTIVE: contextvars.ContextVar[_Observers | None] = contextvars.ContextVar("lmscope_hooks", default=None)


def _dispatch_forward(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    observers = _ACTIVE.get()
    if observers is None:
        return None
    for heard in observers.calls.get(module, ()):
        heard(module, args, kwargs)
    replaced = None
    for callback in observers.forward.get(module, ()):
        new = callback(module, args, output if replaced is None else replaced)
        if new is not None:
            replaced = new
    return replaced


def _dispatch_pre(module: nn.Module, args: tuple) -> Any:
    observers = _ACTIVE.get()
    if observers is None:
        return None
    replaced = None
    for callback in observers.pre.get(module, ()):
        new = callback(module, args if replaced is None else replaced)
        if new is not None:
            replaced = new if isinstance(new, tuple) else (new,)
    return replaced


register_module_forward_hook(_dispatch_forward, with_kwargs=True)
register_module_forward_pre_hook(_dispatch_pre)


def _merged(old: Mapping[nn.Module, tuple], new: Mapping[nn.Module, Callable]) -> dict[nn.Module, tuple]:
    merged = dict(old)
    for module, callback in new.items():
        merged[module] = (*merged.get(module, ()), callback)
    return merged


@contextmanager
def observing(
    forward: Mapping[nn.Module, ForwardCallback] | None = None,
    pre: Mapping[nn.Module, PreCallback] | None = None,
    calls: Mapping[nn.Module, CallCallback] | None = None,
) -> Iterator[None]:
    """Within the block, and only in this thread/context, each module's forward calls pass through its callbacks
    (inner blocks add theirs after the outer ones'); `calls` hear each call's positional and keyword inputs."""
    current = _ACTIVE.get() or _Observers({}, {}, {})
    token = _ACTIVE.set(
        _Observers(
            _merged(current.forward, forward or {}),
            _merged(current.pre, pre or {}),
            _merged(current.calls, calls or {}),
        )
    )
    try:
        yield
    finally:
        _ACTIVE.reset(token)
