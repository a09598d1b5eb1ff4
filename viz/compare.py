"""Several models on one chart. Per-layer measures are placed by relative depth, so that a 30-layer and an 18-layer
model line up (the first block at 0, the last at 1) while the hover names the real layer; a model may have several
series (e.g. the largest, second largest and median |h|): one colour per model, one dash per series. Measures that
are not per layer (head types, loss per byte) keep the model's colour."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.pruning import DENSE_BYTES, PATTERNS, Tradeoff
from results.spectra import MatrixSpectrum
from viz.pruning import SERIES
from viz.spectra import esd_density
from viz.theme import SEQUENTIAL, legend_below, themed, token_axis, visible

DASHES = ("solid", "dash", "dot")
COLOURS = px.colors.qualitative.D3  # the i-th model's colour on every compare chart
METHOD_SYMBOLS = {"prune": "circle", "wanda": "triangle-up", "sparsegpt": "square", "quantize": "diamond", "gptq": "x"}
Lines = Sequence[tuple[str, Mapping[str, np.ndarray]]]  # (model, {series: value per layer})


def relative_depth(n_layers: int) -> np.ndarray:
    """Layer i of n at i / (n - 1): 0 for the first block, 1 for the last (a single layer sits at 0)."""
    return np.arange(n_layers) / max(n_layers - 1, 1)


def _depth_traces(lines: Lines, legend: bool = True) -> list[go.Scatter]:
    """Each model's series against relative depth: the first solid, the next dashed, then dotted."""
    traces = []
    for i, (model, series) in enumerate(lines):
        for j, (label, values) in enumerate(series.items()):
            name = f"{model} ({len(values)} layers)" + (f": {label}" if len(series) > 1 else "")
            traces.append(
                go.Scatter(
                    x=relative_depth(len(values)),
                    y=np.asarray(values, dtype=np.float64),
                    customdata=np.arange(len(values)),
                    name=name,
                    legendgroup=model,
                    showlegend=legend,
                    mode="lines+markers" if j == 0 else "lines",
                    line={"color": COLOURS[i % len(COLOURS)], "width": 3 if j == 0 else 2, "dash": DASHES[j % 3]},
                    hovertemplate=f"{name}<br>layer %{{customdata}} of {len(values)}: %{{y:.4g}}<extra></extra>",
                )
            )
    return traces


def by_depth(
    lines: Lines,
    title: str,
    y_title: str,
    subtitle: str = "",
    log_y: bool = False,
) -> go.Figure:
    """For each (model, {series: value per layer}), its series against relative depth (the first series solid,
    the next dashed, then dotted; one colour per model); the hover shows the model's own layer."""
    traces = _depth_traces(lines)
    fig = go.Figure(traces)
    themed(fig, title, subtitle or None)
    legend_below(fig, height=480 + 8 * max(0, len(traces) - 3))  # a legend row for about every three more
    fig.update_xaxes(title_text="relative depth (0: first block, 1: last)", range=[-0.03, 1.03], tickformat=".0%")
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear")
    return fig


def by_depth_panels(
    panels: Sequence[tuple[str, Lines]], title: str, y_title: str, subtitle: str = "", log_y: bool = False
) -> go.Figure:
    """One small chart per panel (e.g. per kind of matrix), each with every model's lines by relative depth, on one
    y axis for all; the legend names the models once."""
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        shared_xaxes=True,
        shared_yaxes=True,
        subplot_titles=[name for name, _ in panels],
        vertical_spacing=0.12,
        horizontal_spacing=0.03,
    )
    for index, (_, lines) in enumerate(panels):
        for trace in _depth_traces(lines, legend=index == 0):
            fig.add_trace(trace, row=index // columns + 1, col=index % columns + 1)
    themed(fig, title, subtitle or None)
    legend_below(fig, height=260 * rows + 220)
    fig.update_xaxes(range=[-0.05, 1.05], tickformat=".0%", tickvals=[0, 0.5, 1])
    fig.update_xaxes(title_text="relative depth", row=rows)
    values = np.concatenate(
        [np.asarray(v, dtype=np.float64) for _, lines in panels for _, s in lines for v in s.values()]
    )
    shown = values[np.isfinite(values) & ((values > 0) if log_y else True)]
    if len(shown):  # plotly's autorange of shared log axes spans decades too many
        low, high = float(shown.min()), float(shown.max())
        fig.update_yaxes(range=[np.log10(low / 1.2), np.log10(high * 1.2)] if log_y else [min(low, 0.0), high * 1.05])
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_yaxes(title_text=y_title, col=1)
    return fig


def bars_by_model(
    rows: Sequence[tuple[str, Mapping[str, float]]],
    title: str,
    y_title: str,
    subtitle: str = "",
    hover: Sequence[Mapping[str, str]] | None = None,
) -> go.Figure:
    """One bar per (model, category), grouped by category, in the model's colour; hover[i][category] adds a line."""
    fig = go.Figure()
    for i, (model, values) in enumerate(rows):
        notes = hover[i] if hover else {}
        fig.add_trace(
            go.Bar(
                x=list(values),
                y=[float(v) for v in values.values()],
                name=model,
                marker_color=COLOURS[i % len(COLOURS)],
                customdata=[notes.get(category, "") for category in values],
                hovertemplate=f"{model}<br>%{{x}}: %{{y:.3g}}<br>%{{customdata}}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    themed(fig, title, subtitle or None)
    legend_below(fig, height=480)
    fig.update_yaxes(title_text=y_title)
    return fig


def loss_per_byte(results: Sequence[Tradeoff]) -> go.Figure:
    """Each model's compression tradeoff on one chart: the mean NLL of its held-out sentences (of the text, when it
    has none) against bytes per weight, one colour per model and one marker per method (N:M patterns as separate
    points), each model's unchanged loss as a dotted line in its colour."""
    traces: list[go.Scatter] = []
    corpus = all(r.n_sentences for r in results)
    for i, result in enumerate(results):
        colour = COLOURS[i % len(COLOURS)]
        base = result.base_nll_corpus if corpus else result.base_nll_text
        for method in SERIES:
            for structured in (False, True):
                points = sorted(
                    (p for p in result.points if p.method == method and (p.label in PATTERNS) == structured),
                    key=lambda p: p.bytes_per_weight,
                )
                if not points:
                    continue
                name = f"{result.model}: {SERIES[method]}" + (" N:M" if structured else "")
                traces.append(
                    go.Scatter(
                        x=[p.bytes_per_weight for p in points],
                        y=[p.nll_corpus if corpus else p.nll_text for p in points],
                        customdata=[p.label for p in points],
                        name=name,
                        legendgroup=result.model,
                        mode="markers" if structured else "lines+markers",
                        marker={"color": colour, "size": 11 if structured else 9, "symbol": METHOD_SYMBOLS[method]},
                        line={"color": colour, "dash": "solid" if method in ("prune", "quantize") else "dash"},
                        hovertemplate=f"{name}, %{{customdata}}: %{{x:.3f}} bytes per weight, NLL %{{y:.3f}} "
                        f"(unchanged {base:.3f})<extra></extra>",
                    )
                )
        traces.append(
            go.Scatter(
                x=[0, DENSE_BYTES * 1.12],
                y=[base, base],
                mode="lines",
                name=f"{result.model}: unchanged",
                legendgroup=result.model,
                line={"color": colour, "dash": "dot", "width": 1},
                hovertemplate=f"{result.model} unchanged: NLL {base:.3f}<extra></extra>",
            )
        )
    where = "held-out corpus sentences" if corpus else "your text"
    fig = go.Figure(traces)
    themed(
        fig,
        "Loss per byte, model against model",
        f"Mean NLL of the {where} against the bytes each compressed weight costs; each model's unchanged loss "
        "dotted.<br>Markers: the method; dashed lines: the calibrated methods (Wanda, SparseGPT, GPTQ).",
    )
    legend_below(fig, height=560 + 10 * max(0, len(traces) - 6))
    fig.update_xaxes(title_text="bytes per weight (compressed matrices)", range=[0, DENSE_BYTES * 1.12])
    fig.update_yaxes(title_text="mean NLL per token (nats)", type="log")
    return fig


@dataclass(frozen=True)
class Panel:
    """One matrix of a side-by-side figure: its title, its values (rows by columns; NaN blank) and, for a map of a
    text, the tokens that label both axes."""

    title: str
    values: np.ndarray
    tokens: Sequence[str] | None = None


def side_by_side(
    rows: Sequence[Sequence[Panel]],
    title: str,
    subtitle: str,
    unit: str,
    axes: tuple[str, str] = ("query", "key"),
    zmin: float | None = None,
    zmax: float | None = None,
    panel_height: int = 230,
) -> go.Figure:
    """A grid of matrices (rows of panels) on one colour scale, from zmin to zmax (by default the smallest and the
    largest finite value shown), with one colour bar, so that the panels read alike; `axes` names the rows and the
    columns of each matrix (query and key of a map; layer and head of a head grid)."""
    finite = np.concatenate([p.values[np.isfinite(p.values)] for row in rows for p in row])
    low = float(finite.min()) if zmin is None else zmin
    high = max(float(finite.max()) if zmax is None else zmax, low + 1e-6)
    columns = max(len(row) for row in rows)
    fig = make_subplots(
        rows=len(rows),
        cols=columns,
        subplot_titles=[p.title for row in rows for p in row],
        horizontal_spacing=0.03 if columns > 3 else 0.06,
        vertical_spacing=0.3 / len(rows),
    )
    across, down = axes
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            where = f"{down} %{{y}}, {across} %{{x}}"
            if panel.tokens is not None:
                labels = [visible(t) for t in panel.tokens]
                where = "%{customdata}"
            fig.add_trace(
                go.Heatmap(
                    z=panel.values,
                    zmin=low,
                    zmax=high,
                    colorscale=SEQUENTIAL,
                    showscale=r == 0 and c == 0,
                    hoverongaps=False,
                    customdata=None
                    if panel.tokens is None
                    else [
                        [f"{q}:{labels[q]} → {k}:{labels[k]}" for k in range(len(labels))] for q in range(len(labels))
                    ],
                    colorbar={"title": {"text": unit, "side": "right"}, "len": 0.8},
                    hovertemplate=f"{panel.title}<br>{where}<br>{unit} %{{z:.3f}}<extra></extra>",
                ),
                row=r + 1,
                col=c + 1,
            )
            ticks = {} if panel.tokens is None else token_axis(list(panel.tokens), max_labels=16)
            fig.update_xaxes(row=r + 1, col=c + 1, **{**ticks, "tickangle": -60} if ticks else {})
            fig.update_yaxes(autorange="reversed", row=r + 1, col=c + 1, **ticks)
    themed(fig, title, subtitle)
    fig.update_layout(height=panel_height * len(rows) + 170, margin={"t": 150, "b": 30})
    return fig


def esds_overlaid(rows: Sequence[tuple[str, MatrixSpectrum]]) -> go.Figure:
    """Each model's ESD of one matrix on log-log axes, eigenvalues divided by their mean so that matrices of other
    sizes and scales overlay (a power-law tail keeps its slope): one colour per model, the fitted alpha named."""
    traces = []
    for i, (model, spectrum) in enumerate(rows):
        evals = spectrum.eigenvalues.astype(np.float64)
        centers, density = esd_density(evals[evals > 0] / evals.mean())
        shown = density > 0
        name = f"{model}: {spectrum.name} (alpha {spectrum.alpha:.2f})"
        traces.append(
            go.Scatter(
                x=centers[shown],
                y=density[shown],
                mode="lines+markers",
                name=name,
                line={"color": COLOURS[i % len(COLOURS)], "shape": "hvh"},
                hovertemplate=f"{name}<br>eigenvalue / mean %{{x:.3g}}: density %{{y:.3g}}<extra></extra>",
            )
        )
    fig = go.Figure(traces)
    themed(
        fig,
        "Spectral densities, model against model",
        "The ESD of WᵀW of the same kind of matrix at the same relative depth in each model, log-log; eigenvalues "
        "divided by their mean.<br>A heavy tail is a straight line falling slowly at the right (slope -alpha).",
    )
    legend_below(fig, height=540)
    fig.update_xaxes(title_text="eigenvalue / mean eigenvalue", type="log")
    fig.update_yaxes(title_text="density", type="log")
    return fig
