"""What the Python API (`import lmscope`) adds to a view's probe: a model given by name or handle, the user's result
cache unless another is given, a progress bar (tqdm.auto: a widget in a notebook, a line on a terminal), and the
typed result together with the view's figure of it.

Each view module's `run` is its entry from Python, and its CLI command prints what that `run` returns; `figure`
draws any figure a lecture preset can name, through the registry's draw functions that the pages share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

import plotly.graph_objects as go
from tqdm.auto import tqdm
from tqdm.std import tqdm as text_tqdm

from probes.batches import Progress
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.models import load
from views.registry import Run, figures
from viz.layers import mark_sliding_layers

T = TypeVar("T")
Model = ModelHandle | str  # a loaded model, or a name `runtime.models.load` takes


LOADED = 4  # models a process keeps loaded for the API, the most recently asked


@lru_cache(maxsize=LOADED)
def loaded(name: str) -> ModelHandle:
    """The model of that name (`runtime.models.load`), loaded once per process: asking again returns the same
    handle. A derived model built on first use shows its build's progress bar."""
    with progress_bar(f"Building {name}", True) as bar:
        return load(name, on_progress=bar)


def model_of(model: Model) -> ModelHandle:
    """The loaded model: a handle as it is, a name through `loaded`."""
    return model if isinstance(model, ModelHandle) else loaded(model)


@contextmanager
def progress_bar(what: str, shown: bool) -> Iterator[Progress | None]:
    """A (done, total) callback that moves a tqdm.auto bar described `what` (opened at the first report, so a
    probe that reports nothing, or a cache hit, shows none), closed on exit; None when not shown."""
    if not shown:
        yield None
        return
    bars: list[text_tqdm] = []  # tqdm.auto's bars are tqdm.std's too

    def advance(done: int, total: int) -> None:
        if not bars:
            try:
                bars.append(tqdm(desc=what, total=total, leave=False))
            except ImportError:  # a notebook without ipywidgets: tqdm.auto's widget cannot draw, a text bar can
                bars.append(text_tqdm(desc=what, total=total, leave=False))
        bars[0].total = total
        bars[0].n = done
        bars[0].refresh()

    try:
        yield advance
    finally:
        for bar in bars:
            bar.close()


@dataclass(frozen=True)
class Result(Generic[T]):
    """A view's typed result (`value`: the result the dashboard draws), the model it came from, whether the disk
    cache held it, and the view's figure of it. The result's own fields read through: `r.tokens` is
    `r.value.tokens`."""

    value: T
    model: ModelHandle
    cached: bool
    draw: Callable[..., go.Figure] = field(repr=False)

    def figure(self, **options: Any) -> go.Figure:
        """The view's figure of this result, as its page draws it (sliding-window layers marked)."""
        return mark_sliding_layers(self.draw(self.value, **options), self.model.layer_windows)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "value":  # not found on the wrapper itself (copy, pickle, early reads)
            raise AttributeError(name)
        return getattr(self.value, name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *dir(self.value)})


def call(
    model: Model,
    probe: Callable[[ModelHandle, ResultCache, Progress | None], Cached[T]],
    draw: Callable[..., go.Figure],
    cache: ResultCache | None,
    progress: bool,
    what: str,
) -> Result[T]:
    """Run `probe(handle, cache, on_progress)` with the defaults above and wrap its result with `draw`."""
    handle = model_of(model)
    with progress_bar(f"{what} ({handle.name})", progress) as on_progress:
        cached = probe(handle, cache or ResultCache(), on_progress)
    return Result(cached.value, handle, cached.hit, draw)


@dataclass(frozen=True)
class Drawn:
    """A registered figure drawn on a model: the figure, the probe results it drew by name, and the options as
    they were used (defaults and choices filled in)."""

    figure: go.Figure
    results: dict[str, object]
    options: dict[str, object]


def figure(
    name: str,
    model: Model,
    text: str | None = None,
    *,
    cache: ResultCache | None = None,
    progress: bool = True,
    **options: object,
) -> Drawn:
    """Any figure a lecture preset can name (`views.registry.figures`), drawn on the model and text with the
    options it needs (a clear error names a missing one), by the draw function its page shares."""
    known = figures()
    if name not in known:
        raise LmscopeError(f"Unknown figure '{name}': choose from {', '.join(sorted(known))}.")
    handle = model_of(model)
    with progress_bar(f"{name} ({handle.name})", progress) as on_progress:
        run = Run(handle, options, text, cache or ResultCache(), on_progress, label=f"Figure '{name}'")
        drawn = known[name][1].draw(run)
    unused = sorted(set(options) - set(run.used))
    if unused:
        raise LmscopeError(f"Figure '{name}' takes no option {', '.join(unused)}.")
    return Drawn(mark_sliding_layers(drawn, handle.layer_windows), dict(run.results), {**run.used, **run.picked})
