"""A distribution against a Gaussian: histogram with the fitted density, and a QQ plot."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.distribution import Distribution
from viz.theme import themed

BAR_COLOUR = "#76a5d8"
FIT_COLOUR = "#c0392b"
QQ_LIMIT = 12.0  # QQ values beyond +- this many robust sigmas are drawn at the edge, their true value on hover


def statistics_line(dist: Distribution) -> str:
    """The distribution's numbers, on two lines (three when values lie beyond the histogram)."""
    outside = f"<br>{dist.below + dist.above:,} values beyond the histogram (min {dist.minimum:,.4g}, max {dist.maximum:,.4g})"
    return (
        f"n = {dist.n:,} · excess kurtosis {dist.excess_kurtosis:,.2f} (0 for a Gaussian) · std {dist.std:.3g} "
        f"(robust {dist.scale:.3g})<br>beyond 3 std {dist.beyond_3_std:.3%} (Gaussian 0.27%) · beyond 6 std "
        f"{dist.beyond_6_std:.4%} (Gaussian 2e-7 %)" + (outside if dist.below + dist.above else "")
    )


def distribution_figure(dist: Distribution, title: str, what: str) -> go.Figure:
    """Histogram (log density) with the robustly fitted Gaussian, and the QQ plot against it."""
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.6, 0.4],
        horizontal_spacing=0.12,
        subplot_titles=(
            "Histogram and fitted Gaussian",
            f"QQ plot (▲▼: beyond ±{QQ_LIMIT:g} σ)",
        ),
    )
    centers = (dist.edges[:-1] + dist.edges[1:]) / 2
    shown = dist.density > 0
    fig.add_trace(
        go.Bar(
            x=centers[shown],
            y=dist.density[shown],
            width=float(np.diff(dist.edges)[0]),
            marker_color=BAR_COLOUR,
            name=what,
            hovertemplate="%{x:.3g}: density %{y:.3g}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    x = np.linspace(dist.edges[0], dist.edges[-1], 400)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=dist.gaussian(x),
            name=f"Gaussian (median {dist.center:.3g}, σ {dist.scale:.3g})",
            line={"color": FIT_COLOUR, "width": 2},
            hoverinfo="skip",
        ),
        row=1,
        col=1,
    )
    off_scale = np.abs(dist.qq_sample) > QQ_LIMIT
    fig.add_trace(
        go.Scatter(
            x=dist.qq_theoretical,
            y=np.clip(dist.qq_sample, -QQ_LIMIT, QQ_LIMIT),
            customdata=dist.qq_sample,
            mode="markers",
            marker={
                "color": np.where(off_scale, FIT_COLOUR, BAR_COLOUR).tolist(),
                "size": np.where(off_scale, 10, 6).tolist(),
                "symbol": np.where(
                    off_scale, np.where(dist.qq_sample > 0, "triangle-up", "triangle-down"), "circle"
                ).tolist(),
            },
            name="quantiles",
            showlegend=False,
            hovertemplate="Gaussian %{x:.2f} σ: value at %{customdata:,.4g} σ<extra></extra>",
        ),
        row=1,
        col=2,
    )
    limit = float(np.max(np.abs(dist.qq_theoretical)))
    fig.add_trace(
        go.Scatter(
            x=[-limit, limit],
            y=[-limit, limit],
            mode="lines",
            line={"color": FIT_COLOUR, "dash": "dash"},
            name="Gaussian",
            showlegend=False,
            hoverinfo="skip",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text=what, row=1, col=1)
    shown_density = dist.density[shown]
    fig.update_yaxes(
        title_text="density (log)",
        type="log",
        exponentformat="power",
        dtick=1,  # decades only: labelled minor ticks crowd a range of five or more decades
        range=[np.log10(shown_density.min()) - 0.5, np.log10(shown_density.max()) + 0.3],
        row=1,
        col=1,
    )
    fig.update_xaxes(title_text="Gaussian quantile (σ)", row=1, col=2)
    fig.update_yaxes(
        title_text="value quantile (robust σ)",
        range=[-QQ_LIMIT - 1, QQ_LIMIT + 1],
        row=1,
        col=2,
    )
    fig.update_layout(
        height=580, legend={"orientation": "h", "yanchor": "top", "y": -0.16, "x": 0.0}, margin={"t": 180, "b": 110}
    )
    return themed(fig, title, statistics_line(dist))
