"""Figures of MLP neuron activity: the share of neurons active per token and of dead neurons, per layer."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from viz.theme import themed

TEXT_COLOUR = "#c0392b"
CORPUS_COLOUR = "#2e6fb7"
DEAD_COLOUR = "#555555"


def sparsity_figure(
    text_active: np.ndarray, corpus_active: np.ndarray, corpus_dead: np.ndarray, tau: float, activation: str, model: str
) -> go.Figure:
    """Per layer: the mean share of neurons active on a token (your text, the corpus), and the share never active
    on the corpus."""
    layers = np.arange(len(text_active))
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
        subplot_titles=("Active neurons per token", "Dead neurons: never active on the corpus"),
    )
    for share, name, colour in ((text_active, "your text", TEXT_COLOUR), (corpus_active, "corpus", CORPUS_COLOUR)):
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=share,
                name=name,
                mode="lines+markers",
                line={"color": colour},
                hovertemplate=f"{name}, layer %{{x}}: %{{y:.1%}} of neurons active per token<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Bar(
            x=layers,
            y=corpus_dead,
            name="dead (corpus)",
            marker_color=DEAD_COLOUR,
            hovertemplate="layer %{x}: %{y:.2%} of neurons never active<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="layer", dtick=max(1, len(layers) // 12), range=[-0.5, len(layers) - 0.5])
    fig.update_yaxes(title_text="share of neurons", tickformat=".0%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="share of neurons", tickformat=".1%", rangemode="tozero", row=1, col=2)
    fig.update_layout(
        height=480, legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0.0}, margin={"t": 110, "b": 120}
    )
    return themed(
        fig, f"MLP neurons: active means pre-activation z > {tau:g}", f"{model}; activation function: {activation}"
    )
