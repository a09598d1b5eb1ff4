"""The lecture's MoE equation for one token, y = Σᵢ G(x)ᵢ Eᵢ(x), read from a Mixtral-style block while the model
runs: the router's softmax over every expert, the chosen experts and their gates, and each expert's output
recomputed from its own weights (which must add up to what the block returned); a Qwen2-MoE block's shared expert
adds σ(x·w_s) E_s(x)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from probes.residual import blocks, submodule
from probes.text import encode, token_strings
from results.moe_trained import Equation
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.hooks import observing
from runtime.limits import check_range
from runtime.probe import CachedProbe
from runtime.settings import settings

VERSION = 2  # 2: the shared expert's term


def is_sparse(handle: ModelHandle, layer: int) -> bool:
    """Whether the layer's MLP is a Mixtral-style MoE block: a router `gate` returning (logits, gates, experts) and
    `experts` holding every expert's gate/up and down projections as 3-D tensors."""
    mlp = getattr(blocks(handle)[layer], "mlp", None)
    return hasattr(mlp, "gate") and hasattr(getattr(mlp, "experts", None), "gate_up_proj")


def sparse_block(handle: ModelHandle, layer: int) -> nn.Module:
    """The Mixtral-style MoE block of a layer (see `is_sparse`); a clear error if there is none."""
    check_range(layer, 0, handle.n_layers - 1, "layer")
    if not is_sparse(handle, layer):
        raise LmscopeError(
            f"'{handle.name}' has no Mixtral-style experts at layer {layer}: choose smollm2-135m-moe or a Mixtral, "
            "Qwen-MoE or OLMoE checkpoint."
        )
    return submodule(blocks(handle)[layer], "mlp", nn.Module)


def stacked_outputs(gate_up: torch.Tensor, down: torch.Tensor, act: Callable, x: torch.Tensor) -> torch.Tensor:
    """(E, N, d): the gated MLPs E, with (E, 2m, d) gate and up projections stacked and (E, d, m) down projections,
    on every vector of x (N, d)."""
    gate, up = torch.einsum("nh,eih->eni", x, gate_up).chunk(2, dim=-1)
    return torch.einsum("eni,ehi->enh", act(gate) * up, down)


def expert_outputs(experts: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(E, N, d): every expert's gated MLP Eᵢ(x) on every vector of x (N, d), from the experts' own weights."""
    return stacked_outputs(
        experts.get_parameter("gate_up_proj"), experts.get_parameter("down_proj"), getattr(experts, "act_fn"), x
    )


def _equation(handle: ModelHandle, token_ids: list[int], layer: int, position: int) -> Equation:
    mlp = sparse_block(handle, layer)
    router, experts = submodule(mlp, "gate", nn.Module), submodule(mlp, "experts", nn.Module)
    seen: dict[str, torch.Tensor] = {}

    def read_input(module: nn.Module, args: tuple) -> None:
        seen["x"] = args[0].reshape(-1, args[0].shape[-1])[position].detach().clone()

    def read_output(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen["y"] = output.reshape(-1, output.shape[-1])[position].detach().clone()

    def read_route(module: nn.Module, args: tuple, output: tuple) -> None:
        for name, tensor in zip(("logits", "gates", "experts"), output, strict=True):
            seen[name] = tensor[position].detach().clone()

    with observing(pre={mlp: read_input}, forward={mlp: read_output, router: read_route}):
        forward(handle, np.asarray(token_ids))
    x, y, gates, chosen = seen["x"], seen["y"], seen["gates"], seen["experts"]
    shared_gate, shared_norm = float("nan"), float("nan")
    with torch.inference_mode():
        outputs = expert_outputs(experts, x[None])[chosen, 0]
        recomputed = (gates[:, None].to(outputs.dtype) * outputs).sum(0)
        if hasattr(mlp, "shared_expert"):
            shared = submodule(mlp, "shared_expert", nn.Module)(x)
            gate = torch.sigmoid(submodule(mlp, "shared_expert_gate", nn.Module)(x))
            recomputed = recomputed + gate * shared
            shared_gate, shared_norm = float(gate), float(shared.float().norm())
    y_norm = float(y.float().norm())
    return Equation(
        model=handle.name,
        layer=layer,
        position=position,
        token=token_strings(handle, [token_ids[position]])[0],
        probs=seen["logits"].float().softmax(-1).cpu().numpy(),
        experts=chosen.cpu().numpy().astype(np.int64),
        gates=gates.float().cpu().numpy(),
        expert_norms=outputs.float().norm(dim=-1).cpu().numpy(),
        shared_gate=shared_gate,
        shared_norm=shared_norm,
        output_norm=y_norm,
        mismatch=float((y - recomputed).float().norm()) / max(y_norm, 1e-30),
    )


PROBE = CachedProbe("moe-equation", VERSION, _equation)


def run(handle: ModelHandle, text: str, layer: int, position: int, cache: ResultCache) -> Cached[Equation]:
    """The equation at `layer` for the token at `position` of the text."""
    token_ids = encode(handle, text, settings().max_tokens).token_ids.tolist()
    sparse_block(handle, layer)
    check_range(position, 0, len(token_ids) - 1, "token position")
    return PROBE.cached(handle, cache, token_ids=token_ids, layer=layer, position=position)
