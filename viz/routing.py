"""Figures of Mixture-of-Experts routing: token x expert probabilities with the chosen experts marked, router
confidence, expert load against the uniform ideal, routing flow between layers, and loss against k."""

from __future__ import annotations

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.moefication import LossByK
from results.routing import DROPPED, Balance, LayerRouting
from viz.theme import SEQUENTIAL, legend_below, themed, token_axis, visible

# One colour per expert, distinct for up to 48 experts, then repeating.
EXPERT_COLOURS = plotly.colors.qualitative.Dark24 + plotly.colors.qualitative.Light24
UNIFORM_COLOUR = "#555555"
RULE_MEANING = {
    "softmax": "probability = softmax of the router logits",
    "sigmoid": "sigmoid affinity per expert (does not sum to 1)",
    "norm share": "predicted share of the MLP output norm",
}
ROUTER_COLOURS = {"fitted": "#2e6fb7", "oracle": "#c0392b"}


def expert_colour(expert: int) -> str:
    """The colour of an expert, the same in every chart; grey for a dropped slot."""
    return "#d0d0d0" if expert == DROPPED else EXPERT_COLOURS[expert % len(EXPERT_COLOURS)]


def _translucent(colour: str, alpha: float = 0.4) -> str:
    red, green, blue = plotly.colors.hex_to_rgb(colour)
    return f"rgba({red},{green},{blue},{alpha})"


def routing_heatmap(layer: LayerRouting, tokens: list[str], model: str) -> go.Figure:
    """Tokens (rows) x experts (columns) of routing probabilities, the chosen experts ringed, rank 1 filled."""
    n = len(tokens)
    labels = [f"{i}: {visible(t)}" for i, t in enumerate(tokens)]
    fig = go.Figure(
        go.Heatmap(
            z=layer.probs,
            x=list(range(layer.n_experts)),
            y=list(range(n)),
            colorscale=SEQUENTIAL,
            zmin=0,
            zmax=float(max(layer.probs.max(), 1e-9)) if layer.rule == "norm share" else 1,
            colorbar={"title": {"text": "routing<br>probability" if layer.rule == "softmax" else "score"}},
            customdata=np.array(labels)[:, None].repeat(layer.n_experts, 1),
            hovertemplate="%{customdata}<br>expert %{x}: %{z:.3f}<extra></extra>",
        )
    )
    for rank in range(layer.top_k):
        chosen = layer.experts[:, rank]
        used = chosen != DROPPED
        fig.add_trace(
            go.Scatter(
                x=chosen[used],
                y=np.flatnonzero(used),
                mode="markers",
                name="top-1 expert" if rank == 0 else ("other chosen experts" if rank == 1 else None),
                showlegend=rank < 2,
                legendgroup="top1" if rank == 0 else "chosen",
                marker={  # top-1 a filled dot, the others rings: told apart on the map and in the legend
                    "symbol": "circle" if rank == 0 else "circle-open",
                    "size": 9 if rank == 0 else 11,
                    "color": "#ff4136",
                    "line": {"width": 1.5 if rank == 0 else 2, "color": "white" if rank == 0 else "#ff4136"},
                },
                customdata=layer.weights[used, rank],
                hovertemplate=f"rank {rank + 1}: expert %{{x}}, weight %{{customdata:.3f}}<extra></extra>",
            )
        )
    fig.update_xaxes(
        title_text="expert", dtick=1 if layer.n_experts <= 32 else None, range=[-0.5, layer.n_experts - 0.5]
    )
    fig.update_yaxes(autorange="reversed", title_text="token", **token_axis(tokens, max_labels=60))
    fig.update_layout(
        height=max(460, min(1500, 22 * n + 200)),
        legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
        margin={"t": 110},
    )
    shared = f", plus {layer.n_shared} shared expert(s) every token uses" if layer.n_shared else ""
    return themed(
        fig,
        f"Routing of {layer.label}: top-{layer.top_k} of {layer.n_experts} experts per token",
        f"{model}; {RULE_MEANING[layer.rule]}{shared}",
    )


def top1_backgrounds(layer: LayerRouting) -> tuple[list[str], list[str]]:
    """Per token: the colour of its top-1 expert, and a hover note naming its experts with their weights."""
    colours = [_translucent(expert_colour(int(e)), 0.45) for e in layer.experts[:, 0]]
    notes = [
        ", ".join("dropped" if e == DROPPED else f"expert {e} ({w:.2f})" for e, w in zip(row, weights, strict=True))
        for row, weights in zip(layer.experts.tolist(), layer.weights.tolist(), strict=True)
    ]
    return colours, notes


def confidence_figure(top: np.ndarray, margin: np.ndarray, tokens: list[str], layer: LayerRouting) -> go.Figure:
    """Per token: the router's top probability and its margin over the runner-up."""
    x = list(range(len(tokens)))
    fig = go.Figure()
    for values, name, colour in ((top, "top-1 probability", "#2e6fb7"), (margin, "margin over the 2nd", "#e67e22")):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=values,
                mode="lines+markers",
                name=name,
                line={"color": colour},
                customdata=[visible(t) for t in tokens],
                hovertemplate=f"%{{x}}: %{{customdata}}<br>{name} %{{y:.3f}}<extra></extra>",
            )
        )
    if layer.rule == "softmax":
        fig.add_hline(
            y=1 / layer.n_experts, line={"dash": "dot", "color": UNIFORM_COLOUR}, annotation_text="uniform 1/E"
        )
    fig.update_xaxes(title_text="token", **token_axis(tokens, angle=-45))
    fig.update_yaxes(title_text=RULE_MEANING[layer.rule].split(" = ")[0], rangemode="tozero")
    legend_below(fig, 460)
    return themed(fig, f"Router confidence, {layer.label}", "High and far from the runner-up: a decisive router")


def load_figure(layer: LayerRouting, balance: Balance, model: str) -> go.Figure:
    """Share of routed slots per expert against the uniform 1/E, with the balance statistics."""
    n = layer.n_experts
    fig = go.Figure(
        go.Bar(
            x=list(range(n)),
            y=balance.load,
            marker={"color": [expert_colour(e) for e in range(n)]},
            hovertemplate="expert %{x}: %{y:.1%} of slots<extra></extra>",
            name="load",
        )
    )
    fig.add_hline(y=1 / n, line={"dash": "dash", "color": UNIFORM_COLOUR}, annotation_text=f"uniform 1/{n}")
    fig.update_xaxes(title_text="expert", dtick=1 if n <= 32 else None)
    fig.update_yaxes(title_text="share of routed token slots", tickformat=".0%", rangemode="tozero")
    fig.update_layout(height=420, showlegend=False)
    return themed(fig, f"Expert load, {layer.label}", f"{model}; {balance_text(balance)}")


def balance_text(balance: Balance) -> str:
    """The balance statistics in one line (uniform: CV 0, entropy 1, aux loss 1)."""
    parts = [f"CV {balance.cv:.2f}", f"load entropy {balance.entropy:.2f} of 1"]
    if balance.aux_loss is not None:
        parts.append(f"aux loss E·Σf·P {balance.aux_loss:.2f} (1 = balanced)")
    if balance.dropped:
        parts.append(f"{balance.dropped:.0%} of slots dropped (expert capacity)")
    return ", ".join(parts)


def load_grid(
    loads: list[np.ndarray], labels: list[str], balances: list[Balance], model: str, source: str
) -> go.Figure:
    """Load of every expert in every router on `source` (your text, the corpus), as a multiple of the uniform
    share, with CV and entropy per router."""
    width = max(len(load) for load in loads)
    ratio = np.full((len(loads), width), np.nan)
    for row, load in enumerate(loads):
        ratio[row, : len(load)] = load * len(load)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.72, 0.28], shared_yaxes=True, horizontal_spacing=0.04)
    fig.add_trace(
        go.Heatmap(
            z=np.log2(np.maximum(ratio, 1 / 64)),
            x=list(range(width)),
            y=labels,
            zmid=0,
            zmin=-3,
            zmax=3,
            colorscale="RdBu_r",
            customdata=ratio,
            colorbar={
                "title": {"text": "load / uniform", "side": "top"},
                "tickvals": [-3, -2, -1, 0, 1, 2, 3],
                "ticktext": ["≤⅛", "¼", "½", "1", "2", "4", "≥8"],
                "orientation": "h",
                "x": 0.36,
                "xanchor": "center",
                "y": -0.12,
                "yanchor": "top",
                "len": 0.6,
                "thickness": 14,
            },
            hovertemplate="%{y}, expert %{x}: %{customdata:.2f} × uniform<extra></extra>",
        ),
        row=1,
        col=1,
    )
    for values, name, colour in (
        ([b.cv for b in balances], "CV of load", "#c0392b"),
        ([b.entropy for b in balances], "load entropy / log E", "#2e6fb7"),
    ):
        fig.add_trace(
            go.Scatter(x=values, y=labels, mode="lines+markers", name=name, line={"color": colour}), row=1, col=2
        )
    fig.update_xaxes(title_text="expert", row=1, col=1)
    fig.update_xaxes(title_text="even: CV 0, entropy 1", rangemode="tozero", row=1, col=2)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_layout(
        height=max(500, 24 * len(labels) + 300),
        legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
        margin={"t": 110, "b": 150},
    )
    return themed(
        fig,
        f"Expert load in every layer, over {source}",
        f"{model}; red: an expert takes more than its share, blue: less",
    )


def transitions_figure(counts: np.ndarray, first: str, second: str, sankey: bool, source: str) -> go.Figure:
    """How tokens' top-1 experts in one layer map to the next, over `source`: a co-occurrence heatmap or a
    Sankey diagram."""
    n_first, n_second = counts.shape
    title = f"Routing flow over {source}: top-1 expert in {first} → in {second}"
    if sankey:
        sources, targets = np.nonzero(counts)
        fig = go.Figure(
            go.Sankey(
                node={
                    "label": [f"{first}: E{i}" for i in range(n_first)] + [f"{second}: E{j}" for j in range(n_second)],
                    "color": [expert_colour(i) for i in range(n_first)] + [expert_colour(j) for j in range(n_second)],
                    "pad": 6,
                },
                link={
                    "source": sources,
                    "target": targets + n_first,
                    "value": counts[sources, targets],
                    "color": [_translucent(expert_colour(int(i))) for i in sources],
                },
            )
        )
        fig.update_traces(link_hovertemplate="%{source.label} → %{target.label}: %{value} tokens<extra></extra>")
        fig.update_layout(height=max(460, 18 * max(n_first, n_second) + 160))
        return themed(fig, title, "Band width: tokens whose top-1 expert goes from left to right")
    rows = counts.sum(1, keepdims=True)
    share = np.where(rows > 0, counts / np.maximum(rows, 1), np.nan)  # an expert no token reached: a blank row
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=list(range(n_second)),
            y=list(range(n_first)),
            colorscale=SEQUENTIAL,
            zmin=0,
            zmax=1,
            customdata=counts,
            colorbar={"title": {"text": "share of<br>the row"}},
            hovertemplate="E%{y} → E%{x}: %{customdata} tokens (%{z:.0%} of E%{y})<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=f"top-1 expert in {second}", dtick=1 if n_second <= 32 else None)
    fig.update_yaxes(title_text=f"top-1 expert in {first}", autorange="reversed", dtick=1 if n_first <= 32 else None)
    fig.update_layout(height=max(440, 16 * n_first + 200))
    return themed(fig, title, "Each row: where the tokens of one expert go next (a bright cell: a strong pairing)")


def loss_by_k_figure(loss: LossByK) -> go.Figure:
    """Mean NLL of the text against the number of active experts k, one line per E and router, and the dense model."""
    fig = go.Figure()
    dashes = {8: "dot", 16: "dash", 32: "solid"}
    for router, by_e in loss.nll.items():
        for experts, values in sorted(by_e.items()):
            ks = loss.ks[experts]
            fig.add_trace(
                go.Scatter(
                    x=ks / experts,
                    y=values,
                    mode="lines+markers",
                    name=f"{router} router, E = {experts}",
                    line={"color": ROUTER_COLOURS.get(router, "#555555"), "dash": dashes.get(experts, "solid")},
                    customdata=ks,
                    hovertemplate=f"E = {experts}, k = %{{customdata}} (%{{x:.0%}} active): NLL %{{y:.3f}}<extra>{router}</extra>",
                )
            )
    if np.isfinite(loss.dense_nll):
        fig.add_hline(
            y=loss.dense_nll,
            line={"color": UNIFORM_COLOUR, "dash": "dash"},
            annotation_text=f"dense {loss.dense_nll:.3f}",
        )
    fig.update_xaxes(title_text="share of experts active per token (k / E)", tickformat=".0%", type="log")
    fig.update_yaxes(title_text="mean NLL per token (nats)")
    legend_below(fig, 560)
    return themed(
        fig,
        "Loss against the number of active experts",
        f"{loss.model}, {len(loss.token_ids)} tokens; a few experts per token keep most of the quality when the router is good",
    )


def preference_rows(preferences: list[list], top: int = 6) -> list[dict]:
    """Table rows: each expert with the tokens it takes most often (share of that token's occurrences)."""
    return [
        {
            "expert": expert,
            "tokens it prefers (share of their occurrences routed to it)": "  ".join(
                f"{visible(p.token)} {p.share:.0%} ({p.routed}/{p.occurrences})" for p in listed[:top]
            ),
        }
        for expert, listed in enumerate(preferences)
    ]
