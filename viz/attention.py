"""Figures of attention: one head's map and a layer x head grid of per-head summaries."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import plotly.graph_objects as go

from viz.theme import SEQUENTIAL, themed, token_axis, visible

SUMMARY_LABELS = {
    "sink_share": "Sink share: weight on the first token",
    "previous_token": "Previous-token share: weight on token q-1",
    "entropy": "Entropy of attention rows (nats)",
}


class AttentionLike(Protocol):
    tokens: list[str]
    is_causal: bool
    maps: np.ndarray
    sink_share: np.ndarray
    previous_token: np.ndarray
    entropy: np.ndarray


def attention_heatmap(result: AttentionLike, layer: int, head: int) -> go.Figure:
    """One head's attention weights: rows are queries, columns keys; masked (future) cells are left blank."""
    weights = result.maps[layer, head].astype(np.float32)
    n = len(result.tokens)
    labels = [visible(t) for t in result.tokens]
    shown = np.where(np.triu(np.ones((n, n), dtype=bool), k=1), np.nan, weights) if result.is_causal else weights
    hover = np.array([[f"{q}:{labels[q]} → {k}:{labels[k]}" for k in range(n)] for q in range(n)])
    fig = go.Figure(
        go.Heatmap(
            z=shown,
            x=list(range(n)),
            y=list(range(n)),
            customdata=hover,
            colorscale=SEQUENTIAL,
            zmin=0.0,
            zmax=float(np.nanmax(shown)) or 1.0,
            colorbar={"title": {"text": "weight"}},
            hovertemplate="%{customdata}<br>weight %{z:.4f}<extra></extra>",
        )
    )
    themed(fig, f"Layer {layer}, head {head}: attention weights")
    kind = "causal: a token sees only earlier tokens, blank cells are masked" if result.is_causal else "bidirectional encoder"
    fig.update_layout(title_subtitle_text=kind)
    fig.update_xaxes(title_text="key (attended-to token)", constrain="domain", showgrid=False, zeroline=False, **token_axis(result.tokens, angle=-60))
    fig.update_yaxes(title_text="query (attending token)", autorange="reversed", scaleanchor="x", showgrid=False, zeroline=False, **token_axis(result.tokens))
    fig.update_layout(height=760)
    return fig


def head_summary_grid(result: AttentionLike, summary: str) -> go.Figure:
    """A layer x head heatmap of one summary; click a cell to select that head."""
    values = np.asarray(getattr(result, summary), dtype=np.float32)
    n_layers, n_heads = values.shape
    zmax = float(np.log(len(result.tokens))) if summary == "entropy" else 1.0
    heads, layers = np.meshgrid(np.arange(n_heads), np.arange(n_layers))
    fig = go.Figure(
        [
            go.Heatmap(
                z=values,
                x=list(range(n_heads)),
                y=list(range(n_layers)),
                colorscale=SEQUENTIAL,
                zmin=0.0,
                zmax=zmax,
                colorbar={"title": {"text": summary.replace("_", " ")}},
                hoverinfo="skip",
            ),
            # Heatmap cells cannot be selected in Plotly; invisible markers on the cell centres can,
            # so they carry the hover text and the click.
            go.Scatter(
                x=heads.ravel(),
                y=layers.ravel(),
                mode="markers",
                marker={"size": 14, "opacity": 0.0},
                customdata=values.ravel(),
                hovertemplate="layer %{y}, head %{x}<br>%{customdata:.3f}<extra></extra>",
                showlegend=False,
            ),
        ]
    )
    themed(fig, SUMMARY_LABELS[summary])
    fig.update_xaxes(title_text="head", range=[-0.5, n_heads - 0.5], dtick=1 if n_heads <= 16 else None, showgrid=False, zeroline=False)
    fig.update_yaxes(title_text="layer", range=[n_layers - 0.5, -0.5], dtick=1 if n_layers <= 32 else None, showgrid=False, zeroline=False)
    fig.update_layout(clickmode="event+select", dragmode=False, height=max(420, 22 * n_layers + 160))
    return fig
