"""The weight distributions view: any weight matrix against a Gaussian, and heavy tails across layers."""

from __future__ import annotations

import plotly.graph_objects as go

from probes import spectra
from results.distribution import Distribution
from views.registry import Figure, Run, View, register
from viz.distribution import distribution_figure


def matrix_figure(spread: Distribution, matrix: str) -> go.Figure:
    """One matrix's entries as a histogram against a robustly fitted Gaussian, with its QQ plot."""
    return distribution_figure(spread, f"Entries of {matrix}", "weight")


def _draw_histogram(run: Run) -> go.Figure:
    matrix = run.string("matrix")
    return matrix_figure(run.keep("distribution", spectra.weight_distribution(run.handle, matrix, run.cache)), matrix)


VIEW = register(
    View(
        key="weights",
        title="Weight distributions",
        summary="any weight matrix against a Gaussian, and heavy tails across layers",
        icon="bar_chart",
        group="Weights",
        page="app_pages/7_Weight_distributions.py",
        caption=(
            "Trained weights are dense and look Gaussian: a histogram against a fitted Gaussian, its kurtosis and tails, "
            "for one matrix and for every matrix of the model at once. No text needed: this view reads the weights alone."
        ),
        figures=(Figure("weight_histogram", _draw_histogram, (spectra,)),),
    )
)
