"""Figures of compression: loss against bytes per weight for pruning and quantization, loss against rank, and
the spectra of a fine-tuning update W1 - W0."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.pruning import DENSE_BYTES, RankSweep, Tradeoff
from viz.theme import legend_below, themed

PRUNE_COLOUR = "#c0392b"
SEMI_COLOUR = "#e67e22"
QUANT_COLOUR = "#2e6fb7"
BASE_COLOUR = "#555555"


def tradeoff_figure(tradeoff: Tradeoff) -> go.Figure:
    """Mean per-token NLL against bytes per weight, for the text and the corpus side by side: pruning and
    quantization as lines, 2:4 as a point, the unchanged fp16 model as a star."""
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=False,
        horizontal_spacing=0.1,
        subplot_titles=(f"Your text ({tradeoff.n_tokens_text} tokens)", f"Corpus ({tradeoff.n_sentences} sentences)"),
    )
    series = (
        ("prune", "magnitude pruning (unstructured)", PRUNE_COLOUR, "lines+markers+text"),
        ("prune-2:4", "2:4 semi-structured pruning", SEMI_COLOUR, "markers+text"),
        ("quantize", "round-to-nearest quantization", QUANT_COLOUR, "lines+markers+text"),
    )
    for col, (attribute, base) in enumerate(
        (("nll_text", tradeoff.base_nll_text), ("nll_corpus", tradeoff.base_nll_corpus)), 1
    ):
        for method, name, colour, mode in series:
            points = sorted((p for p in tradeoff.points if p.method == method), key=lambda p: p.bytes_per_weight)
            if not points:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[p.bytes_per_weight for p in points],
                    y=[getattr(p, attribute) for p in points],
                    text=[p.label for p in points],
                    textposition="top center",
                    mode=mode,
                    name=name,
                    legendgroup=method,
                    showlegend=col == 1,
                    marker={"color": colour, "size": 10, "symbol": "diamond" if method == "prune-2:4" else "circle"},
                    line={"color": colour},
                    hovertemplate="%{text}: %{x:.3f} bytes per weight, NLL %{y:.3f}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.add_trace(
            go.Scatter(
                x=[DENSE_BYTES],
                y=[base],
                mode="markers",
                marker={"symbol": "star", "size": 16, "color": BASE_COLOUR},
                name="unchanged (fp16 = 2 bytes)",
                legendgroup="base",
                showlegend=col == 1,
                hovertemplate="unchanged: NLL %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="bytes per weight (compressed matrices)", rangemode="tozero")
    fig.update_yaxes(title_text="mean NLL per token (nats)", type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    legend_below(fig, 560)
    return themed(
        fig,
        "Loss per byte: pruning against quantization",
        f"{tradeoff.model}; compressed: {', '.join(tradeoff.kinds)} of every block (lower and further left is better)",
    )


def rank_loss_figure(sweep: RankSweep) -> go.Figure:
    """Mean per-token NLL of the text against the rank r the chosen matrices are truncated to."""
    fig = go.Figure(
        go.Scatter(
            x=sweep.ranks,
            y=sweep.nll,
            customdata=sweep.bytes_per_weight,
            mode="lines+markers",
            line={"color": QUANT_COLOUR, "width": 3},
            name="rank-r truncation",
            hovertemplate="rank %{x}: NLL %{y:.3f} (%{customdata:.3f} bytes per weight)<extra></extra>",
        )
    )
    fig.add_hline(
        y=sweep.base_nll,
        line={"color": BASE_COLOUR, "dash": "dash"},
        annotation_text=f"full rank: {sweep.base_nll:.3f}",
        annotation_position="top right",
    )
    fig.update_xaxes(type="log", title_text="rank r")
    fig.update_yaxes(title_text="mean NLL per token (nats)")
    fig.update_layout(height=460, showlegend=False)
    return themed(fig, "How low can the rank go?", f"{sweep.model}; truncated: {', '.join(sweep.kinds)} of every block")


