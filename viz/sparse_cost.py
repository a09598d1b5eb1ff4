"""What sparse weights cost: the speed-up of sparse over dense products against sparsity, and their memory."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.sparse_cost import SparseCost
from viz.pruning import BASE_COLOUR, COLOURS
from viz.theme import legend_below, themed

TOKEN_COLOURS = ("#c0392b", "#2e6fb7", "#16a085", "#8e44ad")


def sparse_cost_figure(cost: SparseCost) -> go.Figure:
    """Left: dense time over CSR time against sparsity, one line per token count, 1 marked, the crossover drawn,
    2:4 as a point where it ran, int8 and int4 weights as points at no sparsity. Right: the block's weights in MB,
    dense, CSR and quantized."""
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.62, 0.38],
        horizontal_spacing=0.1,
        subplot_titles=("Speed-up of the sparse product over dense", "Memory of the block's weights"),
    )
    percent = 100 * cost.sparsities
    speedup, crossover = cost.speedup(), cost.crossover()
    for row, n in enumerate(cost.tokens):
        colour = TOKEN_COLOURS[row % len(TOKEN_COLOURS)]
        fig.add_trace(
            go.Scatter(
                x=percent,
                y=speedup[row],
                customdata=np.stack(
                    [cost.csr_seconds[row] * 1e3, np.full(len(percent), cost.dense_seconds[row] * 1e3)], 1
                ),
                mode="lines+markers",
                line={"color": colour, "width": 3},
                name=f"CSR, {n} token{'s' if n > 1 else ''}",
                hovertemplate="%{x:.0f}% zeros: %{y:.2f}x (%{customdata[0]:.2f} ms sparse, %{customdata[1]:.2f} ms "
                "dense)<extra></extra>",
            ),
            row=1,
            col=1,
        )
        if not np.isnan(crossover[row]):
            fig.add_vline(
                x=100 * crossover[row],
                line={"color": colour, "dash": "dot"},
                annotation_text=f"{100 * crossover[row]:.0f}%",
                annotation_font_color=colour,
            )
        if not np.isnan(cost.semi_seconds[row]):
            fig.add_trace(
                go.Scatter(
                    x=[50],
                    y=[cost.dense_seconds[row] / cost.semi_seconds[row]],
                    mode="markers",
                    marker={"symbol": "diamond", "size": 14, "color": colour, "line": {"color": "black", "width": 1}},
                    name=f"2:4 semi-structured, {n} token{'s' if n > 1 else ''}",
                    hovertemplate="2:4: %{y:.2f}x<extra></extra>",
                ),
                row=1,
                col=1,
            )
    for label, seconds, symbol in (("int8", cost.int8_seconds, "square"), ("int4", cost.int4_seconds, "triangle-up")):
        for row, n in enumerate(cost.tokens):
            if np.isnan(seconds[row]):
                continue
            fig.add_trace(
                go.Scatter(
                    x=[0],
                    y=[cost.dense_seconds[row] / seconds[row]],
                    mode="markers",
                    marker={"symbol": symbol, "size": 13, "color": TOKEN_COLOURS[row % len(TOKEN_COLOURS)]},
                    name=f"{label} weights (quantized, none pruned), {n} token{'s' if n > 1 else ''}",
                    hovertemplate=f"{label} weight-only: %{{y:.2f}}x ({seconds[row] * 1e3:.2f} ms)<extra></extra>",
                ),
                row=1,
                col=1,
            )
    fig.add_trace(
        go.Scatter(
            x=[0, 0],
            y=[cost.int8_bytes / 1e6, cost.int4_bytes / 1e6],
            text=["int8", "int4"],
            mode="markers+text",
            textposition="middle right",
            marker={"symbol": "square", "size": 11, "color": COLOURS["gptq"]},
            name="quantized memory (codes and scales)",
            hovertemplate="%{text}: %{y:.2f} MB<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=[percent[0], percent[-1]],
            y=[1, 1],
            mode="lines",
            line={"color": BASE_COLOUR, "dash": "dash"},
            name="dense (speed-up 1)",
            hoverinfo="skip",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=percent,
            y=cost.csr_bytes / 1e6,
            mode="lines+markers",
            line={"color": COLOURS["sparsegpt"], "width": 3},
            name="CSR memory (values, column indices, row pointers)",
            hovertemplate="%{x:.0f}% zeros: %{y:.2f} MB<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=[percent[0], percent[-1]],
            y=[cost.dense_bytes / 1e6] * 2,
            mode="lines",
            line={"color": BASE_COLOUR, "dash": "dash"},
            name=f"dense memory ({cost.dtype})",
            hoverinfo="skip",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="share of weights pruned (%)", range=[-2, 101])
    fig.update_yaxes(
        title_text="dense time / sparse time",
        type="log",
        tickvals=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100],
        row=1,
        col=1,
    )
    fig.update_yaxes(title_text="MB", rangemode="tozero", row=1, col=2)
    legend_below(fig, 580)
    fig.update_layout(margin={"t": 150})
    shapes = ", ".join(f"{m}x{n}" for m, n in cost.shapes)
    return themed(
        fig,
        "What sparsity costs: sparse products against dense, on this server",
        f"{cost.model}, layer {cost.layer}'s products ({shapes}) on {cost.device}, {cost.threads} threads, "
        f"{cost.dtype}<br>above the dashed line the sparse product is faster; dotted: where it starts to be",
    )
