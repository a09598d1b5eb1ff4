"""Figures of fine-tuning updates: the effective rank and relative size of each block matrix's W1 - W0."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.updates import Difference
from viz.pruning import BASE_COLOUR, COLOURS, QUANT_COLOUR
from viz.theme import legend_below, themed


def difference_figure(differences: list[Difference], base: str, tuned: str) -> go.Figure:
    """Per matrix, the effective rank of W1 - W0 against its full rank, and the size of the update."""
    names = [d.name for d in differences]
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("Effective rank of W₁ − W₀", "‖W₁ − W₀‖ / ‖W₀‖"),
    )
    fig.add_trace(
        go.Bar(x=names, y=[d.effective_rank for d in differences], marker_color=QUANT_COLOUR, name="effective rank"),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=names,
            y=[min(d.shape) for d in differences],
            mode="markers",
            marker={"color": BASE_COLOUR},
            name="full rank",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(x=names, y=[d.relative_norm for d in differences], marker_color=COLOURS["prune"], name="relative size"),
        row=2,
        col=1,
    )
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_xaxes(tickangle=-60, row=2, col=1)
    legend_below(fig, 720)
    return themed(fig, "What fine-tuning changed", f"{tuned} minus {base}, every block matrix")
