"""One way to write a cached probe: a module-level function of the model and its inputs, declared once.

A probe's cached computation is a function at module level whose parameters are the model `handle`, its inputs, and,
if it needs them, the result `cache` (for a nested result it fetches) and an `on_progress(done, total)` callback;
`CachedProbe(name, version, function)` declares it, and `probe.cached(handle, cache, **inputs)` gives its result:

    def _attention(handle: ModelHandle, token_ids: list[int], logits: bool) -> AttentionResult: ...
    ATTENTION = CachedProbe("attention", VERSION, _attention)
    ATTENTION.cached(handle, cache, token_ids=ids, logits=False)  # -> Cached[AttentionResult]

The rule, checked here so that nobody has to remember it: the cache key is the model's fingerprint, the probe's
name and version, the versions of the probes it `depends` on (whose results it uses), and every input, each given
by keyword at every call (no defaults: an input cannot be left out of the key); an input is a JSON value (dicts with
string keys) or a numpy array (keyed by a digest of its bytes). What a cluster worker receives is therefore
picklable by construction: the function travels by reference, the handle and the cache as names
(`runtime.cluster.ship`), the progress callback as the runtime's (`jobs.report`; the asker's own callback hears the
steps computed in its process), the inputs as plain data. A lambda, a nested function or an input that is not data
is refused, at declaration or at the call, with a message that says which.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

import numpy as np

from runtime import jobs
from runtime.cache import Cached, ResultCache, cache_key
from runtime.handle import ModelHandle

R = TypeVar("R")
Progress = Callable[[int, int], None]
# Parameters the runtime fills in; every other parameter is an input.
RUNTIME_PARAMETERS = ("handle", "cache", "on_progress")
_declared: dict[str, CachedProbe] = {}


class Undeclarable(TypeError):
    """A computation or an input that would not travel to a cluster worker as data, or would escape the key."""


@dataclass(frozen=True)
class Reporter:
    """The progress callback a computation receives: the running job's (`jobs.report`: the executor's status, or
    the cluster's events on a worker) and, in the asker's process, the asker's own; it travels as the runtime's."""

    listener: Progress | None = None

    def __call__(self, done: int, total: int) -> None:
        jobs.report(done, total)
        if self.listener is not None and self.listener is not jobs.report:
            self.listener(done, total)

    def __reduce__(self) -> tuple[type[Reporter], tuple]:
        return Reporter, ()


def key_value(value: object, where: str) -> object:
    """The value as it enters a cache key: JSON as it is, a numpy array as its type, shape and digest; raises
    Undeclarable for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [key_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise Undeclarable(f"{where}: a dict input needs string keys (JSON would turn the others into strings)")
        return {k: key_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return {"array": value.dtype.str, "shape": list(value.shape), "sha256": digest}
    raise Undeclarable(f"{where} is a {type(value).__name__}: inputs are JSON values or numeric numpy arrays")


class CachedProbe(Generic[R]):
    """A cached computation, declared once: its name, version, the probes whose results it uses, and its function,
    whose parameters other than `handle`, `cache` and `on_progress` are its inputs."""

    def __init__(
        self,
        name: str,
        version: int,
        function: Callable[..., R],
        depends: tuple[CachedProbe, ...] = (),
        fingerprint: str | None = None,
    ) -> None:
        parameters = _parameters(function)
        self.name, self.version, self.function, self.depends = name, version, function, depends
        self.inputs = tuple(p for p in parameters if p not in RUNTIME_PARAMETERS)
        self.runtime = frozenset(parameters) - set(self.inputs)
        if ("handle" in self.runtime) == (fingerprint is not None):
            raise Undeclarable(f"probe '{name}': a function of the model, or a fixed fingerprint in place of one")
        self.fingerprint = fingerprint
        _register(self)

    def __repr__(self) -> str:
        return f"CachedProbe({self.name!r}, {self.version})"

    def versions(self) -> dict[str, int]:
        """The versions of the probes this one depends on, directly or through them, by name."""
        found: dict[str, int] = {}
        for probe in self.depends:
            found |= {probe.name: probe.version, **probe.versions()}
        return found

    def key(self, handle: ModelHandle | None, inputs: Mapping[str, object]) -> str:
        """The cache key of this probe on this model with these inputs (all of them, by keyword)."""
        missing, extra = set(self.inputs) - set(inputs), set(inputs) - set(self.inputs)
        if missing or extra:
            raise Undeclarable(
                f"probe '{self.name}' takes the inputs {', '.join(self.inputs) or 'none'}; "
                f"missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        keyed = {name: key_value(inputs[name], f"probe '{self.name}': input '{name}'") for name in self.inputs}
        fingerprint = self.fingerprint if handle is None else handle.fingerprint
        if fingerprint is None:
            raise Undeclarable(f"probe '{self.name}' runs on a model: give its handle")
        return cache_key(fingerprint, self.name, self.version, keyed, self.versions())

    def task(
        self, handle: ModelHandle | None, cache: ResultCache, on_progress: Progress | None = None, **inputs: object
    ) -> Callable[[], R]:
        """The computation as the executor runs it (maybe on a cluster worker): the function bound to its arguments."""
        if on_progress is not None and "on_progress" not in self.runtime:
            raise Undeclarable(f"probe '{self.name}' reports no progress: its function takes no on_progress")
        given = {"handle": handle, "cache": cache, "on_progress": Reporter(on_progress)}
        return partial(self.function, **{name: given[name] for name in self.runtime}, **inputs)

    def cached(
        self, handle: ModelHandle | None, cache: ResultCache, on_progress: Progress | None = None, **inputs: object
    ) -> Cached[R]:
        """The probe's result for these inputs: from the cache, else computed once (for every concurrent asker)
        through the executor and stored."""
        key = self.key(handle, inputs)
        return cache.fetch(key, self.task(handle, cache, on_progress, **inputs))


def _parameters(function: Callable) -> list[str]:
    """The function's parameter names; Undeclarable unless it is found by its name in its module, with plain
    parameters and no defaults on its inputs."""
    name = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
    module = sys.modules.get(getattr(function, "__module__", "") or "")
    found: object = module
    for part in getattr(function, "__qualname__", "<lambda>").split("."):
        found = getattr(found, part, None)
    if found is not function:
        raise Undeclarable(f"{name} is not a module-level function: a worker could not find it by its name")
    parameters = inspect.signature(function).parameters.values()
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise Undeclarable(f"{name}: *{p.name} would let inputs escape the cache key")
        if p.name not in RUNTIME_PARAMETERS and p.default is not p.empty:
            raise Undeclarable(f"{name}: input '{p.name}' has a default, so a call could leave it out of the key")
    return [p.name for p in parameters]


def _register(probe: CachedProbe) -> None:
    """Keep the probe among the declared ones; a second probe under the same name would share its keys."""
    known = _declared.get(probe.name)
    same = known is not None and (known.function.__module__, known.function.__qualname__) == (
        probe.function.__module__,
        probe.function.__qualname__,
    )
    if known is not None and not same:
        raise Undeclarable(
            f"two probes are named '{probe.name}': {known.function.__module__} and {probe.function.__module__}"
        )
    _declared[probe.name] = probe


def declared() -> list[CachedProbe]:
    """Every probe declared so far (in the modules imported), by name."""
    return [_declared[name] for name in sorted(_declared)]
