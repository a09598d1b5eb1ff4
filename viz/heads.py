"""Figures of the head types: one head's attention by offset, and how many heads pass each type, alone or mixed."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from results.heads import NONE, HeadTypes
from viz.theme import themed


def offset_profile(kinds: HeadTypes, layer: int, head: int) -> go.Figure:
    """Bars: the head's mean weight on the key d tokens back (d < 0: later keys, an encoder only), on random tokens,
    with the previous-token and previous-k thresholds as a line; the dominant offset other than 0 is named."""
    weights = kinds.profile[layer, head]
    shown = ~np.isnan(weights)
    offsets, weights = kinds.offsets[shown], weights[shown]
    top = int(kinds.dominant_offset[layer, head])
    fig = go.Figure(
        go.Bar(
            x=offsets,
            y=weights,
            marker_color=["#d62728" if d == top else "#1f77b4" for d in offsets],
            hovertemplate="%{x} tokens back: %{y:.3f}<extra></extra>",
        )
    )
    threshold = float(kinds.thresholds[kinds.types.index("previous-token")])
    fig.add_hline(y=threshold, line_dash="dot", annotation_text=f"type threshold {threshold}")
    themed(
        fig,
        f"Layer {layer}, head {head}: attention by offset",
        f"On random tokens (position alone): most weight {top} back ({weights[offsets == top][0]:.2f}). "
        f"Types: {kinds.labels[layer, head]}.",
    )
    fig.update_xaxes(title_text="offset d = query - key (tokens back)", dtick=1)
    fig.update_yaxes(title_text="mean attention weight", range=[0, 1.02])
    fig.update_layout(height=420, showlegend=False, margin={"t": 110})
    return fig


def type_counts(kinds: HeadTypes) -> go.Figure:
    """Per type, the heads that pass it: those that pass it alone, and those that also pass another type (mixed);
    then the heads that pass none."""
    passed, count = kinds.passed, kinds.count
    alone = [int((passed[i] & (count == 1)).sum()) for i in range(len(kinds.types))]
    mixed = [int((passed[i] & (count > 1)).sum()) for i in range(len(kinds.types))]
    names = [*kinds.types, NONE]
    fig = go.Figure(
        [
            go.Bar(x=names, y=[*alone, int((count == 0).sum())], name="this type only", marker_color="#1f77b4"),
            go.Bar(x=names, y=[*mixed, 0], name="this type and another (mixed)", marker_color="#ff7f0e"),
        ]
    )
    total, several = count.size, int((count > 1).sum())
    themed(
        fig,
        f"Head types of {kinds.model}: {several} of {total} heads pass more than one",
        "A head counts under every type it passes: the mixed ones (orange) under several bars.",
    )
    fig.update_xaxes(title_text="head type", tickangle=-30)
    fig.update_yaxes(title_text="heads")
    fig.update_layout(barmode="stack", height=480, margin={"t": 110, "b": 150}, legend={"orientation": "h", "y": -0.45})
    return fig
