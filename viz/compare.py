"""Several models on one per-layer chart: each model's lines placed by relative depth, so that a 30-layer and an
18-layer model line up (the first block at 0, the last at 1) while the hover names the real layer. A model may
have several series (e.g. the largest, second largest and median |h|): one colour per model, one dash per series."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

from viz.theme import legend_below, themed

DASHES = ("solid", "dash", "dot")


def relative_depth(n_layers: int) -> np.ndarray:
    """Layer i of n at i / (n - 1): 0 for the first block, 1 for the last (a single layer sits at 0)."""
    return np.arange(n_layers) / max(n_layers - 1, 1)


def by_depth(
    lines: Sequence[tuple[str, Mapping[str, np.ndarray]]],
    title: str,
    y_title: str,
    subtitle: str = "",
    log_y: bool = False,
) -> go.Figure:
    """For each (model, {series: value per layer}), its series against relative depth (the first series solid,
    the next dashed, then dotted; one colour per model); the hover shows the model's own layer."""
    colours = px.colors.qualitative.D3
    traces = []
    for i, (model, series) in enumerate(lines):
        for j, (label, values) in enumerate(series.items()):
            name = f"{model} ({len(values)} layers)" + (f": {label}" if len(series) > 1 else "")
            traces.append(
                go.Scatter(
                    x=relative_depth(len(values)),
                    y=np.asarray(values, dtype=np.float64),
                    customdata=np.arange(len(values)),
                    name=name,
                    legendgroup=model,
                    mode="lines+markers" if j == 0 else "lines",
                    line={"color": colours[i % len(colours)], "width": 3 if j == 0 else 2, "dash": DASHES[j % 3]},
                    hovertemplate=f"{name}<br>layer %{{customdata}} of {len(values)}: %{{y:.4g}}<extra></extra>",
                )
            )
    fig = go.Figure(traces)
    themed(fig, title, subtitle or None)
    legend_below(fig, height=480 + 8 * max(0, len(traces) - 3))  # a legend row for about every three more
    fig.update_xaxes(title_text="relative depth (0: first block, 1: last)", range=[-0.03, 1.03], tickformat=".0%")
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear")
    return fig
