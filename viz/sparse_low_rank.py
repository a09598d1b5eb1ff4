"""Figures of the opening slide: error against the share kept, in a DCT basis and by rank, for an image, a data
matrix, a weight matrix and a Gaussian one; and the image and the weight matrix rebuilt from a few of each."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.sparse_low_rank import Reconstruction, SparseLowRank
from viz.theme import legend_below, themed

COLOURS = {"image": "#2e6fb7", "data": "#2ca02c", "weight": "#c0392b", "gaussian": "#7f7f7f"}
DASHES = {"image": "solid", "data": "solid", "weight": "solid", "gaussian": "dot"}


def error_curves(result: SparseLowRank) -> go.Figure:
    """Left: relative error against the share of DCT coefficients kept; right: against the rank kept (as a share of
    the smaller side); one line per matrix, log x."""
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=("Sparse: the largest DCT coefficients kept", "Low rank: the top singular directions kept"),
    )
    for column, errors in ((1, result.dct_error), (2, result.svd_error)):
        for i, name in enumerate(result.names):
            shape = "x".join(map(str, result.shapes[i]))
            fig.add_trace(
                go.Scatter(
                    x=result.shares * 100,
                    y=errors[i],
                    mode="lines+markers",
                    name=f"{result.labels[i]} ({shape})",
                    legendgroup=name,
                    showlegend=column == 1,
                    line={"color": COLOURS[name], "dash": DASHES[name]},
                    hovertemplate=f"{result.labels[i]}: %{{x:.1f}}% kept, error %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=column,
            )
    at = 0.05
    themed(
        fig,
        "Sparse and low-rank: an image is, a trained weight matrix is not",
        f"Relative error ‖X − X̂‖ / ‖X − mean‖ of each mean-centred matrix. At {at:.0%} kept: the image "
        f"{result.error('dct', 'image', at):.2f} (DCT) and {result.error('svd', 'image', at):.2f} (rank), the "
        f"weight<br>{result.error('dct', 'weight', at):.2f} and {result.error('svd', 'weight', at):.2f}, a Gaussian "
        f"matrix {result.error('dct', 'gaussian', at):.2f} and {result.error('svd', 'gaussian', at):.2f}.",
    )
    legend_below(fig, height=580)
    fig.update_layout(margin={"t": 150})
    fig.update_xaxes(type="log", title_text="share of DCT coefficients kept (%)", row=1, col=1)
    fig.update_xaxes(type="log", title_text="rank kept (% of the smaller side)", row=1, col=2)
    fig.update_yaxes(title_text="relative error", range=[0, 1.02])
    return fig


def reconstruction_grid(found: list[Reconstruction]) -> go.Figure:
    """One row per matrix: the original, its sparse (DCT) and its low-rank reconstruction, on one colour scale per
    row (grey for the image, diverging for a weight)."""
    first = found[0]
    titles = [
        title
        for r in found
        for title in (
            r.label,
            f"{r.share:.0%} of the DCT coefficients: error {r.dct_error:.2f}",
            f"rank {r.rank}: error {r.svd_error:.2f}",
        )
    ]
    fig = make_subplots(rows=len(found), cols=3, subplot_titles=titles, vertical_spacing=0.08, horizontal_spacing=0.03)
    for row, r in enumerate(found, start=1):
        grey = r is first
        top = float(np.percentile(np.abs(r.original - r.original.mean()), 99.5))
        scale = (
            {"colorscale": "gray", "zmin": 0.0, "zmax": 1.0}
            if grey
            else {"colorscale": "RdBu_r", "zmid": 0.0, "zmin": -top, "zmax": top}
        )
        for column, values in enumerate((r.original, r.sparse, r.low_rank), start=1):
            fig.add_trace(
                go.Heatmap(z=values.astype(np.float32), showscale=False, hoverinfo="skip", **scale),
                row=row,
                col=column,
            )
    themed(
        fig,
        "Rebuilt from a few coefficients or a few directions",
        "The photograph stays recognisable from a few percent of either; the weight matrix does not "
        "(colour: each weight, red positive, blue negative).",
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    for row in range(1, len(found) + 1):
        for column in range(1, 4):
            index = (row - 1) * 3 + column
            fig.update_yaxes(scaleanchor="x" if index == 1 else f"x{index}", row=row, col=column)
    fig.update_layout(height=380 * len(found) + 160, margin={"t": 150})
    return fig
