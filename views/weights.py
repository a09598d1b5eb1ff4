"""The weight distributions view: any weight matrix against a Gaussian, and heavy tails across layers."""

from __future__ import annotations

import plotly.graph_objects as go

from probes import distribution, spectra
from probes.cache import Cached, ResultCache, cache_key
from probes.handle import ModelHandle
from results.distribution import Distribution
from views.registry import Figure, Run, View, register
from viz.distribution import distribution_figure

NAME = "weight-distribution"
VERSION = 1  # bump when what weight_distribution caches changes


def weight_distribution(handle: ModelHandle, matrix: str, cache: ResultCache) -> Cached[Distribution]:
    """The histogram and tail statistics of one weight matrix's entries, cached."""
    key = cache_key(handle.fingerprint, NAME, VERSION, {"matrix": matrix})
    return cache.fetch(key, lambda: distribution.describe(spectra.weight_matrix(handle, matrix)))


def matrix_figure(spread: Distribution, matrix: str) -> go.Figure:
    """One matrix's entries as a histogram against a robustly fitted Gaussian, with its QQ plot."""
    return distribution_figure(spread, f"Entries of {matrix}", "weight")


def _draw_histogram(run: Run) -> go.Figure:
    matrix = run.string("matrix")
    return matrix_figure(run.keep("distribution", weight_distribution(run.handle, matrix, run.cache)), matrix)


VIEW = register(
    View(
        key="weights",
        title="Weight distributions",
        summary="any weight matrix against a Gaussian, and heavy tails across layers",
        icon="bar_chart",
        group="Weights",
        page="app_pages/7_Weight_distributions.py",
        figures=(Figure("weight_histogram", _draw_histogram, (spectra,)),),
    )
)
