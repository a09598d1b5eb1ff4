"""Figures of weight spectra: the empirical spectral density with its Marchenko-Pastur bulk and power-law tail,
alpha across layers with WeightWatcher's reading guide, a layer x kind grid of any statistic, and the energy
the top singular values capture."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.spectra import MatrixSpectrum, ModelSpectra
from viz.theme import SEQUENTIAL, legend_below, themed

ESD_COLOUR = "#76a5d8"
MP_COLOUR = "#555555"
TAIL_COLOUR = "#c0392b"
KIND_COLOURS = {
    "q": "#1f77b4",
    "k": "#ff7f0e",
    "v": "#2ca02c",
    "o": "#d62728",
    "gate": "#9467bd",
    "up": "#8c564b",
    "down": "#e377c2",
    "embed": "#7f7f7f",
    "other": "#bcbd22",
}
# WeightWatcher's reading guide for alpha.
ALPHA_BANDS = (
    (0.0, 2.0, "#f4cccc", "below 2: over-fit?"),
    (2.0, 6.0, "#d9ead3", "2 to 6: well trained"),
    (6.0, 1e9, "#fff2cc", "above 6: under-trained?"),
)
ESD_BINS = 80
STATISTICS = {
    "alpha": "alpha (power-law exponent of the ESD tail)",
    "ks_distance": "KS distance D of the power-law fit",
    "stable_rank": "stable rank (sum of eigenvalues / largest)",
    "effective_rank": "effective rank (exp of the entropy of the normalised singular values)",
    "spectral_norm": "spectral norm (largest singular value)",
    "kurtosis": "excess kurtosis of the entries (0 for a Gaussian)",
    "std": "standard deviation of the entries",
}


def _log_bins(values: np.ndarray, bins: int) -> np.ndarray:
    positive = values[values > 0]
    return np.logspace(np.log10(positive.min()), np.log10(positive.max()), bins + 1)


def esd_density(evals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical density of positive eigenvalues on log-spaced bins: the bins' geometric centres and the
    density in each."""
    edges = _log_bins(evals, ESD_BINS)
    counts, _ = np.histogram(evals, bins=edges)
    return np.sqrt(edges[:-1] * edges[1:]), counts / (len(evals) * np.diff(edges))


def esd_figure(spectrum: MatrixSpectrum, mp_x: np.ndarray, mp_density: np.ndarray) -> go.Figure:
    """The empirical spectral density of W^T W on log-log axes, the Marchenko-Pastur bulk of a random matrix of the
    same shape and scale, and the fitted power-law tail from xmin; beside it, the singular values by rank."""
    evals = spectrum.eigenvalues.astype(np.float64)
    evals = evals[evals > 0]
    centers, density = esd_density(evals)
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.62, 0.38],
        horizontal_spacing=0.1,
        subplot_titles=("Empirical spectral density of WᵀW", "Singular values by rank"),
    )
    shown = density > 0
    fig.add_trace(
        go.Scatter(
            x=centers[shown],
            y=density[shown],
            mode="markers+lines",
            line={"color": ESD_COLOUR, "shape": "hvh"},
            name="ESD of the trained matrix",
            hovertemplate="eigenvalue %{x:.3g}: density %{y:.3g}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    inside = mp_density > 0
    fig.add_trace(
        go.Scatter(
            x=mp_x[inside],
            y=mp_density[inside],
            mode="lines",
            line={"color": MP_COLOUR, "dash": "dash", "width": 2},
            name="Marchenko-Pastur: random, same shape and scale",
            hovertemplate="eigenvalue %{x:.3g}: MP density %{y:.3g}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    tail = evals[evals >= spectrum.xmin]
    if len(tail) > 1 and np.isfinite(spectrum.alpha):
        x = np.logspace(np.log10(spectrum.xmin), np.log10(evals.max()), 50)
        share = len(tail) / len(evals)  # the tail's density, normalised like the histogram's
        fit = share * (spectrum.alpha - 1) / spectrum.xmin * (x / spectrum.xmin) ** (-spectrum.alpha)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=fit,
                mode="lines",
                line={"color": TAIL_COLOUR, "width": 3},
                name=f"power law from xmin: alpha = {spectrum.alpha:.2f}",
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
        # plotly's row and col are unannotated, so their default "all" makes them look like str
        fig.add_vline(x=spectrum.xmin, line={"color": TAIL_COLOUR, "dash": "dot"}, row=1, col=1)  # pyright: ignore[reportArgumentType]
    s = spectrum.singular_values
    fig.add_trace(
        go.Scatter(
            x=np.arange(1, len(s) + 1),
            y=s,
            mode="lines",
            line={"color": ESD_COLOUR, "width": 2},
            name="singular values",
            showlegend=False,
            hovertemplate="rank %{x}: σ = %{y:.4g}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(type="log", title_text="eigenvalue λ = σ²", exponentformat="power", row=1, col=1)
    fig.update_yaxes(type="log", title_text="density", exponentformat="power", row=1, col=1)
    fig.update_xaxes(type="log", title_text="rank", row=1, col=2)
    fig.update_yaxes(type="log", title_text="singular value σ", row=1, col=2)
    legend_below(fig, 560)
    out, inn = spectrum.shape
    return themed(
        fig,
        f"Spectrum of {spectrum.name}",
        f"{out} x {inn} · alpha {spectrum.alpha:.2f} (xmin {spectrum.xmin:.3g}, {spectrum.n_tail} eigenvalues in the tail, "
        f"D = {spectrum.ks_distance:.3f}) · stable rank {spectrum.stable_rank:.1f} · effective rank "
        f"{spectrum.effective_rank:.0f} of {min(spectrum.shape)} · spectral norm {spectrum.spectral_norm:.3g}",
    )


def _by_kind(matrices: Sequence[MatrixSpectrum]) -> dict[str, list[MatrixSpectrum]]:
    """Block matrices (layer >= 0) grouped by kind, in the order the kinds first appear."""
    groups: dict[str, list[MatrixSpectrum]] = {}
    for m in matrices:
        if m.layer >= 0:
            groups.setdefault(m.kind, []).append(m)
    return groups


def alpha_by_layer(spectra: ModelSpectra) -> go.Figure:
    """alpha of every block matrix across layers, one line per kind, over WeightWatcher's reading bands."""
    fig = go.Figure()
    alphas = [m.alpha for m in spectra.matrices if m.layer >= 0 and np.isfinite(m.alpha)]
    top = max(8.0, max(alphas, default=8.0) + 0.5)
    for low, high, colour, label in ALPHA_BANDS:
        fig.add_hrect(y0=low, y1=min(high, top), fillcolor=colour, opacity=0.5, line_width=0, layer="below")
        fig.add_annotation(
            x=1.0,
            xref="paper",
            xanchor="right",
            y=(low + min(high, top)) / 2,
            text=label,
            showarrow=False,
            font={"size": 12},
        )
    for kind, matrices in _by_kind(spectra.matrices).items():
        fig.add_trace(
            go.Scatter(
                x=[m.layer for m in matrices],
                y=[m.alpha for m in matrices],
                customdata=[m.name for m in matrices],
                mode="lines+markers",
                name=kind,
                line={"color": KIND_COLOURS.get(kind, KIND_COLOURS["other"])},
                hovertemplate="%{customdata}: alpha %{y:.2f}<extra></extra>",
            )
        )
    fig.update_layout(xaxis_title="layer", yaxis={"title": "alpha", "range": [0, top]})
    legend_below(fig, 540)
    return themed(
        fig,
        "alpha across layers",
        f"{spectra.model}: power-law exponent of each matrix's ESD tail; bands = WeightWatcher's reading guide",
    )


def statistic_grid(matrices: Sequence[MatrixSpectrum], statistic: str, label: str, model: str) -> go.Figure:
    """A layer x kind heatmap of one statistic (an attribute of each matrix) of every block matrix."""
    groups = _by_kind(matrices)
    kinds = list(groups)
    n_layers = 1 + max(m.layer for ms in groups.values() for m in ms)
    values = np.full((n_layers, len(kinds)), np.nan)
    names = np.full((n_layers, len(kinds)), "", dtype=object)
    for j, kind in enumerate(kinds):
        for m in groups[kind]:
            values[m.layer, j] = getattr(m, statistic)
            names[m.layer, j] = m.name
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=kinds,
            colorscale=SEQUENTIAL,
            customdata=names,
            colorbar={"title": {"text": statistic}},
            hovertemplate="%{customdata}<br>" + label + ": %{z:.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis={"title": "matrix", "type": "category"},
        yaxis={"title": "layer", "autorange": "reversed"},
        height=max(380, 16 * n_layers + 160),
    )
    return themed(fig, label[:1].upper() + label[1:], f"{model}: every weight matrix of every block")


def energy_captured(singular_values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Share of the squared Frobenius norm (sum of σ²) in the top-r singular values, for each r."""
    energy = np.cumsum(np.asarray(singular_values, dtype=np.float64) ** 2)
    return energy[np.minimum(ranks, len(energy)) - 1] / energy[-1]


def energy_figure(spectra: ModelSpectra, kinds: Sequence[str] | None = None) -> go.Figure:
    """Energy captured by the top r singular values against r as a share of the full rank, averaged over the
    layers, one line per matrix kind (the band spans the layers' minimum to maximum)."""
    fig = go.Figure()
    fractions = np.linspace(0.0, 1.0, 101)[1:]
    for kind, matrices in _by_kind(spectra.matrices).items():
        if kinds is not None and kind not in kinds:
            continue
        curves = np.stack(
            [
                energy_captured(
                    m.singular_values, np.maximum(1, np.ceil(fractions * len(m.singular_values)).astype(int))
                )
                for m in matrices
            ]
        )
        colour = KIND_COLOURS.get(kind, KIND_COLOURS["other"])
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([fractions, fractions[::-1]]),
                y=np.concatenate([curves.max(axis=0), curves.min(axis=0)[::-1]]),
                fill="toself",
                fillcolor=colour,
                opacity=0.15,
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=fractions,
                y=curves.mean(axis=0),
                mode="lines",
                name=kind,
                line={"color": colour, "width": 2},
                hovertemplate=f"{kind}: top %{{x:.0%}} of the rank keeps %{{y:.1%}} of the energy<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=fractions,
            y=fractions,
            mode="lines",
            name="flat spectrum",
            line={"color": MP_COLOUR, "dash": "dot"},
            hoverinfo="skip",
        )
    )
    fig.update_xaxes(title_text="rank r, as a share of the full rank", tickformat=".0%")
    fig.update_yaxes(title_text="share of Σσ² in the top r", tickformat=".0%", range=[0, 1.02])
    legend_below(fig, 520)
    return themed(fig, "How much the top singular values hold", f"{spectra.model}: mean over layers, band = min to max")
