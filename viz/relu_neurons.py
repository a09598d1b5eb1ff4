"""The figure of dead ReLU neurons: the share of activations that are exactly zero and the neurons that never fire,
before and after training, and the trained neurons' firing rates."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.relu_neurons import ReluNeurons
from viz.theme import legend_below, themed

STAGE_COLOURS = {"initialised": "#7f7f7f", "trained": "#c0392b"}
LAYER_COLOURS = ("#2e6fb7", "#2ca02c")


def relu_activity(result: ReluNeurons) -> go.Figure:
    """Left: per hidden layer, the share of ReLU outputs that are exactly 0 at each stage (the dead neurons in the
    label); right: a histogram of the trained neurons' firing rates, the dead ones at 0."""
    sizes = result.layer_sizes[1:-1]
    layers = [f"hidden layer {i + 1} ({n} neurons)" for i, n in enumerate(sizes)]
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
        subplot_titles=("Activations that are exactly 0", "How often each trained neuron fires"),
    )
    dead = result.dead
    for s, stage in enumerate(result.stages):
        fig.add_trace(
            go.Bar(
                x=layers,
                y=result.zero_share[s],
                name=f"{stage} (test accuracy {result.accuracy[s]:.0%})",
                marker_color=STAGE_COLOURS[stage],
                text=[f"{z:.0%}; {d} dead" for z, d in zip(result.zero_share[s], dead[s], strict=True)],
                textposition="outside",
                hovertemplate=f"{stage}, %{{x}}: %{{y:.1%}} of activations are 0<extra></extra>",
            ),
            row=1,
            col=1,
        )
    trained = result.stages.index("trained")
    edges = np.linspace(0.0, 1.0, 11)
    bins = ["never", *(f"{100 * lo:.0f}-{100 * hi:.0f}%" for lo, hi in zip(edges[:-1], edges[1:]))]
    for i, rates in enumerate(result.rates[trained]):
        firing = rates[rates > 0]
        counts = [int((rates == 0).sum()), *np.histogram(firing, bins=edges)[0].tolist()]
        fig.add_trace(
            go.Bar(
                x=bins,
                y=counts,
                name=f"{layers[i]}, trained",
                marker_color=LAYER_COLOURS[i % len(LAYER_COLOURS)],
                hovertemplate="firing on %{x} of the inputs: %{y} neurons<extra></extra>",
            ),
            row=1,
            col=2,
        )
    total_dead, total = int(dead[trained].sum()), int(np.sum(sizes))
    themed(
        fig,
        "Dead ReLU neurons: a network where zero means zero",
        f"The lottery-ticket MLP ({'-'.join(map(str, result.layer_sizes))}) on {result.n_inputs} test digits, seed "
        f"{result.seed}. Trained, {result.zero_share[trained].mean():.0%} of its hidden activations are exactly 0 "
        f"and<br>{total_dead} of its {total} hidden neurons fire on no test input at all.",
    )
    legend_below(fig, height=540)
    fig.update_layout(barmode="group", margin={"t": 150})
    fig.update_yaxes(title_text="share of activations", range=[0, 1], tickformat=".0%", row=1, col=1)
    fig.update_xaxes(title_text="share of test inputs on which the neuron fires", row=1, col=2)
    fig.update_yaxes(title_text="neurons", row=1, col=2)
    return fig
