"""Render a lecture preset headless: run its figure's probes (through the disk cache) on a loaded model and draw
it with the same probe -> figure code the dashboard page uses (the figure's draw function in its view).

What is lecture-specific lives here and in lecture.checks: the preset's title on the figure, the record of how it
was made, and the checks that the caption's claims hold on the results.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import plotly.graph_objects as go

from lecture.presets import Preset
from probes.batches import Progress
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from views.registry import Run, figures
from viz.layers import mark_sliding_layers
from viz.theme import layout_of, title_on_top

T = TypeVar("T")


class CaptionMismatch(LmscopeError):
    """A rendered figure does not show what its preset's caption says (`reason`: what it shows instead)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.reason = reason


@dataclass
class Rendered:
    """A preset's figure, with everything needed to regenerate it and say where it came from."""

    preset: Preset
    figure: go.Figure
    handle: ModelHandle  # the model it was drawn on
    settings: dict  # preset name and version, figure, model, text, options as used, probe versions
    seconds: float  # running the probes (or reading them from the cache) and drawing; the model load excluded
    cached: bool  # every probe result came from the disk cache
    query: dict[str, str] = field(default_factory=dict)  # preset.query, with the model and what the render picked
    results: dict[str, object] = field(default_factory=dict)  # the probe results drawn, by name (what checks read)
    others: tuple[ModelHandle, ...] = ()  # the models a comparing figure drew beside `handle`

    @property
    def model(self) -> str:
        return self.handle.name

    @property
    def own_model(self) -> bool:
        """Drawn on the model the preset (and its caption) was written for."""
        return self.handle.name == self.preset.model

    def result(self, name: str, kind: type[T]) -> T:
        """The probe result the draw kept under `name`, which must be a `kind`."""
        value = self.results.get(name)
        if not isinstance(value, kind):
            raise LmscopeError(f"Preset '{self.preset.name}' kept no {kind.__name__} called '{name}'.")
        return value

    def fail(self, message: str) -> CaptionMismatch:
        """The error a check raises when the figure does not show what the caption says."""
        return CaptionMismatch(f"Preset '{self.preset.name}' on {self.model}", message)


def _retitle(figure: go.Figure, preset: Preset) -> None:
    """The preset's title on top; the builder's own title and subtitle, which name the layer, head or model,
    become the subtitle."""
    title = layout_of(figure).title
    own = [title.text, title.subtitle.text]
    figure.update_layout(
        title_text=preset.title, title_subtitle_text="<br>".join(t for t in own if t and t != preset.title)
    )
    title_on_top(figure)  # the subtitle may have grown by the builder's title


def _plain(value: object) -> object:
    """JSON-ready option values (numpy scalars and tuples become Python numbers and lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def render(
    preset: Preset,
    handle: ModelHandle,
    cache: ResultCache,
    on_progress: Progress | None = None,
    others: Sequence[ModelHandle] = (),
) -> Rendered:
    """Run the preset's probes (through the disk cache) on the loaded model, and for a comparing figure on the
    `others` (its `compare` models, loaded by the caller), and draw its figure."""
    view, figure_kind = figures()[preset.figure]
    if figure_kind.compares != bool(others):
        wanted = "the models it compares" if figure_kind.compares else "one model only"
        raise LmscopeError(f"Preset '{preset.name}' draws {wanted}.")
    run = Run(handle, preset.options, preset.text, cache, on_progress, f"Preset '{preset.name}'", others=tuple(others))
    started = time.perf_counter()
    figure = figure_kind.draw(run)
    seconds = time.perf_counter() - started
    unused = sorted(set(preset.options) - set(run.used))
    if unused:
        raise LmscopeError(
            f"Preset '{preset.name}' has options its figure {preset.figure} does not use: {', '.join(unused)}."
        )
    _retitle(figure, preset)
    mark_sliding_layers(figure, handle.layer_windows)
    settings = {
        "preset": preset.name,
        "version": preset.version,
        "figure": preset.figure,
        "view": view.key,
        "model": handle.name,
        **({"compare": [other.name for other in others]} if others else {}),
        "text": preset.text,
        "options": {key: _plain(value) for key, value in run.used.items()},
        "picked": {key: _plain(value) for key, value in run.picked.items()},
        "probe_versions": {
            module.__name__.rsplit(".", 1)[-1]: getattr(module, "VERSION") for module in figure_kind.probes
        },
    }
    query = {**preset.query, "model": handle.name, **{key: str(value) for key, value in run.picked.items()}}
    query |= {"compare": ",".join(other.name for other in others)} if others else {}
    return Rendered(
        preset=preset,
        figure=figure,
        handle=handle,
        settings=settings,
        seconds=seconds,
        cached=bool(run.hits) and all(run.hits),
        query=query,
        results=run.results,
        others=tuple(others),
    )
