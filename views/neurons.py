"""The distributions and neurons view: hidden states against a Gaussian, active and dead MLP neurons."""

from __future__ import annotations

import plotly.graph_objects as go

from probes import activations, distribution
from results.activations import LayerActivations
from results.distribution import Distribution
from views.registry import Figure, Run, View, register
from viz.distribution import distribution_figure


def block_output_figure(values: LayerActivations, spread: Distribution) -> go.Figure:
    """One block's output values as a histogram against a robustly fitted Gaussian, with its QQ plot."""
    title = f"Output of block {values.layer}: {len(values.tokens)} tokens x {values.values.shape[1]} features"
    return distribution_figure(spread, title, "value")


def _draw_histogram(run: Run) -> go.Figure:
    layer = run.integer("layer")
    values = run.keep("layer", activations.layer_run(run.handle, run.text, layer, run.cache))
    spread = distribution.describe(values.values)
    run.results["distribution"] = spread
    run.pick(layer=layer)
    return block_output_figure(values, spread)


VIEW = register(
    View(
        key="neurons",
        title="Distributions and neurons",
        summary="hidden states against a Gaussian, active and dead MLP neurons",
        icon="ssid_chart",
        group="Activations",
        page="app_pages/6_Distributions_and_neurons.py",
        caption=(
            "Hidden states are approximately Gaussian except for a few huge outliers; MLP neurons are sparse: on each token "
            "most are (nearly) off, and some are never on at all."
        ),
        figures=(Figure("activation_histogram", _draw_histogram, (activations,)),),
    )
)
