"""Figures of LoRA against full fine-tuning: both loss curves, one matrix's update spectrum, and layer by layer how
much of the full update its top r directions hold and how far they agree with LoRA's."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.finetune import FineTuneComparison, FineTuneRun, MatrixUpdate
from viz.spectra import KIND_COLOURS
from viz.theme import legend_below, themed

COLOURS = {"lora": "#2e6fb7", "full": "#e67e22"}
REFERENCE_COLOUR = "#7f8c8d"
SUBPLOT_TOP = 130  # px above the plots: the title, a subtitle line, then the subplots' own titles


def method_label(run: FineTuneRun) -> str:
    return f"LoRA (r = {run.rank})" if run.method == "lora" else "full fine-tuning"


def loss_figure(result: FineTuneComparison) -> go.Figure:
    """Mean NLL per token against the step: each run's training batches (thin) and the held-out sentences (thick,
    measured before training and at each evaluation)."""
    fig = go.Figure()
    for run in result.runs().values():
        label, colour = method_label(run), COLOURS[run.method]
        fig.add_trace(
            go.Scatter(
                x=np.arange(1, run.steps + 1),
                y=run.loss_train,
                mode="lines",
                line={"color": colour, "width": 1.5, "dash": "dot"},
                name=f"{label}: training batch",
                hovertemplate=f"{label}, step %{{x}}: batch NLL %{{y:.3f}}<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=run.eval_steps,
                y=run.loss_heldout,
                mode="lines+markers",
                line={"color": colour, "width": 3},
                marker={"size": 8},
                name=f"{label}: held-out",
                hovertemplate=f"{label}, after %{{x}} steps: held-out NLL %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="mean NLL per token (nats)")
    legend_below(fig, 520)
    lora, full = result.lora, result.full
    return themed(
        fig,
        "Fine-tuning on made-up facts: LoRA against full fine-tuning",
        f"{result.model}: LoRA trains {lora.trained_params:,} parameters ({lora.trained_share:.2%}), full "
        f"fine-tuning all {full.trained_params:,}; same {result.steps} steps of {result.batch_size} sentences",
    )


def _spectrum_traces(fig: go.Figure, run: FineTuneRun, update: MatrixUpdate) -> None:
    label, colour = method_label(run), COLOURS[run.method]
    s = update.singular_values
    index = np.arange(1, len(s) + 1)
    shown = s > 0  # a log axis cannot draw an exact zero
    energy = np.cumsum(s.astype(np.float64) ** 2)
    fig.add_trace(
        go.Scatter(
            x=index[shown],
            y=s[shown],
            mode="lines+markers",
            marker={"size": 4},
            line={"color": colour, "width": 2},
            name=label,
            legendgroup=run.method,
            hovertemplate=f"{label}: σ%{{x}} = %{{y:.3g}}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=index,
            y=100 * energy / energy[-1] if energy[-1] > 0 else energy,
            mode="lines",
            line={"color": colour, "width": 3},
            name=label,
            legendgroup=run.method,
            showlegend=False,
            hovertemplate=f"{label}: top %{{x}} hold %{{y:.1f}}% of Σσ²<extra></extra>",
        ),
        row=1,
        col=2,
    )


def spectrum_figure(result: FineTuneComparison, matrix: str) -> go.Figure:
    """One matrix's ΔW for both runs: all its singular values (log scale), and the share of Σσ² in the top i; the
    rank r marked. LoRA's values past r are float32 rounding, orders of magnitude down."""
    index = result.matrix_index(matrix)
    lora, full = result.lora.matrices[index], result.full.matrices[index]
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=("Singular values σᵢ of ΔW (log scale)", "Share of Σσ² in the top i (%)"),
    )
    for run, update in ((result.lora, lora), (result.full, full)):
        _spectrum_traces(fig, run, update)
    values = np.concatenate([lora.singular_values, full.singular_values])
    values = values[values > 0]
    for col, span in ((1, [values.min(), values.max()] if len(values) else [1, 1]), (2, [0, 100])):
        fig.add_trace(  # a trace, not a vline: shapes and their labels misplace on log axes
            go.Scatter(
                x=[result.rank, result.rank],
                y=span,
                mode="lines",
                line={"color": REFERENCE_COLOUR, "dash": "dash", "width": 2},
                name=f"r = {result.rank}",
                legendgroup="rank",
                showlegend=col == 1,
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(type="log", title_text="i (log scale)")
    fig.update_yaxes(type="log", exponentformat="power", row=1, col=1)
    fig.update_yaxes(range=[0, 101], row=1, col=2)
    legend_below(fig, 540).update_layout(margin={"t": SUBPLOT_TOP})
    return themed(
        fig,
        f"The update ΔW = W − W₀ of {matrix}",
        f"LoRA: numerical rank {lora.numerical_rank}; full fine-tuning: numerical rank {full.numerical_rank} of "
        f"{min(full.shape)}, yet {full.energy_top_r:.0%} of Σσ² in its top {result.rank}; subspace similarity "
        f"φ({result.rank}, {result.rank}) = {result.similarity[index, -1]:.2f} (random: {result.chance[index]:.3f})",
    )


def _kind_lines(
    fig: go.Figure, result: FineTuneComparison, values: np.ndarray, reference: np.ndarray, row: int
) -> None:
    """One line per kind of matrix against the layer, with its reference level dotted."""
    matrices = result.full.matrices
    for kind in dict.fromkeys(m.kind for m in matrices):
        chosen = [i for i, m in enumerate(matrices) if m.kind == kind]
        layers = [matrices[i].layer for i in chosen]
        colour = KIND_COLOURS.get(kind, REFERENCE_COLOUR)
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=values[chosen],
                mode="lines+markers",
                line={"color": colour, "width": 3},
                name=f"{kind}_proj",
                legendgroup=kind,
                showlegend=row == 1,
                hovertemplate=f"layer %{{x}} {kind}: %{{y:.1%}}<extra></extra>",
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=reference[chosen],
                mode="lines",
                line={"color": colour, "width": 1.5, "dash": "dot"},
                name=f"{kind}_proj: chance level",
                legendgroup=kind,
                showlegend=row == 1,
                hovertemplate=f"layer %{{x}} {kind}, chance level: %{{y:.1%}}<extra></extra>",
            ),
            row=row,
            col=1,
        )


def energy_figure(result: FineTuneComparison) -> go.Figure:
    """Layer by layer: the share of the full update's Σσ² in its top r directions (against a flat spectrum's r /
    min(out, in)), and the subspace similarity φ(r, r) of its top r left singular vectors with LoRA's (against two
    random subspaces' r / out)."""
    full, r = result.full.matrices, result.rank
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=(
            f"Full fine-tuning: share of ΔW's Σσ² in its top {r} directions",
            f"Overlap with LoRA's update: subspace similarity φ({r}, {r})",
        ),
    )
    energy = np.array([m.energy_top_r for m in full])
    flat = np.array([min(1.0, r / min(m.shape)) for m in full])
    _kind_lines(fig, result, energy, flat, 1)
    _kind_lines(fig, result, result.similarity[:, -1], result.chance, 2)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    fig.update_xaxes(title_text="layer", row=2, col=1)
    legend_below(fig, 740).update_layout(margin={"t": SUBPLOT_TOP})
    return themed(
        fig,
        f"How low-rank is the full update, and where does LoRA's rank-{r} update point?",
        f"{result.model}, every adapted matrix; dotted: what a flat spectrum and random subspaces would give",
    )


def update_rows(result: FineTuneComparison) -> list[dict]:
    """One row per adapted matrix: both updates' ranks and sizes, the full update's energy in its top r, and φ."""
    rows = []
    for i, (lora, full) in enumerate(zip(result.lora.matrices, result.full.matrices)):
        rows.append(
            {
                "matrix": lora.name,
                "LoRA rank": lora.numerical_rank,
                "LoRA effective rank": round(lora.effective_rank, 1),
                "full rank": full.numerical_rank,
                "full effective rank": round(full.effective_rank, 1),
                f"full: Σσ² in top {result.rank} (%)": round(100 * full.energy_top_r, 1),
                "φ(r, r)": round(float(result.similarity[i, -1]), 3),
                "φ random": round(float(result.chance[i]), 3),
                "‖ΔW‖ / ‖W₀‖ LoRA": f"{lora.relative_norm:.2e}",
                "‖ΔW‖ / ‖W₀‖ full": f"{full.relative_norm:.2e}",
            }
        )
    return rows
