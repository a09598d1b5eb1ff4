"""Figures of the logit lens: what each layer would predict at each position, and how the prediction forms with
depth."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.lens import LensResult, LogitAttribution
from viz.theme import SEQUENTIAL, themed, visible

COLOURS = {
    "top_prob": "probability of the layer's top token",
    "next_prob": "probability of the token that comes next",
    "kl_final": "KL from the model's own prediction (nats)",
    "entropy": "entropy of the readout (nats)",
}
UNITS = {"top_prob": "p(top)", "next_prob": "p(next)", "kl_final": "KL (nats)", "entropy": "entropy (nats)"}
MOST_POSITIONS = 24  # positions one grid shows (a longer text: a window of them)
CELL_CHARACTERS = 7  # characters of a token written in a cell (the hover has it whole)
LAYER_AXIS = "layer (-1: the embeddings)"


def _rows(result: LensResult) -> np.ndarray:
    """The y of each readout: -1 for the embeddings, l for block l's output."""
    return np.arange(result.n_layers + 1) - 1


def _colour(result: LensResult, colour: str) -> np.ndarray:
    """(rows, positions) values of a colour choice; NaN where there is none (the last position has no next token)."""
    if colour == "top_prob":
        return result.top_probs[:, :, 0]
    if colour == "next_prob":
        return np.concatenate([result.next_prob, np.full((result.n_layers + 1, 1), np.nan)], axis=1)
    if colour in ("kl_final", "entropy"):
        return getattr(result, colour)
    raise ValueError(f"unknown colour {colour!r}: one of {', '.join(COLOURS)}")


def lens_grid(result: LensResult, colour: str = "top_prob", start: int = 0) -> go.Figure:
    """Layers by positions (at most MOST_POSITIONS from `start`): each cell names the layer's most likely next
    token and is coloured by `colour` (`COLOURS`); the hover lists the top tokens with their probabilities, the
    next token's probability and rank, the entropy and the KL from the model's own prediction."""
    n = len(result.tokens)
    start = max(0, min(start, n - 1))
    shown = slice(start, min(n, start + MOST_POSITIONS))
    positions = np.arange(n)[shown]
    values = _colour(result, colour)[:, shown].astype(np.float64)
    rows = _rows(result)
    following = [*result.tokens[1:], "(end of text)"]
    hover = np.empty(values.shape, dtype=object)
    for r in range(values.shape[0]):
        for c, p in enumerate(positions):
            tops = "<br>".join(
                f"  {visible(str(t))} {prob:.3f}"
                for t, prob in zip(result.top_tokens[r, p], result.top_probs[r, p], strict=True)
            )
            nxt = (
                f"next {visible(following[p])}: p {result.next_prob[r, p]:.3f}, rank {result.next_rank[r, p]}"
                if p < n - 1
                else "no next token"
            )
            where = "the embeddings" if rows[r] < 0 else f"block {rows[r]}"
            hover[r, c] = (
                f"{where}, position {p} ({visible(result.tokens[p])})<br>{tops}<br>{nxt}<br>"
                f"entropy {result.entropy[r, p]:.2f}, KL from the model's prediction {result.kl_final[r, p]:.2f}"
            )
    probability = colour in ("top_prob", "next_prob")
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=positions,
            y=rows,
            text=[[visible(str(t))[:CELL_CHARACTERS] for t in row] for row in result.top_tokens[:, shown, 0]],
            texttemplate="%{text}",
            textfont={"size": 10},
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=SEQUENTIAL,
            zmin=0.0,
            zmax=1.0 if probability else None,
            colorbar={"title": {"text": UNITS[colour], "side": "right"}, "thickness": 14},
        )
    )
    zeroed = f"; features {', '.join(map(str, result.zeroed))} zeroed" if result.zeroed else ""
    themed(
        fig,
        f"Logit lens of {result.model}: what each layer would predict",
        "Each block's output read out through the model's final norm and unembedding; top row: the model's own "
        f"prediction.<br>Cells: the most likely next token; colour: {COLOURS[colour]}{zeroed}.",
    )
    fig.update_xaxes(
        title_text="position (the input token)",
        tickmode="array",
        tickvals=positions.tolist(),
        ticktext=[f"{p} {visible(result.tokens[p])}" for p in positions],
        tickangle=-60,
    )
    fig.update_yaxes(title_text=LAYER_AXIS, autorange=True)
    fig.update_layout(height=max(480, 20 * len(rows) + 280), margin={"t": 150, "r": 20})
    return fig


def lens_by_layer(result: LensResult) -> go.Figure:
    """Per layer, averaged over positions: the probability of the token that comes next and how often it is the
    layer's top token (left), the KL from the model's own prediction and the entropy (right)."""
    rows = _rows(result)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1)
    series = [
        (1, "p(next token)", result.next_prob.mean(axis=1), "solid"),
        (1, "next token is the top 1", (result.next_rank == 0).mean(axis=1), "dash"),
        (2, "KL from the model's prediction (nats)", result.kl_final.mean(axis=1), "solid"),
        (2, "entropy (nats)", result.entropy.mean(axis=1), "dash"),
    ]
    for column, name, values, dash in series:
        fig.add_trace(
            go.Scatter(
                x=rows,
                y=values,
                name=name,
                mode="lines+markers",
                line={"dash": dash},
                hovertemplate=f"{name}, layer %{{x}}: %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=column,
        )
    themed(
        fig,
        f"When the prediction forms: the lens of {result.model} by layer",
        "Means over the text's positions; layer -1 is the embeddings, the last layer the model's own output (its KL "
        "of 0 is off the log axis).",
    )
    fig.update_xaxes(title_text=LAYER_AXIS)
    fig.update_yaxes(title_text="probability / share", range=[0, 1.02], col=1)
    fig.update_yaxes(title_text="nats (log scale)", col=2, type="log")
    fig.update_layout(height=460, margin={"t": 110}, legend={"orientation": "h", "y": -0.25})
    return fig


def attribution_figure(result: LogitAttribution) -> go.Figure:
    """What each attention head (a layer x head grid) and each MLP (bars by layer) adds to one next token's logit
    at one position, on one diverging scale centred at 0 (red: toward the token, blue: against it)."""
    n_layers, n_heads = result.heads.shape
    layers = np.arange(n_layers)
    top = float(max(np.abs(result.heads).max(), np.abs(result.mlps).max(), 1e-9))
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        column_widths=[0.62, 0.38],
        horizontal_spacing=0.04,
        subplot_titles=("attention heads", "MLPs"),
    )
    fig.add_trace(
        go.Heatmap(
            z=result.heads,
            x=np.arange(n_heads),
            y=layers,
            colorscale="RdBu_r",
            zmid=0.0,
            zmin=-top,
            zmax=top,
            colorbar={"title": {"text": "logit", "side": "right"}, "thickness": 14},
            hovertemplate="layer %{y}, head %{x}: %{z:+.3f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=result.mlps,
            y=layers,
            orientation="h",
            marker={"color": result.mlps, "colorscale": "RdBu_r", "cmin": -top, "cmax": top},
            hovertemplate="MLP of layer %{y}: %{x:+.3f}<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    token = visible(result.tokens[result.position])
    themed(
        fig,
        f"Direct logit attribution: what writes {visible(result.target)!r} after position {result.position} ({token})",
        f"Logit {result.logit:.2f} = embeddings {result.embedding:+.2f} + attention heads {result.heads.sum():+.2f} "
        f"+ MLPs {result.mlps.sum():+.2f}"
        + (f" + o_proj biases {result.attention_bias.sum():+.2f}" if result.attention_bias.any() else "")
        + ",<br>each part through the unembedding with the final norm's scale frozen; red: toward the token, blue: "
        "against it.",
    )
    fig.update_xaxes(title_text="head", dtick=1 if n_heads <= 16 else None, showgrid=False, zeroline=False, col=1)
    fig.update_xaxes(title_text="logit", range=[-top * 1.05, top * 1.05], col=2)
    fig.update_yaxes(title_text="layer", autorange="reversed", dtick=1 if n_layers <= 32 else None, col=1)
    fig.update_layout(height=max(480, 20 * n_layers + 220), margin={"t": 140})
    return fig
