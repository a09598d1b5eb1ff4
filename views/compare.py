"""Several models side by side from Python: one per-layer measure of a view, each model's line by relative depth
(`viz.compare.by_depth`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from probes.sinks import sink_profile
from results.spectra import ModelSpectra
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from views import massive, sinks, spectra
from views.api import Model, Result
from viz.compare import by_depth


def _mean_alpha(result: ModelSpectra) -> np.ndarray:
    """Per layer, the mean power-law exponent of its block matrices (those with a fit)."""
    layers = max(m.layer for m in result.matrices) + 1
    alphas = [[m.alpha for m in result.matrices if m.layer == i and np.isfinite(m.alpha)] for i in range(layers)]
    return np.asarray([np.mean(a) if a else np.nan for a in alphas], dtype=np.float64)


@dataclass(frozen=True)
class Measure:
    """A view's per-layer measure: how to get the result, which values to draw, and how to label them."""

    run: Callable[[Model, str | None, ResultCache | None, bool], Result]
    values: Callable[[Any], np.ndarray]  # of the typed result
    title: str
    subtitle: str
    y_title: str
    log_y: bool = False


MEASURES: dict[str, Measure] = {
    "sinks": Measure(
        lambda model, text, cache, progress: sinks.run(model, _text(text), cache=cache, progress=progress),
        lambda result: sink_profile(result).layer_share,
        "Sink share by layer: attention on the first token",
        "Mean over heads and later tokens of the weight on token 0, on the same text.",
        "share of attention on token 0",
    ),
    "massive": Measure(
        lambda model, text, cache, progress: massive.run(model, _text(text), cache=cache, progress=progress),
        lambda result: result.max_abs,
        "Massive activations: the largest |h| of each block's output",
        "On the same text, log scale: a few features reach thousands in a trained decoder.",
        "largest |h|",
        log_y=True,
    ),
    "spectra": Measure(
        lambda model, text, cache, progress: spectra.run(model, cache=cache, progress=progress),
        _mean_alpha,
        "Power-law exponent alpha by layer",
        "Mean over each block's matrices of the fitted tail exponent of the eigenvalues of WᵀW.",
        "alpha",
    ),
}


def _text(text: str | None) -> str:
    if text is None:
        raise LmscopeError("This comparison runs the models on a text: give one.")
    return text


def compare(
    models: Sequence[Model],
    view: str,
    text: str | None = None,
    *,
    cache: ResultCache | None = None,
    progress: bool = True,
) -> go.Figure:
    """One line per model of the view's per-layer measure (sinks: the share of attention on token 0; massive: the
    largest |h|; spectra: the mean alpha), layers aligned by relative depth, the hover naming each real layer."""
    if view not in MEASURES:
        raise LmscopeError(f"Unknown comparison '{view}': choose from {', '.join(MEASURES)}.")
    if not 1 <= len(models) <= 3:
        raise LmscopeError(f"Compare one to three models; got {len(models)}.")
    measure = MEASURES[view]
    results = [measure.run(model, text, cache, progress) for model in models]
    lines = [(result.model.name, measure.values(result.value)) for result in results]
    return by_depth(lines, measure.title, measure.y_title, measure.subtitle, log_y=measure.log_y)
