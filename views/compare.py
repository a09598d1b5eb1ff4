"""Several models side by side: a view's per-layer measure of each model, its lines placed by relative depth
(`viz.compare.by_depth`). The pages' compare choice and the Python API's `compare` draw the same figure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import plotly.graph_objects as go

from probes import activations, attention, neurons, spectra
from probes.batches import Progress
from probes.sinks import sink_profile
from results.spectra import ModelSpectra
from runtime.builtin import BUILTINS, DERIVED
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.untrained import twin_names
from views.api import Model, model_of, progress_bar
from views.registry import Figure, Run
from viz.compare import by_depth

MOST_MODELS = 3  # one chart holds at most this many models


def comparable_models() -> list[str]:
    """The models a page or a lecture preset offers to compare: the built-ins, the derived MoE and the built-ins'
    untrained twins."""
    return [*BUILTINS, *DERIVED, *twin_names(list(BUILTINS))]


def _text(text: str | None) -> str:
    if text is None:
        raise LmscopeError("This comparison runs the models on a text: give one.")
    return text


def layer_mean(result: ModelSpectra, field: str) -> np.ndarray:
    """Per layer, the mean of a statistic (`alpha`, `kurtosis`, ...) over its block matrices (where finite)."""
    layers = max(m.layer for m in result.matrices) + 1
    values = [[getattr(m, field) for m in result.matrices if m.layer == i] for i in range(layers)]
    finite = [[v for v in each if np.isfinite(v)] for each in values]
    return np.asarray([np.mean(each) if each else np.nan for each in finite], dtype=np.float64)


def _spectra(handle: ModelHandle, _: str | None, cache: ResultCache, on_progress: Progress | None) -> Cached[Any]:
    """Every block matrix's spectrum and entry statistics (alpha and kurtosis read the same result)."""
    return spectra.run(handle, cache, on_progress)


@dataclass(frozen=True)
class Measure:
    """A view's per-layer measure: the probe that gives the result (handle, text, cache, progress), the values
    drawn from it, and how they are labelled."""

    probe: Callable[[ModelHandle, str | None, ResultCache, Progress | None], Cached[Any]]
    values: Callable[[Any], dict[str, np.ndarray]]  # series by label, from the probe's typed result
    title: str
    subtitle: str
    y_title: str
    log_y: bool = False


MEASURES: dict[str, Measure] = {
    "sinks": Measure(
        lambda handle, text, cache, _: attention.run(handle, _text(text), cache),
        lambda result: {"token 0": sink_profile(result).layer_share},
        "Sink share by layer: attention on the first token",
        "Mean over heads and later tokens of the weight on token 0, on the same text.",
        "share of attention on token 0",
    ),
    "massive": Measure(
        lambda handle, text, cache, _: activations.run(handle, _text(text), cache),
        lambda result: {"top 1": result.max_abs, "top 2": result.ranked(2), "median": result.median_abs},
        "Massive activations: the largest |h| of each block's output",
        "On the same text, log scale: top 1 (solid), top 2 (dashed) and the median (dotted). A few features reach "
        "thousands in a trained decoder.",
        "|h|",
        log_y=True,
    ),
    "spectra": Measure(
        _spectra,
        lambda result: {"alpha": layer_mean(result, "alpha")},
        "Power-law exponent alpha by layer",
        "Mean over each block's matrices of the fitted tail exponent of the eigenvalues of WᵀW.",
        "alpha",
    ),
    "weights": Measure(
        _spectra,
        lambda result: {"kurtosis": layer_mean(result, "kurtosis")},
        "How Gaussian the weights are: excess kurtosis by layer",
        "Mean over each block's matrices of the entries' excess kurtosis (0 for Gaussian entries; heavy tails above).",
        "excess kurtosis",
    ),
    "neurons": Measure(
        lambda handle, text, cache, _: neurons.run(handle, [_text(text)], cache),
        lambda result: {"active": neurons.active_share(result, 0.0)},
        "Active MLP neurons by layer",
        "Mean over the text's tokens of the share of neurons whose pre-activation z exceeds 0.",
        "share of neurons active",
    ),
}


def measure(view: str, count: int) -> Measure:
    """The view's measure, for `count` models; a clear error for an unknown view or too many or too few models."""
    if view not in MEASURES:
        raise LmscopeError(f"Unknown comparison '{view}': choose from {', '.join(MEASURES)}.")
    if not 1 <= count <= MOST_MODELS:
        raise LmscopeError(f"Compare one to {MOST_MODELS} models; got {count}.")
    return MEASURES[view]


def comparison_figure(view: str, results: Sequence[tuple[str, object]]) -> go.Figure:
    """The view's measure of each (model name, typed result), one line per model by relative depth."""
    chosen = measure(view, len(results))
    lines = [(name, chosen.values(result)) for name, result in results]
    return by_depth(lines, chosen.title, chosen.y_title, chosen.subtitle, log_y=chosen.log_y)


def depth_figure(name: str, view: str, probes: tuple[ModuleType, ...]) -> Figure:
    """A preset figure of the view's measure on the run's model and the ones it compares (`Run.others`), each
    model's result kept under its name for the caption's check."""

    def draw(run: Run) -> go.Figure:
        chosen = measure(view, 1 + len(run.others))
        results = [
            (handle.name, run.keep(handle.name, chosen.probe(handle, run.text_value, run.cache, run.on_progress)))
            for handle in (run.handle, *run.others)
        ]
        return comparison_figure(view, results)

    return Figure(name, draw, probes, compares=True)


def compare(
    models: Sequence[Model],
    view: str,
    text: str | None = None,
    *,
    cache: ResultCache | None = None,
    progress: bool = True,
) -> go.Figure:
    """One line per model of the view's per-layer measure (sinks: the share of attention on token 0; massive: the
    largest |h|; spectra: the mean alpha; weights: the mean excess kurtosis; neurons: the share of MLP neurons
    active on the text), layers aligned by relative depth, the hover naming each real layer."""
    chosen = measure(view, len(models))
    results = []
    for model in models:
        handle = model_of(model)
        with progress_bar(f"{view} ({handle.name})", progress) as on_progress:
            results.append((handle.name, chosen.probe(handle, text, cache or ResultCache(), on_progress).value))
    return comparison_figure(view, results)
