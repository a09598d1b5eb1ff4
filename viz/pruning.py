"""Figures of compression: loss against bytes per weight for pruning and quantization, loss against rank, and
the spectra of a fine-tuning update W1 - W0."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.pruning import DENSE_BYTES, PRUNERS, QUANTIZERS, RankSweep, Tradeoff
from viz.theme import legend_below, themed

BASE_COLOUR = "#555555"
QUANT_COLOUR = "#2e6fb7"
# One colour per method: the pruners warm, the quantizers cool.
COLOURS = {
    "prune": "#c0392b",
    "wanda": "#e67e22",
    "sparsegpt": "#8e44ad",
    "quantize": QUANT_COLOUR,
    "gptq": "#16a085",
}
SERIES = {
    "prune": "magnitude pruning",
    "wanda": "Wanda pruning",
    "sparsegpt": "SparseGPT pruning",
    "quantize": "round-to-nearest quantization",
    "gptq": "GPTQ quantization",
}
PATTERN_SYMBOLS = {"2:4": "diamond", "4:8": "square"}


def tradeoff_figure(tradeoff: Tradeoff) -> go.Figure:
    """Mean per-token NLL against bytes per weight, for the text and the held-out sentences side by side: each
    method's unstructured sparsities or bit widths as a line, its N:M patterns as separate markers, the unchanged
    model as a dashed line and a star at 2 bytes. Methods at the same setting share an x, so only the first pruner
    and the first quantizer carry labels."""
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=False,
        horizontal_spacing=0.1,
        subplot_titles=(
            f"Your text ({tradeoff.n_tokens_text} tokens)",
            f"Held-out corpus ({tradeoff.n_sentences} sentences)",
        ),
    )
    methods = [m for m in SERIES if any(p.method == m for p in tradeoff.points)]
    labelled = {next((m for m in methods if m in PRUNERS), ""), next((m for m in methods if m in QUANTIZERS), "")}
    for col, (attribute, base) in enumerate(
        (("nll_text", tradeoff.base_nll_text), ("nll_corpus", tradeoff.base_nll_corpus)), 1
    ):
        for method in methods:
            mine = sorted((p for p in tradeoff.points if p.method == method), key=lambda p: p.bytes_per_weight)
            for pattern in ("", *PATTERN_SYMBOLS):
                points = [p for p in mine if (p.label == pattern if pattern else p.label not in PATTERN_SYMBOLS)]
                if not points:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=[p.bytes_per_weight for p in points],
                        y=[getattr(p, attribute) for p in points],
                        text=[p.label if method in labelled else "" for p in points],
                        customdata=[p.label for p in points],
                        textposition="middle left" if method in PRUNERS else "top right",
                        textfont={"size": 11},
                        mode="markers+text" if pattern else "lines+markers+text",
                        name=SERIES[method] + (f" {pattern}" if pattern else ""),
                        legendgroup=method,
                        showlegend=col == 1,
                        marker={
                            "color": COLOURS[method],
                            "size": 11 if pattern else 8,
                            "symbol": PATTERN_SYMBOLS.get(pattern, "circle"),
                        },
                        line={"color": COLOURS[method]},
                        hovertemplate=f"{SERIES[method]}, %{{customdata}}: %{{x:.3f}} bytes per weight, "
                        "NLL %{y:.3f}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
        fig.add_trace(
            go.Scatter(
                x=[0, DENSE_BYTES * 1.12],
                y=[base, base],
                mode="lines",
                line={"color": BASE_COLOUR, "dash": "dot", "width": 1},
                showlegend=False,
                hoverinfo="skip",
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
                name="unchanged (fp16 = 2 bytes; dotted line)",
                legendgroup="base",
                showlegend=col == 1,
                hovertemplate="unchanged: NLL %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="bytes per weight (compressed matrices)", range=[0, DENSE_BYTES * 1.12])
    fig.update_yaxes(title_text="mean NLL per token (nats)", type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    legend_below(fig, 620)
    fig.update_layout(margin={"t": 140})  # the two-line subtitle above the subplot titles
    calibration = (
        f"Wanda, SparseGPT and GPTQ calibrated on {tradeoff.calibration_tokens:,} other corpus tokens; "
        if tradeoff.calibration_tokens
        else ""
    )
    return themed(
        fig,
        "Loss per byte: pruning against quantization",
        f"{tradeoff.model}; compressed: {', '.join(tradeoff.kinds)} of every block<br>"
        f"{calibration}lower and further left is better",
    )


def robustness_figure(tradeoff: Tradeoff) -> go.Figure:
    """The NLL increase over the unchanged model on the held-out corpus and on each text unlike it, one bar per
    compression setting (colour: method; hatching: the method's settings in order)."""
    where = ["held-out corpus", *tradeoff.domains]
    hatches = ("", "/", "x", ".", "\\", "+", "-", "|")
    fig = go.Figure()
    for method in SERIES:
        mine = [p for p in tradeoff.points if p.method == method]
        for index, point in enumerate(mine):
            increase = [point.nll_corpus - tradeoff.base_nll_corpus, *(point.nll_domains - tradeoff.base_nll_domains)]
            fig.add_trace(
                go.Bar(
                    x=where,
                    y=increase,
                    name=f"{SERIES[method]}, {point.label}",
                    marker={"color": COLOURS[method], "pattern": {"shape": hatches[index % len(hatches)]}},
                    hovertemplate=f"{SERIES[method]}, {point.label}: %{{x}} +%{{y:.3f}} nats<extra></extra>",
                )
            )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="NLL increase over the unchanged model (nats)")
    legend_below(fig, 560)
    fig.update_layout(margin={"t": 120})
    return themed(
        fig,
        "Robustness: what compression costs on text unlike the calibration text",
        f"{tradeoff.model}; compression calibrated and judged on plain English sentences; texts written for lmscope",
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
