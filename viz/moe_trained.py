"""Figures of the trained MoE: its training, loss against active parameters, costs, and the equation for one token."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.moe_trained import Equation, TrainingLog
from viz.routing import expert_colour
from viz.theme import legend_below, themed, visible

DENSE_COLOUR, TRAINED_COLOUR, UNTRAINED_COLOUR = "#555555", "#2e6fb7", "#c0392b"


def training_figure(log: TrainingLog, model: str) -> go.Figure:
    """The layer-wise fit (each MLP's relative error against the dense one), the distillation curve, and the held-out
    loss against build time."""
    fig = make_subplots(
        rows=1,
        cols=3,
        column_widths=[0.3, 0.35, 0.35],
        subplot_titles=("1. each layer fitted alone", "2. distillation, whole model", "3. held-out loss by time"),
    )
    fig.add_trace(
        go.Bar(
            x=np.arange(len(log.layer_error)),
            y=log.layer_error,
            marker_color=TRAINED_COLOUR,
            name="relative squared error of the layer's MoE MLP",
            hovertemplate="layer %{x}: ‖MoE(x) − MLP(x)‖² / ‖MLP(x)‖² = %{y:.3f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    steps = np.arange(1, len(log.kl) + 1)
    fig.add_trace(
        go.Scatter(
            x=steps, y=log.kl, mode="lines", name="KL(dense ‖ MoE), nats per token", line={"color": TRAINED_COLOUR}
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=log.balance,
            mode="lines",
            name="load-balancing loss (1 = even)",
            line={"color": UNTRAINED_COLOUR, "dash": "dot"},
        ),
        row=1,
        col=2,
    )
    minutes = log.curve_seconds / 60
    fig.add_trace(
        go.Scatter(
            x=minutes,
            y=log.curve_nll,
            mode="lines+markers",
            name=f"held-out NLL of the MoE at k = {log.recipe.top_k}",
            line={"color": TRAINED_COLOUR, "width": 3},
            customdata=log.curve_stages(),
            hovertemplate="%{x:.1f} min, %{customdata}: NLL %{y:.2f}<extra></extra>",
        ),
        row=1,
        col=3,
    )
    fig.add_trace(
        go.Scatter(
            x=[0, minutes[-1]],
            y=[log.dense_nll] * 2,
            mode="lines",
            name="dense model",
            line={"color": DENSE_COLOUR, "dash": "dash"},
        ),
        row=1,
        col=3,
    )
    if log.recipe.rank:
        at = list(log.costs.ks).index(log.recipe.top_k)
        fig.add_trace(
            go.Scatter(
                x=[minutes[-1]],
                y=[log.trained_nll[at]],
                mode="markers",
                name=f"the model kept: the experts' update at rank {log.recipe.rank}",
                marker={"color": TRAINED_COLOUR, "symbol": "diamond-open", "size": 12, "line": {"width": 2}},
                hovertemplate=f"the update cut to rank {log.recipe.rank}: NLL %{{y:.2f}}<extra></extra>",
            ),
            row=1,
            col=3,
        )
    fig.update_xaxes(title_text="layer", row=1, col=1)
    fig.update_xaxes(title_text="step", row=1, col=2)
    fig.update_xaxes(title_text="minutes of the build", row=1, col=3)
    fig.update_yaxes(title_text="relative error", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="loss", rangemode="tozero", row=1, col=2)
    fig.update_yaxes(title_text="NLL (nats per token)", type="log", row=1, col=3)
    legend_below(fig, 460)
    recipe = log.recipe
    return themed(
        fig,
        "How the MoE was trained",
        f"{model}: E = {recipe.experts}, k = {recipe.top_k}; {log.train_tokens:,} training tokens, "
        f"{log.seconds / 60:.1f} min on the machine that built it",
    )


def capacity_figure(log: TrainingLog, model: str) -> go.Figure:
    """Held-out loss against the parameters a token passes through: dense, and the MoE at each k, trained and with
    its router untrained."""
    costs = log.costs
    fig = go.Figure()
    millions = costs.moe_active / 1e6
    for name, values, colour in (
        ("trained router and experts", log.trained_nll, TRAINED_COLOUR),
        ("untrained (converted, router initialised)", log.untrained_nll, UNTRAINED_COLOUR),
    ):
        fig.add_trace(
            go.Scatter(
                x=millions,
                y=values,
                mode="lines+markers+text",
                name=name,
                text=[f"k={k}" for k in costs.ks],
                textposition="top center",
                line={"color": colour},
                hovertemplate="k = %{text}: %{x:.1f} M active parameters, NLL %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[costs.dense_active / 1e6],
            y=[log.dense_nll],
            mode="markers+text",
            name="dense SmolLM2",
            text=["dense"],
            textposition="bottom center",
            marker={"color": DENSE_COLOUR, "size": 12, "symbol": "diamond"},
        )
    )
    fig.update_xaxes(
        title_text=f"active parameters per token (millions; total in the MoE: {costs.moe_parameters / 1e6:.1f} M)"
    )
    fig.update_yaxes(title_text="held-out mean NLL per token (nats)")
    legend_below(fig, 500)
    return themed(
        fig,
        "Loss against active parameters",
        f"{model}, trained at k = {log.recipe.top_k} of {log.recipe.experts}; {log.eval_tokens} held-out corpus tokens",
    )


def cost_rows(log: TrainingLog) -> list[dict]:
    """Table rows: parameters, active parameters, FLOPs per token and the measured MLP time, dense and at each k."""
    costs = log.costs
    rows = [
        {
            "model": "dense",
            "parameters (M)": round(costs.dense_parameters / 1e6, 1),
            "active per token (M)": round(costs.dense_active / 1e6, 1),
            "FLOPs per token (M)": round(costs.dense_flops / 1e6, 1),
            "MLP µs per token": round(costs.dense_mlp_seconds * 1e6, 2),
            "MLP time vs dense": 1.0,
            "held-out NLL": round(log.dense_nll, 3),
        }
    ]
    for i, k in enumerate(costs.ks):
        rows.append(
            {
                "model": f"MoE, k = {k} of {log.recipe.experts}",
                "parameters (M)": round(costs.moe_parameters / 1e6, 1),
                "active per token (M)": round(costs.moe_active[i] / 1e6, 1),
                "FLOPs per token (M)": round(costs.moe_flops[i] / 1e6, 1),
                "MLP µs per token": round(costs.moe_mlp_seconds[i] * 1e6, 2),
                "MLP time vs dense": round(costs.moe_mlp_seconds[i] / costs.dense_mlp_seconds, 2),
                "held-out NLL": round(float(log.trained_nll[i]), 3),
            }
        )
    return rows


def equation_html(equation: Equation) -> str:
    """y = Σᵢ G(x)ᵢ Eᵢ(x) written out for the token: each chosen expert with its gate and its output's norm, and the
    shared expert's term if the block has one."""
    terms = " + ".join(
        f'<span style="color:{expert_colour(int(e))}"><b>{g:.3f}</b>·E<sub>{e}</sub>(x)</span>'
        for e, g in zip(equation.experts, equation.gates, strict=True)
    )
    rows = "".join(
        f"<tr><td style='color:{expert_colour(int(e))}'>E<sub>{e}</sub></td><td>{p:.3f}</td><td>{g:.3f}</td>"
        f"<td>{n:.2f}</td><td>{g * n:.2f}</td></tr>"
        for e, g, n, p in zip(
            equation.experts, equation.gates, equation.expert_norms, equation.probs[equation.experts], strict=True
        )
    )
    if not np.isnan(equation.shared_gate):
        terms += f" + <b>{equation.shared_gate:.3f}</b>·E<sub>shared</sub>(x)"
        rows += (
            f"<tr><td>E<sub>shared</sub> (always on)</td><td>–</td><td>σ(x·w<sub>s</sub>) = {equation.shared_gate:.3f}"
            f"</td><td>{equation.shared_norm:.2f}</td><td>{equation.shared_gate * equation.shared_norm:.2f}</td></tr>"
        )
    token = html.escape(visible(equation.token))
    return (
        f"<div style='font-family:DejaVu Sans, Arial, sans-serif'>"
        f"<p>Token <code>{token}</code> (position {equation.position}), block {equation.layer}: "
        f"y = {terms}</p>"
        "<table><tr><th>expert</th><th>G(x) over all experts</th><th>gate (renormalised over the chosen)</th>"
        f"<th>‖E(x)‖</th><th>gate·‖E(x)‖</th></tr>{rows}</table>"
        f"<p>‖y‖ = {equation.output_norm:.2f}; the sum recomputed from the experts' weights differs from what the "
        f"block returned by {equation.mismatch:.1e} of ‖y‖. The other {len(equation.probs) - len(equation.experts)} "
        f"experts hold {1 - float(equation.probs[equation.experts].sum()):.0%} of G(x) and are not computed.</p></div>"
    )
