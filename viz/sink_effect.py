"""Figures of why sinks are harmless and needed: the sink's share of the weights against its share of the value
norms, and the loss when the first token's key is hidden."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from results.sinks import SINK_HEAD, FirstKeyMasked, SinkNorms
from viz.sinks import BASELINE_COLOUR, SINK_COLOUR, head_points
from viz.theme import legend_below, themed


def sink_heads(norms: SinkNorms) -> np.ndarray:
    """(layers, heads): the heads that put at least SINK_HEAD of their weight on the first token."""
    return norms.attention_share >= SINK_HEAD


def sink_norms(norms: SinkNorms) -> go.Figure:
    """Each head's share of attention on token 0 (x) against token 0's share of the weighted value norms (y),
    coloured by layer; below the diagonal, the sink moves the output less than its weight says."""
    strong = sink_heads(norms)
    ratio = norms.first_value_norm / norms.other_value_norm
    fig = go.Figure(
        [
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name="as much of the norms as of the weights",
                line={"color": BASELINE_COLOUR, "dash": "dash", "width": 1.5},
                hoverinfo="skip",
            ),
            head_points(
                norms.attention_share,
                norms.norm_share,
                "weight %{x:.1%}, norms %{y:.1%}; token 0's value is %{customdata[2]:.2f} of the others'",
                ratio,
            ),
        ]
    )
    summary = (
        f"Its {int(strong.sum())} sink heads (≥ {SINK_HEAD:.0%} of the weight on token 0): {norms.attention_share[strong].mean():.0%} "
        f"of the weight, {norms.norm_share[strong].mean():.0%} of the norms; token 0's value is "
        f"{np.median(ratio[strong]):.2f} of the others' (median)."
        if strong.any()
        else f"No head puts {SINK_HEAD:.0%} of its weight on token 0."
    )
    themed(
        fig,
        f"The sink takes the weight, not the output ({norms.model})",
        f"Each head on your text ({len(norms.tokens)} tokens), means over the queries after the first: token 0's "
        "share of the weights a_i0<br>against its share of the weighted norms a_i0‖f(x_0)‖ / Σ_j a_ij‖f(x_j)‖, "
        f"f(x) = W_O v (Kobayashi et al. 2020).<br>{summary}",
    )
    legend_below(fig, height=580)
    fig.update_layout(margin={"t": 130})
    fig.update_xaxes(title_text="share of the attention weights on token 0", range=[0, 1.02], tickformat=".0%")
    fig.update_yaxes(title_text="share of the weighted value norms", range=[0, 1.02], tickformat=".0%")
    return fig


def first_key_losses(masked: FirstKeyMasked) -> go.Figure:
    """Bars: the text's mean loss under each attention, full attention's as a line."""
    losses = masked.losses
    colours = [BASELINE_COLOUR, SINK_COLOUR, SINK_COLOUR, "#2e6fb7"]
    fig = go.Figure(
        go.Bar(
            x=list(losses),
            y=list(losses.values()),
            marker_color=colours,
            text=[f"{v:.2f}" for v in losses.values()],
            textposition="outside",
            hovertemplate="%{x}: %{y:.3f} nats<extra></extra>",
        )
    )
    fig.add_hline(y=masked.full, line_dash="dot", line_color=BASELINE_COLOUR)
    themed(
        fig,
        f"Take the sink away: the loss of {masked.model}",
        f"Mean next-token loss of your text ({masked.n_tokens} tokens) with every layer's attention restricted. "
        f"Hiding token 0's key from every later query costs {masked.masked - masked.full:+.2f} nats;<br>a "
        f"{masked.window}-token window costs {masked.window_alone - masked.full:+.2f} without the first tokens and "
        f"{masked.window_sinks - masked.full:+.2f} with the first {masked.sinks} kept visible.",
    )
    fig.update_yaxes(title_text="mean loss (nats)", rangemode="tozero")
    fig.update_layout(height=480, margin={"t": 130}, showlegend=False)
    return fig
