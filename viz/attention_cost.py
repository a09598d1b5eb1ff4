"""What attention costs against the context length: time and memory of a forward pass on log-log axes, with the
slopes of n² and n to read the exponents against."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.attention_cost import AttentionCost
from viz.theme import legend_below, themed

KIND_COLOURS = {"eager": "#c0392b", "chunked": "#8e44ad", "window": "#16a085"}
REFERENCE = "#888888"


def _guides(fig: go.Figure, lengths: np.ndarray, anchor: float, col: int) -> None:
    """Dotted n² and n lines through the first point `anchor`, to compare the measured slopes with."""
    for power, name in ((2, "∝ n²"), (1, "∝ n")):
        fig.add_trace(
            go.Scatter(
                x=lengths,
                y=anchor * (lengths / lengths[0]) ** power,
                mode="lines",
                line={"color": REFERENCE, "dash": "dot", "width": 1.5},
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                hovertemplate=f"{name}<extra></extra>",
            ),
            row=1,
            col=col,
        )


def attention_cost_figure(cost: AttentionCost) -> go.Figure:
    """Left: seconds against tokens, in the attention layers (solid) and for the whole pass (dashed), one colour per
    way of computing attention. Right: the pass's peak memory. Both log-log, legend names with the fitted exponents."""
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=("Time of one forward pass", "Peak memory of the pass"),
    )
    lengths = cost.lengths.astype(float)
    megabytes = cost.peak_bytes / 2**20
    for i, (kind, label) in enumerate(zip(cost.kinds, cost.labels)):
        colour = KIND_COLOURS[kind]
        slope, memory = cost.exponent(kind), cost.exponent(kind, "peak_bytes")
        name = f"{label}: attention time ∝ n^{slope:.2f}, memory ∝ n^{memory:.2f}"
        lines = (
            (cost.attention_seconds[i], "solid", "in the attention layers", 1, name),
            (cost.seconds[i], "dash", "the whole pass", 1, None),
            (megabytes[i], "solid", "peak memory (MB)", 2, None),
        )
        for values, dash, what, col, legend in lines:
            unit = "MB" if col == 2 else "s"
            fig.add_trace(
                go.Scatter(
                    x=lengths,
                    y=values,
                    mode="lines+markers",
                    line={"color": colour, "dash": dash, "width": 3 if dash == "solid" else 2},
                    marker={"size": 8},
                    name=legend or label,
                    legendgroup=kind,
                    showlegend=legend is not None,
                    hovertemplate=f"{label}<br>%{{x:,}} tokens: %{{y:,.3g}} {unit} ({what})<extra></extra>",
                ),
                row=1,
                col=col,
            )
    _guides(fig, lengths, float(np.nanmin(cost.attention_seconds[:, 0])), 1)
    _guides(fig, lengths, float(np.nanmin(megabytes[:, 0])), 2)
    for col, title in ((1, "seconds (log scale)"), (2, "MB above the loaded model (log scale)")):
        fig.update_xaxes(title_text="tokens n (log scale)", type="log", tickvals=lengths, row=1, col=col)
        fig.update_yaxes(title_text=title, type="log", row=1, col=col)
    legend_below(fig, 600)
    return themed(
        fig,
        "What attention costs as the context grows",
        f"{cost.model} on {cost.device}, {cost.threads} threads ({cost.host}, {cost.measured_at} UTC); solid: time "
        f"in the attention layers, dashed: the whole pass; window w={cost.window}, chunks of {cost.chunk} queries",
    )
