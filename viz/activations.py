"""Figures of massive activations: one layer's |h| over its (tokens, features), the largest |h| per layer, the
corpus consistency of the massive features, and the ablation of them."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from results.activations import Ablation, ActivationResult, LayerActivations, Massive
from viz.theme import SEQUENTIAL, legend_below, themed, token_axis, visible

MAX_SURFACE_TOKENS = 256  # longer texts are max-pooled along tokens for the 3D surface and heatmap
RANK_COLOURS = ("#c0392b", "#e67e22", "#f1c40f")
MEDIAN_COLOUR = "#7f7f7f"
KIND_COLOURS = ("#c0392b", "#2e6fb7", "#76a5d8", "#b0b0b0")
LABELLED = 3  # the largest entries named on the surface


def _pooled_magnitudes(layer: LayerActivations) -> tuple[np.ndarray, int]:
    """|h| (tokens, features), max-pooled over blocks of tokens when there are more than MAX_SURFACE_TOKENS."""
    magnitude = np.abs(layer.values)
    pool = -(-len(magnitude) // MAX_SURFACE_TOKENS)
    if pool == 1:
        return magnitude, 1
    rows = -(-len(magnitude) // pool)
    padded = np.pad(magnitude, ((0, rows * pool - len(magnitude)), (0, 0)))
    return padded.reshape(rows, pool, -1).max(axis=1), pool


def _row_labels(tokens: list[str], pool: int) -> list[str]:
    if pool == 1:
        return [f"{i}:{visible(t)}" for i, t in enumerate(tokens)]
    return [f"{start}–{min(len(tokens), start + pool) - 1}" for start in range(0, len(tokens), pool)]


def _largest(magnitude: np.ndarray, count: int) -> list[tuple[int, int]]:
    """(row, feature) of the `count` largest entries, largest first."""
    flat = np.argsort(magnitude, axis=None)[::-1][:count]
    rows, features = np.unravel_index(flat, magnitude.shape)
    return [(int(r), int(f)) for r, f in zip(rows, features)]


def _subtitle(layer: LayerActivations, pool: int) -> str:
    pooled = f"; every row is the max over {pool} tokens" if pool > 1 else ""
    return f"{layer.model}: output of block {layer.layer}, {len(layer.tokens)} tokens x {layer.values.shape[1]} features{pooled}"


def magnitude_surface(layer: LayerActivations) -> go.Figure:
    """|h| of one block's output as a 3D surface over the (tokens, features) plane, its largest entries labelled
    (Sun et al. 2024, Figure 1)."""
    magnitude, pool = _pooled_magnitudes(layer)
    labels = _row_labels(layer.tokens, pool)
    annotations = [
        {
            "x": dim,
            "y": row,
            "z": float(magnitude[row, dim]),
            "text": f"dim {dim} · {labels[row]} · {magnitude[row, dim]:,.0f}",
            "showarrow": True,
            "arrowhead": 2,
            "ax": 0,
            "ay": -40 - 25 * rank,
            "font": {"size": 13},
            "bgcolor": "rgba(255,255,255,0.8)",
        }
        for rank, (row, dim) in enumerate(_largest(magnitude, LABELLED))
    ]
    fig = go.Figure(
        go.Surface(
            z=magnitude,
            colorscale=SEQUENTIAL,
            colorbar={"title": {"text": "|h|"}},
            customdata=np.array([[label] * magnitude.shape[1] for label in labels]),
            hovertemplate="token %{customdata}<br>feature %{x}<br>|h| %{z:,.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        scene={
            "xaxis_title": "feature",
            # Pooled rows are labelled with their ranges ("924-927"): half as many fit along the axis.
            "yaxis": {
                "title": "token",
                **token_axis(layer.tokens if pool == 1 else labels, max_labels=12 if pool == 1 else 6),
            },
            "zaxis_title": "|h|",
            "annotations": annotations,
            "camera": {"eye": {"x": 1.6, "y": -1.6, "z": 0.9}},
        },
        height=720,
    )
    return themed(fig, f"|h| at layer {layer.layer}", _subtitle(layer, pool))


def magnitude_heatmap(layer: LayerActivations) -> go.Figure:
    """|h| of one block's output as a (tokens, features) heatmap (log colour scale), largest entries marked."""
    magnitude, pool = _pooled_magnitudes(layer)
    labels = _row_labels(layer.tokens, pool)
    largest = _largest(magnitude, LABELLED)
    fig = go.Figure(
        [
            go.Heatmap(
                z=np.log10(np.maximum(magnitude, 1e-3)),
                colorscale=SEQUENTIAL,
                colorbar={"title": {"text": "log10 |h|"}},
                customdata=magnitude,
                hovertemplate="token %{y}<br>feature %{x}<br>|h| %{customdata:,.2f}<extra></extra>",
                y=labels,
            ),
            go.Scatter(
                x=[dim for _, dim in largest],
                y=[labels[row] for row, _ in largest],
                mode="markers+text",
                marker={"symbol": "circle-open", "size": 16, "color": "#c0392b", "line": {"width": 2}},
                text=[f"dim {dim}" for _, dim in largest],
                textposition="middle right",
                textfont={"color": "#c0392b"},
                hoverinfo="skip",
                showlegend=False,
            ),
        ]
    )
    fig.update_layout(
        xaxis_title="feature",
        yaxis={"title": "token", "autorange": "reversed", "type": "category"},
        height=max(420, min(900, 18 * len(labels) + 160)),
    )
    return themed(fig, f"|h| at layer {layer.layer} (log colour scale)", _subtitle(layer, pool))


def magnitude_lines(result: ActivationResult) -> go.Figure:
    """The largest, second and third largest, and median |h| of each block's output, on a log scale
    (Sun et al. 2024, Figure 2)."""
    layers = np.arange(len(result.max_abs))
    traces = [
        go.Scatter(
            x=layers,
            y=result.ranked(rank),
            name=f"top {rank}",
            mode="lines+markers",
            line={"color": colour, "width": 3 if rank == 1 else 2},
            hovertemplate=f"layer %{{x}}: top {rank} |h| %{{y:,.1f}}<extra></extra>",
        )
        for rank, colour in enumerate(RANK_COLOURS, start=1)
    ]
    traces.append(
        go.Scatter(
            x=layers,
            y=result.median_abs,
            name="median",
            mode="lines+markers",
            line={"color": MEDIAN_COLOUR, "dash": "dash"},
            hovertemplate="layer %{x}: median |h| %{y:.3f}<extra></extra>",
        )
    )
    fig = go.Figure(traces)
    fig.update_layout(xaxis={"title": "layer (output of block)", "dtick": 1 if len(layers) <= 32 else None})
    fig.update_yaxes(type="log", title_text="|h|")
    legend_below(fig, 520)
    return themed(
        fig,
        "Largest activation magnitudes per layer",
        f"{result.model}, {len(result.tokens)} tokens; log scale, so that the median and the peaks fit on one chart",
    )


def massive_rows(found: list[Massive]) -> list[dict]:
    """Table rows for st.dataframe: one per massive activation."""
    return [
        {
            "layer": m.layer,
            "position": m.position,
            "token": visible(m.token),
            "kind": m.kind,
            "feature": m.dim,
            "value": round(m.value, 2),
            "× median": round(m.ratio),
        }
        for m in found
    ]


def corpus_massive_layers(counts: np.ndarray, n_sentences: int, model: str) -> go.Figure:
    """Layers x the features ever massive: the share of corpus sentences in which each is massive on some token."""
    any_kind = counts.max(axis=2)  # a sentence counted for a kind counts once for the feature
    features = np.flatnonzero(any_kind.max(axis=0))
    fig = go.Figure(
        go.Heatmap(
            z=any_kind[:, features] / n_sentences,
            x=[str(f) for f in features],
            colorscale=SEQUENTIAL,
            zmin=0,
            zmax=1,
            colorbar={"title": {"text": "sentences"}, "tickformat": ".0%"},
            hovertemplate="layer %{y}, feature %{x}: massive in %{z:.0%} of sentences<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis={"title": "feature", "type": "category"},
        yaxis={"title": "layer", "autorange": "reversed"},
        height=max(360, 16 * counts.shape[0] + 160),
    )
    return themed(
        fig,
        "Which features are massive, sentence after sentence",
        f"{model}, {n_sentences} sentences of the bundled corpus; only features massive at least once are shown",
    )


def corpus_massive_kinds(
    counts: np.ndarray, n_sentences: int, layer: int, kinds: tuple[str, ...], model: str
) -> go.Figure:
    """At one layer: for each feature ever massive there, the share of sentences where it is massive on each kind
    of token (first token, first delimiter, ...)."""
    at_layer = counts[layer]
    features = np.flatnonzero(at_layer.sum(axis=1))
    fig = go.Figure(
        [
            go.Bar(
                x=[str(f) for f in features],
                y=at_layer[features, k] / n_sentences,
                name=kind,
                marker_color=KIND_COLOURS[k],
                hovertemplate=f"feature %{{x}}: massive on the {kind} in %{{y:.0%}} of sentences<extra></extra>",
            )
            for k, kind in enumerate(kinds)
        ]
    )
    fig.update_layout(barmode="group", xaxis={"title": "feature", "type": "category"})
    fig.update_yaxes(title_text="share of sentences", tickformat=".0%", range=[0, 1.05])
    legend_below(fig, 460)
    return themed(fig, f"On which tokens, at layer {layer}", f"{model}, {n_sentences} sentences of the bundled corpus")


def ablation_chart(ablation: Ablation) -> go.Figure:
    """Perplexity of the text unchanged, with its massive activations zeroed or set to their corpus mean, and with
    as many random activations zeroed (mean of the draws, with their range)."""
    random = np.exp(ablation.nll_random.mean(axis=1))
    labels = ["unchanged", "massive → 0", "massive → corpus mean", f"random → 0 ({len(random)} draws)"]
    values = [float(np.exp(n.mean())) for n in (ablation.nll_base, ablation.nll_zeroed, ablation.nll_mean)]
    values.append(float(random.mean()))
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=values,
            marker_color=[MEDIAN_COLOUR, RANK_COLOURS[0], "#2e6fb7", "#b0b0b0"],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [0, 0, 0, float(random.max() - random.mean())],
                "arrayminus": [0, 0, 0, float(random.mean() - random.min())],
            },
            text=[f"{v:,.1f}" if v < 1e4 else f"{v:,.3g}" for v in values],
            textposition="outside",
            hovertemplate="%{x}: perplexity %{y:,.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(
        type="log",
        title_text="perplexity of the text (log scale)",
        range=[0, np.log10(max(values) * 10)],
        exponentformat="power",
    )
    fig.update_layout(height=480)
    layers = sorted(set(ablation.layers.tolist()))
    where = f"at layer{'s' if len(layers) > 1 else ''} {_ranges(layers)}" if layers else "(none found)"
    entries = f"{len(ablation.layers)} massive entr{'y' if len(ablation.layers) == 1 else 'ies'}"
    how = "at every layer where it is massive" if ablation.everywhere else "each where it first appears"
    return themed(fig, "Remove the massive activations", f"{ablation.model}: {entries} edited {where}, {how}")


def _ranges(values: list[int]) -> str:
    """Sorted integers as runs: [1, 2, 3, 7] -> "1–3, 7"."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)
