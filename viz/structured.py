"""Figures of structured attention: masks beside a head's real attention, and the loss under sliding windows."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.attention import AttentionResult
from results.structured import MaskView, PatternSweep, WindowSweep
from viz.attention import cell_labels
from viz.theme import SEQUENTIAL, themed, visible

# Grey: blocked by the structure; navy: may attend. Cells in the causal future are left blank.
MASK_SCALE = [[0.0, "#e4e6ee"], [1.0, "#1f3b73"]]
WINDOW_COLOUR = "#c0392b"
SINKS_COLOUR = "#1f77b4"
FULL_COLOUR = "#444444"
PATTERN_COLOURS = {"sliding": WINDOW_COLOUR, "dilated": "#8e44ad", "global": "#16a085", "block": "#d68910"}
METRICS = {"nll": "mean NLL per token (nats)", "perplexity": "perplexity (exp of the mean NLL)"}


def _future(cells: int) -> np.ndarray:
    """Cells entirely in the future of their queries."""
    return np.triu(np.ones((cells, cells), dtype=bool), k=1)


def _pair_labels(labels: list[str]) -> np.ndarray:
    """'q:token → k:token' for every cell, for hover text."""
    return np.array(
        [[f"query {q}:{labels[q]} → key {k}:{labels[k]}" for k in range(len(labels))] for q in range(len(labels))]
    )


def mask_panel(attention: AttentionResult, view: MaskView, layer: int, head: int) -> go.Figure:
    """One head's real attention, then each structured mask in the same axes, titled with the share it keeps."""
    weights = attention.maps[layer, head].astype(np.float32)
    cells = weights.shape[0]
    future = _future(cells)
    if attention.is_causal:
        weights = np.where(future, np.nan, weights)
    kept = view.kept[:, layer, head]
    titles = [f"<b>real attention</b><br>layer {layer}, head {head}"] + [
        "<b>" + title.replace(" + ", "<br>+ ") + f"</b><br>keeps {share:.0%}" for title, share in zip(view.titles, kept)
    ]
    fig = make_subplots(rows=1, cols=1 + len(view.titles), subplot_titles=titles, horizontal_spacing=0.03)
    starts = np.arange(cells) * attention.pool  # axes count tokens, pooled or not
    fig.add_trace(
        go.Heatmap(
            z=weights,
            x=starts,
            y=starts,
            customdata=_pair_labels(cell_labels(attention.tokens, attention.pool)),
            coloraxis="coloraxis",
            hovertemplate="%{customdata}<br>attention weight %{z:.4f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    # Mask hover names positions only: token labels on every trace would multiply the page's size.
    if view.pool > 1:
        where = f"the {view.pool}x{view.pool} block from query %{{y}}, key %{{x}}<br>share of its pairs allowed"
    else:
        where = "query %{y} → key %{x}<br>1 = may attend, 0 = blocked"
    for i, (title, mask) in enumerate(zip(view.titles, view.cells), start=2):
        fig.add_trace(
            go.Heatmap(
                z=np.where(future, np.nan, mask),
                x=starts,
                y=starts,
                coloraxis="coloraxis2",
                name=title,
                hovertemplate=f"{title}<br>{where}: %{{z:.2f}}<extra></extra>",
            ),
            row=1,
            col=i,
        )
    themed(fig, f"Structured attention masks beside the real attention of layer {layer}, head {head}")
    notes = [
        "Masks: navy = the query may attend to the key, grey = blocked by the structure, blank = the future (causal).",
        "“keeps” = mean over queries of this head's attention weight inside the mask.",
    ]
    if not attention.is_causal:
        notes.append("This encoder also attends to the future, which every causal mask drops.")
    if view.pool > 1:
        notes.append(f"Pooled {view.pool}x{view.pool} tokens per cell.")
    top = 130 + 18 * len(notes)  # room for the title, one line per note, and four-line subplot titles
    fig.update_layout(
        title_subtitle_text="<br>".join(notes),
        coloraxis={
            "colorscale": SEQUENTIAL,
            "cmin": 0.0,
            "colorbar": {"title": {"text": "attention<br>weight"}, "len": 0.7},
        },
        coloraxis2={"colorscale": MASK_SCALE, "cmin": 0.0, "cmax": 1.0, "showscale": False},
        title_y=0.98,
        title_yanchor="top",
        height=top + 260,
        margin={"l": 70, "r": 20, "t": top, "b": 30},
    )
    fig.update_annotations(font_size=12)
    fig.update_xaxes(showgrid=False, zeroline=False, constrain="domain", title_text="key", title_standoff=4)
    # Square cells: each y axis is scaled to its x axis and shrinks toward the titles rather than stretching.
    fig.update_yaxes(
        showgrid=False,
        zeroline=False,
        constrain="domain",
        constraintoward="top",
        autorange="reversed",
        showticklabels=False,
    )
    for i in range(1, 2 + len(view.titles)):
        fig.update_yaxes(scaleanchor=f"x{'' if i == 1 else i}", row=1, col=i)
    fig.update_yaxes(title_text="query", showticklabels=True, row=1, col=1)
    return fig


def _metric(values: np.ndarray, metric: str) -> np.ndarray:
    """Mean NLL as given, or perplexity (its exponential)."""
    return np.exp(values) if metric == "perplexity" else values


def _full_attention_line(fig: go.Figure, full: float, metric: str, x: list, dash: str) -> None:
    """The unrestricted model's loss as a horizontal line across x. A trace, not add_hline: a shape's annotation is
    placed in log10 units on a log axis."""
    name = f"full attention: NLL {full:.3f} nats, perplexity {np.exp(full):.1f}"
    fig.add_trace(
        go.Scatter(
            x=x,
            y=_metric(np.array([full, full]), metric),
            name=name,
            mode="lines",
            line={"color": FULL_COLOUR, "dash": dash, "width": 2},
            hovertemplate=name + "<extra></extra>",
        )
    )


def loss_by_window(sweep: WindowSweep, metric: str = "nll") -> go.Figure:
    """The text's loss against the window size every layer is limited to, without and with sink tokens."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}")
    windows = sweep.windows.astype(int)
    full = float(sweep.nll_full.mean())
    lines = [("sliding window only", sweep.nll_window, WINDOW_COLOUR, "circle")]
    if sweep.sinks:
        lines.append(
            (f"sliding window + first {sweep.sinks} tokens kept (sinks)", sweep.nll_sinks, SINKS_COLOUR, "diamond")
        )
    fig = go.Figure()
    for name, nll, colour, symbol in lines:
        means = nll.mean(axis=-1)
        fig.add_trace(
            go.Scatter(
                x=windows,
                y=_metric(means, metric),
                name=name,
                mode="lines+markers",
                line={"color": colour, "width": 3},
                marker={"size": 10, "symbol": symbol},
                customdata=np.stack([means, np.exp(means)], axis=1),
                hovertemplate=f"{name}<br>window %{{x}} tokens<br>mean NLL %{{customdata[0]:.3f}} nats"
                "<br>perplexity %{customdata[1]:.1f}<extra></extra>",
            )
        )
    _full_attention_line(fig, full, metric, [windows.min(), windows.max()], "dash")
    themed(fig, "Loss of the text when every layer may only look back a fixed number of tokens")
    fig.update_layout(
        title_subtitle_text=f"{sweep.model}, {len(sweep.tokens)} tokens; lower is better; "
        "the dashed line is the unrestricted model",
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
        height=520,
        margin={"b": 110},
    )
    log_y = metric == "perplexity"  # perplexity grows exponentially as windows shrink
    fig.update_xaxes(title_text="window w (tokens each query may see, itself included)", type="log", tickvals=windows)
    fig.update_yaxes(title_text=METRICS[metric] + (" (log scale)" if log_y else ""), type="log" if log_y else "linear")
    return fig


def extra_loss_by_token(sweep: WindowSweep, window: int) -> go.Figure:
    """Per-token NLL added by one window (without and with sinks) over full attention, along the text."""
    index = int(np.flatnonzero(sweep.windows == window)[0])
    positions = np.arange(1, len(sweep.tokens))
    labels = [visible(t) for t in sweep.tokens[1:]]
    lines = [("window only", sweep.nll_window[index], WINDOW_COLOUR)]
    if sweep.sinks:
        lines.append((f"window + {sweep.sinks} sinks", sweep.nll_sinks[index], SINKS_COLOUR))
    fig = go.Figure()
    for name, nll, colour in lines:
        fig.add_trace(
            go.Scatter(
                x=positions,
                y=nll - sweep.nll_full,
                name=name,
                mode="lines",
                line={"color": colour, "width": 1.5},
                customdata=np.stack([np.array(labels, dtype=object), sweep.nll_full, nll], axis=1),
                hovertemplate=f"{name}<br>token %{{x}}: %{{customdata[0]}}<br>NLL %{{customdata[2]:.3f}} vs full "
                "%{customdata[1]:.3f} nats<br>extra %{y:+.3f}<extra></extra>",
            )
        )
    fig.add_hline(y=0.0, line={"color": FULL_COLOUR, "dash": "dash", "width": 1})
    fig.add_vline(
        x=window + 0.5,
        line={"color": FULL_COLOUR, "dash": "dot", "width": 1},
        annotation_text=f"from token {window + 1} on, the window hides the first tokens",
        annotation_position="top right",
    )
    themed(fig, f"Extra loss per token with a window of {window} tokens, compared with full attention")
    fig.update_layout(
        title_subtitle_text="NLL of each token under the window minus its NLL under full attention (nats); "
        "0 until the window starts to hide tokens",
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0},
        height=460,
        margin={"b": 110},
    )
    fig.update_xaxes(title_text="position of the predicted token")
    fig.update_yaxes(title_text="extra NLL (nats)", zeroline=False)
    return fig


def loss_by_budget(sweep: PatternSweep, metric: str = "nll") -> go.Figure:
    """The text's loss against the attention budget each pattern keeps, one line per pattern (dashed: with the
    first tokens kept as sinks), full attention as the reference at a budget of 1."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}")
    fig = go.Figure()
    for i, (pattern, label) in enumerate(zip(sweep.patterns, sweep.labels)):
        for k in range(sweep.nll.shape[-1]):
            name = label + (f" + {sweep.sinks} sinks" if k else "")
            means, budgets = sweep.nll[i, :, k], sweep.budget[i, :, k]
            fig.add_trace(
                go.Scatter(
                    x=budgets,
                    y=_metric(means, metric),
                    name=name,
                    mode="lines+markers",
                    line={"color": PATTERN_COLOURS[pattern], "width": 3 - k, "dash": "dash" if k else "solid"},
                    marker={"size": 9, "symbol": "diamond" if k else "circle"},
                    customdata=np.stack([sweep.sizes, means, np.exp(means)], axis=1),
                    hovertemplate=f"{name}, size %{{customdata[0]}}<br>budget %{{x:.1%}} of the causal pairs"
                    "<br>mean NLL %{customdata[1]:.3f} nats, perplexity %{customdata[2]:.1f}<extra></extra>",
                )
            )
    _full_attention_line(fig, sweep.nll_full, metric, [float(sweep.budget.min()), 1.0], "dot")
    themed(fig, "Loss against the attention budget: which pattern spends it best")
    fig.update_layout(
        title_subtitle_text=f"{sweep.model}, {sweep.n_tokens} tokens, every layer under the pattern; "
        f"{sweep.settings}; lower is better",
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
        height=540,
        margin={"b": 130},
    )
    log_y = metric == "perplexity"
    fig.update_xaxes(
        title_text="attention budget: share of the causal query-key pairs kept (log scale)",
        type="log",
        tickformat=".0%",
    )
    fig.update_yaxes(title_text=METRICS[metric] + (" (log scale)" if log_y else ""), type="log" if log_y else "linear")
    return fig
