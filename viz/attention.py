"""Figures of attention: one head's map and a layer x head grid of per-head summaries."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from results.attention import AttentionResult
from viz.theme import SEQUENTIAL, themed, token_axis, visible

SUMMARY_LABELS = {
    "sink_share": "Sink share: weight on the first token",
    "previous_token": "Previous-token share: weight on token q-1",
    "delimiter_share": "Delimiter share: weight on punctuation, newlines, [SEP]",
    "special_share": "Special-token share: weight on [SEP], <eos> and other special tokens",
    "mean_distance": "Mean attention distance (tokens)",
    "entropy": "Entropy of attention rows (nats)",
}
# Colour-scale maxima that are not 1; None means "the largest value".
_SUMMARY_MAX = {"entropy": lambda n: float(np.log(n)), "mean_distance": lambda n: None}


def cell_labels(tokens: list[str], pool: int) -> list[str]:
    """Axis labels of map cells: the token itself, or the range of positions a pooled cell covers."""
    if pool == 1:
        return [visible(t) for t in tokens]
    n = len(tokens)
    return [f"{start}–{min(n, start + pool) - 1}" for start in range(0, n, pool)]


def head_values(result: AttentionResult, layer: int, head: int, logits: bool = False) -> np.ndarray:
    """One head's map (or its pre-softmax logits), queries by keys, NaN where a decoder's mask hides the key."""
    source = result.logits if logits else result.maps
    if source is None:
        raise ValueError("this result was computed without logits")
    values = source[layer, head].astype(np.float32)
    cells = values.shape[0]
    if result.is_causal:  # a cell entirely in the future of its queries is masked
        values = np.where(np.triu(np.ones((cells, cells), dtype=bool), k=1), np.nan, values)
    return values


def logit_range(values: np.ndarray) -> tuple[float, float]:
    """The colour range of logit maps: the 1st to the 99th percentile of the finite values (one extreme sink logit
    would otherwise flatten the rest)."""
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, 1)), float(np.percentile(finite, 99))


def attention_heatmap(result: AttentionResult, layer: int, head: int, logits: bool = False) -> go.Figure:
    """One head's attention (or its pre-softmax logits): rows are queries, columns keys; masked cells blank."""
    values = head_values(result, layer, head, logits)
    cells = values.shape[0]
    labels = cell_labels(result.tokens, result.pool)
    hover = np.array([[f"{q}:{labels[q]} → {k}:{labels[k]}" for k in range(cells)] for q in range(cells)])
    finite = values[np.isfinite(values)]
    if logits:
        (low, high), unit = logit_range(values), "logit"
    else:
        low, high, unit = 0.0, float(finite.max()) if finite.size and finite.max() > 0 else 1.0, "weight"
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=list(range(cells)),
            y=list(range(cells)),
            customdata=hover,
            colorscale=SEQUENTIAL,
            zmin=low,
            zmax=high,
            colorbar={"title": {"text": unit}},
            hovertemplate="%{customdata}<br>" + unit + " %{z:.4f}<extra></extra>",
        )
    )
    what = "attention logits (pre-softmax)" if logits else "attention weights"
    notes = [
        "causal: a token sees only earlier tokens, blank cells are masked"
        if result.is_causal
        else "bidirectional encoder"
    ]
    if result.pool > 1:
        reduce = (
            "mean of visible logits" if logits else "mean over the block's queries of their total weight on its keys"
        )
        notes.append(f"pooled {result.pool}x{result.pool} tokens per cell ({reduce})")
    themed(fig, f"Layer {layer}, head {head}: {what}", "; ".join(notes))
    # The square map is often drawn half a page wide: at most 24 labels (hover names every cell) stay readable.
    axis = {"showgrid": False, "zeroline": False, **token_axis(labels, max_labels=24)}
    fig.update_xaxes(title_text="key (attended-to token)", constrain="domain", **{**axis, "tickangle": -60})
    fig.update_yaxes(title_text="query (attending token)", autorange="reversed", scaleanchor="x", **axis)
    fig.update_layout(height=760)
    return fig


def head_grid(
    values: np.ndarray,
    title: str,
    colorbar: str,
    zmax: float | None = 1.0,
    notes: np.ndarray | None = None,
    zmid: float | None = None,
) -> go.Figure:
    """A layer x head heatmap of per-head scores; each cell can be clicked (it selects that head).

    `notes` ((layers, heads) strings, optional) are added to each cell's hover text, e.g. the head's type. With
    `zmid`, signed scores get a diverging scale centred there instead of the sequential one from 0 to zmax.
    """
    values = np.asarray(values, dtype=np.float32)
    n_layers, n_heads = values.shape
    heads, layers = np.meshgrid(np.arange(n_heads), np.arange(n_layers))
    extra = notes.ravel() if notes is not None else np.full(values.size, "")
    fig = go.Figure(
        [
            go.Heatmap(
                z=values,
                x=list(range(n_heads)),
                y=list(range(n_layers)),
                colorscale=SEQUENTIAL if zmid is None else "RdBu_r",
                zmin=0.0 if zmid is None else None,
                zmax=zmax if zmid is None else None,
                zmid=zmid,
                colorbar={"title": {"text": colorbar}},
                hoverinfo="skip",
            ),
            # Heatmap cells cannot be selected in Plotly; invisible markers on the cell centres can,
            # so they carry the hover text and the click.
            go.Scatter(
                x=heads.ravel(),
                y=layers.ravel(),
                mode="markers",
                marker={"size": 14, "opacity": 0.0},
                customdata=np.stack([values.ravel().astype(object), extra], axis=1),
                hovertemplate="layer %{y}, head %{x}<br>%{customdata[0]:.3f} %{customdata[1]}<extra></extra>",
                showlegend=False,
            ),
        ]
    )
    themed(fig, title)
    fig.update_xaxes(
        title_text="head",
        range=[-0.5, n_heads - 0.5],
        dtick=1 if n_heads <= 16 else None,
        showgrid=False,
        zeroline=False,
    )
    fig.update_yaxes(
        title_text="layer",
        range=[n_layers - 0.5, -0.5],
        dtick=1 if n_layers <= 32 else None,
        showgrid=False,
        zeroline=False,
    )
    fig.update_layout(clickmode="event+select", dragmode=False, height=max(420, 22 * n_layers + 160))
    return fig


def summary_max(result: AttentionResult, summary: str) -> float | None:
    """The top of a summary's colour scale: 1 for a share, log(tokens) for the entropy, None (the largest value)
    for the mean distance."""
    return _SUMMARY_MAX[summary](len(result.tokens)) if summary in _SUMMARY_MAX else 1.0


def head_summary_grid(result: AttentionResult, summary: str) -> go.Figure:
    """The layer x head grid of one of the attention probe's summaries."""
    return head_grid(
        getattr(result, summary), SUMMARY_LABELS[summary], summary.replace("_", " "), summary_max(result, summary)
    )
