"""Figures of dropped attention heads: the loss increase of each head dropped alone, and the loss as more and more
heads are dropped, least important first or in random orders."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from results.dropped_heads import DroppedHeads
from viz.attention import head_grid
from viz.theme import legend_below, themed

IMPORTANCE_COLOUR = "#2e6fb7"
RANDOM_COLOUR = "#c0392b"
RANDOM_BAND = "rgba(192, 57, 43, 0.18)"
BASE_COLOUR = "#555555"


def delta_grid(result: DroppedHeads) -> go.Figure:
    """A layer x head heatmap of the NLL increase with only that head dropped, on a diverging scale around 0."""
    fig = head_grid(
        result.delta,
        "Loss increase when one head is dropped",
        "NLL increase (nats)",
        notes=np.full(result.delta.shape, "nats"),
        zmid=0.0,
    )
    return themed(
        fig,
        "Loss increase when one head is dropped",
        f"{result.model}: each of the {result.delta.size} heads zeroed alone; mean NLL of {result.n_tokens} tokens, "
        f"{result.nll_base:.3f} nats with every head (blue: the loss falls)",
    )


def removal_curve(result: DroppedHeads) -> go.Figure:
    """Mean NLL against the number of heads dropped together: least important (by delta) first against random
    orders (their mean, with a band from the lowest to the highest), the unchanged model as a dashed line."""
    removed = result.removed
    share = removed / result.delta.size
    random = result.nll_random
    hover = "%{x} heads (%{customdata:.0%}) dropped: NLL %{y:.3f}<extra>%{fullData.name}</extra>"
    fig = go.Figure(
        [
            go.Scatter(
                x=np.concatenate([removed, removed[::-1]]),
                y=np.concatenate([random.max(axis=0), random.min(axis=0)[::-1]]),
                fill="toself",
                fillcolor=RANDOM_BAND,
                line={"width": 0},
                name=f"random orders: lowest to highest of {result.n_seeds}",
                hoverinfo="skip",
            ),
            go.Scatter(
                x=removed,
                y=random.mean(axis=0),
                customdata=share,
                mode="lines+markers",
                line={"color": RANDOM_COLOUR, "width": 3},
                name=f"random order (mean of {result.n_seeds})",
                hovertemplate=hover,
            ),
            go.Scatter(
                x=removed,
                y=result.nll_by_importance,
                customdata=share,
                mode="lines+markers",
                line={"color": IMPORTANCE_COLOUR, "width": 3},
                name="least important first (smallest single-head increase)",
                hovertemplate=hover,
            ),
        ]
    )
    fig.add_hline(
        y=result.nll_base,
        line={"color": BASE_COLOUR, "dash": "dash"},
        annotation_text=f"every head kept: {result.nll_base:.3f}",
        annotation_position="bottom right",
    )
    fig.update_xaxes(title_text=f"heads dropped (of {result.delta.size})", range=[0, result.delta.size])
    fig.update_yaxes(title_text="mean NLL per token (nats)")
    legend_below(fig, 520)
    return themed(
        fig,
        "Dropping heads: least important first against random",
        f"{result.model}; {result.n_tokens} tokens; a head's importance is the loss increase when it alone is dropped",
    )
