"""Several models on one per-layer chart: each model's line placed by relative depth, so that a 30-layer and an
18-layer model line up (the first block at 0, the last at 1) while the hover names the real layer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

from viz.theme import legend_below, themed


def relative_depth(n_layers: int) -> np.ndarray:
    """Layer i of n at i / (n - 1): 0 for the first block, 1 for the last (a single layer sits at 0)."""
    return np.arange(n_layers) / max(n_layers - 1, 1)


def by_depth(
    lines: Sequence[tuple[str, np.ndarray]], title: str, y_title: str, subtitle: str = "", log_y: bool = False
) -> go.Figure:
    """One line per (model, value per layer), against relative depth; the hover shows the model's own layer."""
    colours = px.colors.qualitative.D3
    fig = go.Figure(
        [
            go.Scatter(
                x=relative_depth(len(values)),
                y=np.asarray(values, dtype=np.float64),
                customdata=np.arange(len(values)),
                name=f"{model} ({len(values)} layers)",
                mode="lines+markers",
                line={"color": colours[i % len(colours)], "width": 3 if i == 0 else 2},
                hovertemplate=f"{model}<br>layer %{{customdata}} of {len(values)}: %{{y:.4g}}<extra></extra>",
            )
            for i, (model, values) in enumerate(lines)
        ]
    )
    themed(fig, title, subtitle or None)
    legend_below(fig, height=480)
    fig.update_xaxes(title_text="relative depth (0: first block, 1: last)", range=[-0.03, 1.03], tickformat=".0%")
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear")
    return fig
