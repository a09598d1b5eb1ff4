"""The lottery-ticket figure: test accuracy against the share of weights remaining, as in Frankle and Carbin's."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from results.lottery import LotteryResult
from viz.theme import legend_below, themed

COLOURS = {"winning ticket": "#2e6fb7", "reinit": "#e67e22", "random mask": "#7f8c8d"}
DENSE_COLOUR = "#555555"


def _band_fill(colour: str) -> str:
    """The line's colour, translucent, for its min-max band."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, 0.18)"


def ticket_accuracy_figure(result: LotteryResult) -> go.Figure:
    """Test accuracy (%) against the share of weights remaining (%, log axis, sparser to the right): the winning
    ticket, reinit and random mask as mean lines over seeds with min-max bands, the dense network dashed."""
    remaining = result.remaining * 100
    fig = go.Figure()
    for name, accuracy in result.lines().items():
        percent = accuracy * 100
        colour = COLOURS[name]
        band = np.concatenate([remaining, remaining[::-1]]), np.concatenate([percent.max(0), percent.min(0)[::-1]])
        fig.add_trace(
            go.Scatter(
                x=band[0],
                y=band[1],
                fill="toself",
                fillcolor=_band_fill(colour),
                mode="lines",
                line={"width": 0},
                hoverinfo="skip",
                legendgroup=name,
                showlegend=False,
                name=f"{name} (min-max)",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=remaining,
                y=percent.mean(0),
                customdata=np.stack([percent.min(0), percent.max(0)], axis=1),
                mode="lines+markers",
                line={"color": colour, "width": 3},
                marker={"size": 7},
                name=name,
                legendgroup=name,
                hovertemplate=(
                    f"{name}: %{{x:.1f}}% of weights left, accuracy %{{y:.1f}}% "
                    "(seeds: %{customdata[0]:.1f} to %{customdata[1]:.1f})<extra></extra>"
                ),
            )
        )
    dense = float(result.dense.mean() * 100)
    fig.add_trace(  # a trace rather than an hline, so its label goes in the legend, clear of the lines
        go.Scatter(
            x=[remaining[0], remaining[-1]],
            y=[dense, dense],
            mode="lines",
            line={"color": DENSE_COLOUR, "dash": "dash", "width": 2},
            name=f"dense network ({dense:.1f}%)",
            hovertemplate=f"dense network: {dense:.1f}%<extra></extra>",
        )
    )
    fig.update_xaxes(
        type="log",
        autorange="reversed",
        title_text="weights remaining (%, log scale)",
        tickvals=remaining,
        ticktext=[f"{share:.3g}" for share in remaining],
    )
    fig.update_yaxes(title_text="test accuracy (%)")
    legend_below(fig, 540)
    sizes = "-".join(map(str, result.layer_sizes))
    return themed(
        fig,
        "Winning tickets: iterative magnitude pruning with rewinding",
        f"A {sizes} MLP on the {result.n_test} test digits of scikit-learn's data set (not a language model); "
        f"mean and min-max over {result.n_seeds} seed{'s' if result.n_seeds > 1 else ''}",
    )


def ticket_table_rows(result: LotteryResult) -> list[dict]:
    """One row per round: the share of weights left and each line's mean accuracy (%) with its range over seeds."""
    rows = []
    for round_, share in enumerate(result.remaining):
        row: dict[str, object] = {"round": round_, "weights left (%)": round(100 * float(share), 1)}
        for name, accuracy in result.lines().items():
            percent = accuracy[:, round_] * 100
            row[f"{name} (%)"] = f"{percent.mean():.1f} ({percent.min():.1f} to {percent.max():.1f})"
        rows.append(row)
    return rows
