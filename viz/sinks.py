"""Figures of attention sinks: sink share by layer and head, corpus-average maps, and the massive-activation link."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.sinks import CorpusAttention, MassiveLink, SinkProfile
from viz.attention import cell_labels, head_grid
from viz.theme import SEQUENTIAL, legend_below, themed, visible

SINK_COLOUR = "#c0392b"
FIRST_K_COLOUR = "#2e6fb7"
BASELINE_COLOUR = "#7f7f7f"
MAPS_PER_ROW = 6


def _layer_axis(n_layers: int) -> dict:
    return {"title_text": "layer", "dtick": 1 if n_layers <= 32 else None, "range": [-0.5, n_layers - 0.5]}


def sink_share_by_layer(profile: SinkProfile, first_k: np.ndarray, k: int) -> go.Figure:
    """Per layer, the share of attention on token 0 and on the first k tokens, against an even spread."""
    layers = np.arange(len(profile.layer_share))
    first = visible(profile.tokens[0])
    fig = go.Figure(
        [
            go.Scatter(
                x=layers,
                y=profile.layer_share,
                name=f"token 0 ({first}): the sink share",
                mode="lines+markers",
                line={"color": SINK_COLOUR, "width": 3},
                hovertemplate=f"layer %{{x}}: %{{y:.1%}} of later tokens' attention goes to token 0 ({first})<extra></extra>",
            ),
            go.Scatter(
                x=layers,
                y=first_k,
                name=f"the first {k} tokens",
                mode="lines+markers",
                line={"color": FIRST_K_COLOUR, "width": 2, "dash": "dash"},
                hovertemplate=(
                    f"layer %{{x}}: %{{y:.1%}} of the attention of tokens {k} onwards goes to tokens 0 to {k - 1}<extra></extra>"
                ),
            ),
        ]
    )
    fig.add_hline(
        y=profile.uniform_share,
        line={"color": BASELINE_COLOUR, "dash": "dot"},
        annotation_text=f"token 0 if attention were spread evenly ({profile.uniform_share:.1%})",
        annotation_position="top right",
    )
    themed(
        fig,
        "Sink share by layer: how much attention lands on the first token(s)",
        "Mean over heads and over later tokens of the weight they put on token 0 (or on tokens 0 to k-1)."
        "<br>Far above the dotted line: a sink.",
    )
    legend_below(fig, height=480)
    fig.update_xaxes(**_layer_axis(len(layers)))
    fig.update_yaxes(title_text="share of attention", range=[0, 1.02], tickformat=".0%")
    return fig


def sink_head_grid(profile: SinkProfile) -> go.Figure:
    """The layer x head heatmap of sink shares."""
    return head_grid(
        profile.sink_share,
        f"Sink share per head: weight on token 0 ({visible(profile.tokens[0])})",
        "sink share",
    )


def sink_table_rows(profile: SinkProfile) -> list[dict]:
    """One row per layer: its sink and the attention the sink receives (in %)."""
    labels = cell_labels(profile.tokens, profile.pool)
    rows = []
    for layer, cell in enumerate(profile.sink_position):
        if profile.pool > 1:
            where = {"sink positions": labels[cell]}
        else:
            where = {"sink position": int(cell), "sink token": labels[cell]}
        rows.append(
            {"layer": layer, **where, "attention it receives (%)": round(100 * float(profile.received[layer, cell]), 1)}
        )
    return rows


def _position_labels(corpus: CorpusAttention) -> list[str]:
    """Positions 0..n-1, with the shared first token named."""
    labels = [str(i) for i in range(corpus.n_tokens)]
    if corpus.first_token is not None:
        labels[0] = f"0 {visible(corpus.first_token)}"
    return labels


def corpus_map(corpus: CorpusAttention, layer: int, logits: bool) -> np.ndarray:
    """One layer's head-averaged map with masked (future) cells as NaN."""
    values = (corpus.layer_logits if logits else corpus.layer_probabilities)[layer].astype(np.float64)
    if corpus.is_causal:
        values = np.where(np.triu(np.ones(values.shape, dtype=bool), k=1), np.nan, values)
    return values


def _value_range(values: np.ndarray, logits: bool, is_causal: bool) -> tuple[float, float]:
    """The colour range of one map: its visible values (weights from 0), leaving out a decoder's first row,
    where token 0 can only attend to itself (weight 1) and would wash out the rest."""
    shown = values[1:] if is_causal else values
    finite = shown[np.isfinite(shown)]
    low = float(finite.min()) if logits else 0.0
    return low, max(float(finite.max()), low + 1e-6)


def corpus_maps(corpus: CorpusAttention, layers: list[int], logits: bool = True) -> go.Figure:
    """Average maps of several layers side by side, each on its own colour scale, like StreamingLLM's Figure 2."""
    cols = min(MAPS_PER_ROW, len(layers))
    rows = -(-len(layers) // cols)
    maps = [corpus_map(corpus, layer, logits) for layer in layers]
    ranges = [_value_range(values, logits, corpus.is_causal) for values in maps]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[
            f"Layer {layer}<br><sup>{low:.2g} to {high:.2g}</sup>" for layer, (low, high) in zip(layers, ranges)
        ],
        horizontal_spacing=0.03,
        vertical_spacing=0.25 / rows,
    )
    labels = _position_labels(corpus)
    positions = range(corpus.n_tokens)
    hover = np.array([[f"query {labels[q]} → key {labels[k]}" for k in positions] for q in positions])
    unit = "mean logit" if logits else "mean weight"
    for i, (layer, values, (low, high)) in enumerate(zip(layers, maps, ranges)):
        row, col = divmod(i, cols)
        fig.add_trace(
            go.Heatmap(
                z=values,
                zmin=low,
                zmax=high,
                colorscale=SEQUENTIAL,
                showscale=False,
                customdata=hover,
                hovertemplate=f"layer {layer}: %{{customdata}}<br>{unit} %{{z:.3f}}<extra></extra>",
            ),
            row=row + 1,
            col=col + 1,
        )
        # make_subplots numbers the axes row by row from the top left: x, x2, x3, ...
        fig.update_yaxes(scaleanchor=f"x{i + 1}" if i else "x", row=row + 1, col=col + 1)
    what = "attention logits (pre-softmax scores)" if logits else "attention weights"
    themed(fig, f"Average {what} of {corpus.model} over {corpus.n_sentences} sentences of {corpus.n_tokens} tokens")
    first = (
        "each sentence's first token"
        if corpus.first_token is None
        else f"{visible(corpus.first_token)} in every sentence"
    )
    fig.update_layout(
        title_subtitle_text=(
            f"Head-averaged; rows: query position, columns: key position (0 is {first}); blank: masked. "
            "A bright first column: the sink."
            "<br>Each map has its own colour scale: dark is its lowest value, yellow its highest (range under the layer)."
        ),
        margin={"t": 165, "b": 30},
        height=rows * 180 + 190,
    )
    ticks = list(range(0, corpus.n_tokens, max(1, corpus.n_tokens // 4)))
    axis = {"tickvals": ticks, "showgrid": False, "zeroline": False, "constrain": "domain"}
    fig.update_xaxes(**axis)
    fig.update_yaxes(autorange="reversed", constraintoward="top", **axis)
    return fig


def _position_text(labels: list[str], cell: int, pool: int) -> str:
    """A position for hover text: its index and token, or the positions a pooled cell covers."""
    return f"positions {labels[cell]}" if pool > 1 else f"{cell} ({labels[cell]})"


def _magnitude_trace(
    link: MassiveLink, magnitude: np.ndarray, positions: np.ndarray, name: str, line: dict
) -> go.Scatter:
    """Largest |h| per layer at the given positions, with each position and its ratio to the median on hover."""
    labels = cell_labels(link.tokens, link.pool)
    where = [_position_text(labels, int(p), link.pool) for p in positions]
    return go.Scatter(
        x=np.arange(len(magnitude)),
        y=magnitude,
        name=name,
        mode="lines+markers",
        line=line,
        customdata=np.stack([where, magnitude / link.median_magnitude], axis=1).astype(object),
        hovertemplate=(
            "layer %{x}: token %{customdata[0]}<br>largest |h| %{y:,.1f} = %{customdata[1]:,.0f}× the median<extra></extra>"
        ),
    )


def massive_link_chart(link: MassiveLink) -> go.Figure:
    """Per layer, the largest |hidden state| at the sink token against the largest at any other token, log scale."""
    layers = np.arange(len(link.sink_magnitude))
    fig = go.Figure(
        [
            _magnitude_trace(
                link, link.sink_magnitude, link.sink_position, "at the sink token", {"color": SINK_COLOUR, "width": 3}
            ),
            _magnitude_trace(
                link,
                link.other_magnitude,
                link.other_position,
                "largest at any other token",
                {"color": FIRST_K_COLOUR, "width": 2, "dash": "dash"},
            ),
            go.Scatter(
                x=layers[~link.sink_is_massive],
                y=link.sink_magnitude[~link.sink_is_massive],
                name="another token is larger",
                mode="markers",
                marker={"size": 18, "symbol": "circle-open", "color": "black", "line": {"width": 2}},
                hoverinfo="skip",
            ),
            go.Scatter(
                x=layers,
                y=link.median_magnitude,
                name="median |h| (all tokens and features)",
                mode="lines",
                line={"color": BASELINE_COLOUR, "dash": "dot"},
                hovertemplate="layer %{x}: median |h| %{y:.3f}<extra></extra>",
            ),
        ]
    )
    same = int(np.sum(link.sink_is_massive))
    themed(
        fig,
        f"Is the sink token also the massive activation? In {same} of {len(layers)} layers, yes",
        "Hidden state entering each layer: largest |value| over features at the sink token vs at any other token."
        "<br>Ringed: layers where another token holds the largest activation.",
    )
    legend_below(fig, height=520)
    fig.update_xaxes(**_layer_axis(len(layers)))
    fig.update_yaxes(title_text="largest |hidden state| (log scale)", type="log", dtick=1)
    return fig


LEAD_RANGE = (-8.0, 12.0)  # nats of logit lead the mechanism chart spans
TIED = (1, 10, 100)  # other keys tied at the best one, for the formula's curves


def head_points(x: np.ndarray, y: np.ndarray, what: str, extra: np.ndarray | None = None) -> go.Scatter:
    """One marker per head at (x, y) ((layers, heads) each), coloured by layer; the hover names the head, then
    `what` (a Plotly template that may read %{customdata[2]} from `extra`, (layers, heads))."""
    layers, heads = np.meshgrid(np.arange(x.shape[0]), np.arange(x.shape[1]), indexing="ij")
    columns = [layers.ravel(), heads.ravel()] + ([] if extra is None else [extra.ravel()])
    return go.Scatter(
        x=x.ravel(),
        y=y.ravel(),
        mode="markers",
        name="a head (colour: its layer)",
        customdata=np.stack(columns, axis=1),
        marker={
            "color": layers.ravel(),
            "colorscale": SEQUENTIAL,
            "size": 7,
            "colorbar": {"title": {"text": "layer", "side": "right"}, "thickness": 14},
        },
        hovertemplate=f"layer %{{customdata[0]}}, head %{{customdata[1]}}: {what}<extra></extra>",
    )


def sink_mechanism(model: str, share: np.ndarray, lead: np.ndarray, n_tokens: int) -> go.Figure:
    """Each head's sink share against its mean logit lead (token 0's logit minus the best other one), coloured by
    layer, over the softmax formula's share 1 / (1 + m e^(-lead)) for m other keys tied at the best."""
    leads = np.linspace(*LEAD_RANGE, 200)
    traces: list[go.Scatter] = [
        go.Scatter(
            x=leads,
            y=1 / (1 + m * np.exp(-leads)),
            mode="lines",
            name=f"softmax, {m} other key{'s' if m > 1 else ''} at the best one's logit",
            line={"color": BASELINE_COLOUR, "dash": dash, "width": 1.5},
            hovertemplate=f"lead %{{x:.1f}} nats, {m} tied keys: share %{{y:.1%}}<extra></extra>",
        )
        for m, dash in zip(TIED, ("solid", "dash", "dot"), strict=True)
    ]
    traces.append(head_points(lead, share, "lead %{x:.2f} nats, sink share %{y:.1%}"))
    fig = go.Figure(traces)
    themed(
        fig,
        f"Why sinks form: softmax must put its weight somewhere ({model})",
        f"Each head on your text ({n_tokens} tokens): its share of attention on token 0 against token 0's logit lead"
        "<br>over the best other key the query sees (means over queries). Softmax gives token 0 the weight "
        "1 / (1 + Σ e^(x_k − x_0)):<br>a lead of a few nats and the first token takes it all (grey: m keys tied at "
        "the best).",
    )
    legend_below(fig, height=580)
    fig.update_layout(margin={"t": 130})
    fig.update_xaxes(title_text="logit lead of token 0 (nats)", range=list(LEAD_RANGE), zeroline=True)
    fig.update_yaxes(title_text="share of attention on token 0", range=[0, 1.02], tickformat=".0%")
    return fig


def first_weight(first: np.ndarray | float, others: np.ndarray) -> np.ndarray:
    """Softmax's weight on the first of the logits [first, *others], for each value of `first` (computed stably)."""
    x = np.asarray(first, dtype=np.float64)[..., None]
    top = np.maximum(x, others.max())
    own = np.exp(x - top)[..., 0]
    return own / (own + np.exp(others - top).sum(axis=-1))


def softmax_toy(first: float, others: np.ndarray) -> go.Figure:
    """The lecture's equation, live: the softmax weights of the logits [first, *others] as bars (the first in the
    sink's colour), and beside them the first token's weight as its logit grows, with `first` marked."""
    logits = np.concatenate([[first], others])
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()  # the same weights first_weight gives the first key
    grid = np.linspace(LEAD_RANGE[0] + others.max(), LEAD_RANGE[1] + others.max(), 200)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1)
    colours = [SINK_COLOUR] + [FIRST_K_COLOUR] * len(others)
    fig.add_trace(
        go.Bar(
            x=np.arange(len(logits)),
            y=weights,
            marker_color=colours,
            customdata=logits,
            hovertemplate="key %{x}: logit %{customdata:.2f}, weight %{y:.3%}<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=grid,
            y=first_weight(grid, others),
            mode="lines",
            line={"color": SINK_COLOUR},
            hovertemplate="x₁ = %{x:.2f}: weight on the first key %{y:.1%}<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=[first],
            y=[weights[0]],
            mode="markers",
            marker={"color": SINK_COLOUR, "size": 12, "symbol": "diamond"},
            hovertemplate="here: %{y:.1%}<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    themed(
        fig,
        f"softmax(x)₁ = e^x₁ / Σ e^xⱼ: the first key takes {weights[0]:.1%} of {len(logits)}",
        f"x₁ = {first:g}; the other {len(others)} logits drawn around 0 (largest {others.max():.2f}). Left: every "
        "key's weight; right: the first key's weight as x₁ grows.",
    )
    fig.update_xaxes(title_text="key", col=1)
    fig.update_yaxes(title_text="softmax weight", col=1, rangemode="tozero")
    fig.update_xaxes(title_text="x₁, the first key's logit", col=2)
    fig.update_yaxes(title_text="weight on the first key", range=[0, 1.02], tickformat=".0%", col=2)
    fig.update_layout(height=420, margin={"t": 110})
    return fig
