"""Direct logit attribution: what the embeddings, each attention head and each MLP write, at one position, toward
the logit of one next token.

The residual stream after the last block is a sum: the embeddings, then what each block adds, its attention output
(the sum of its heads' outputs through o_proj) and its MLP output. Sandwich-normed families (Gemma 2 and 3) put each
of the two through an RMS norm before adding it. The final RMS norm and the unembedding are linear once the norm's
scale is frozen at its value on the whole residual, and so is a sandwich norm with its scale frozen at its value on
the whole sublayer output: the logit of token t is then a sum over the parts, each the unembedding row of t (times
the final norm's weight, over the residual's RMS) dotted with the part. Logit soft-capping, where a config sets it,
comes after and is left out.

The parts are read by per-call hooks (`runtime.hooks.observing`) on o_proj's input and output and on each MLP's
output: never on the shared model outside this call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from probes.lens import readout, residual_states
from probes.residual import blocks, submodule
from probes.text import from_ids, token_strings
from results.lens import LogitAttribution
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.hooks import observing
from runtime.placement import host
from runtime.probe import CachedProbe

NAME = "attribution"
VERSION = 2


def rms_scale(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The per-feature factor an RMS norm multiplies the vector x by (float64): its gain over x's RMS. The gain is
    read from the norm itself, as what it makes of a vector of ones (Llama's weight, Gemma's 1 + weight)."""
    kind = type(norm).__name__
    eps = getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", None)
    if "RMSNorm" not in kind or eps is None:
        raise LmscopeError(f"Direct logit attribution reads RMS norms; this model's {kind} is not one.")
    weight = norm.get_parameter("weight")
    with torch.inference_mode():
        ones = torch.ones(weight.shape, dtype=weight.dtype, device=weight.device)
        gain = host(norm(ones)).double() * np.sqrt(1 + float(eps))
    return gain / torch.sqrt(x.double().pow(2).mean() + float(eps))


def _sublayers(block: nn.Module) -> tuple[nn.Linear, nn.Module, nn.Module | None, nn.Module | None]:
    """A block's o_proj, its MLP, and the norms a sandwich-normed block puts their outputs through (or None)."""
    try:
        o_proj, mlp = submodule(block, "self_attn.o_proj", nn.Linear), block.get_submodule("mlp")
    except AttributeError as exc:
        raise LmscopeError(
            "Direct logit attribution reads llama-style blocks (self_attn.o_proj and mlp); this model's blocks differ."
        ) from exc
    if hasattr(block, "pre_feedforward_layernorm"):  # Gemma 2 and 3: a norm after each sublayer too
        return (
            o_proj,
            mlp,
            block.get_submodule("post_attention_layernorm"),
            block.get_submodule("post_feedforward_layernorm"),
        )
    return o_proj, mlp, None, None


def compute(handle: ModelHandle, token_ids: list[int], position: int, target_id: int) -> LogitAttribution:
    """The attribution of one sequence's logit of `target_id` at `position` (see the module)."""
    ids = np.asarray(token_ids, dtype=np.int64)
    layers = blocks(handle)
    parts = [_sublayers(block) for block in layers]
    inputs: dict[int, torch.Tensor] = {}  # layer -> o_proj's input at the position (the heads' outputs, concatenated)
    outputs: dict[tuple[int, str], torch.Tensor] = {}  # (layer, "attention" | "mlp") -> output at the position

    def read_input(layer: int) -> Callable[[nn.Module, tuple], None]:
        def read(_: nn.Module, args: tuple) -> None:
            inputs[layer] = host(args[0][0, position]).double()

        return read

    def read_output(layer: int, what: str) -> Callable[[nn.Module, tuple, object], None]:
        def read(_: nn.Module, __: tuple, output: object) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            outputs[(layer, what)] = host(hidden[0, position]).double()  # pyright: ignore[reportIndexIssue]

        return read

    pre: dict[nn.Module, Callable] = {o_proj: read_input(i) for i, (o_proj, _, _, _) in enumerate(parts)}
    after: dict[nn.Module, Callable] = {
        o_proj: read_output(i, "attention") for i, (o_proj, _, _, _) in enumerate(parts)
    }
    after |= {mlp: read_output(i, "mlp") for i, (_, mlp, _, _) in enumerate(parts)}
    with observing(forward=after, pre=pre):
        states = residual_states(handle, ids)
    final_norm, head = readout(handle)
    residual = states[-1][position].double()
    with torch.inference_mode():
        direction = head.get_parameter("weight")[target_id].detach().double() * rms_scale(final_norm, residual)
        n_heads = handle.n_heads
        heads = np.zeros((len(layers), n_heads))
        bias = np.zeros(len(layers))
        mlps = np.zeros(len(layers))
        for i, (o_proj, _, attention_norm, mlp_norm) in enumerate(parts):
            weight = o_proj.weight.detach().double()
            scale = 1.0 if attention_norm is None else rms_scale(attention_norm, outputs[(i, "attention")])
            # Head h's output is o_proj's weight columns of that head times the head's slice of o_proj's input.
            by_head = torch.einsum(
                "dhw,hw->hd", weight.reshape(weight.shape[0], n_heads, -1), inputs[i].reshape(n_heads, -1)
            )
            heads[i] = ((by_head * scale) @ direction).numpy()
            if o_proj.bias is not None:
                bias[i] = float(direction @ (o_proj.bias.detach().double() * scale))
            mlp_scale = 1.0 if mlp_norm is None else rms_scale(mlp_norm, outputs[(i, "mlp")])
            mlps[i] = float(direction @ (outputs[(i, "mlp")] * mlp_scale))
        embedding = float(direction @ states[0][position].double())
        logit = float(direction @ residual)
    return LogitAttribution(
        model=handle.name,
        fingerprint=handle.fingerprint,
        token_ids=ids,
        tokens=from_ids(handle, token_ids).tokens,
        position=position,
        target_id=target_id,
        target=token_strings(handle, [target_id])[0],
        logit=logit,
        embedding=embedding,
        heads=heads,
        attention_bias=bias,
        mlps=mlps,
    )


PROBE = CachedProbe(NAME, VERSION, compute)


def run(
    handle: ModelHandle, token_ids: list[int], position: int, target_id: int, cache: ResultCache
) -> Cached[LogitAttribution]:
    """The direct logit attribution of the token `target_id` at `position` of the token ids (a lens result's, so
    that the text was read and checked once), from the disk cache when it has been computed before."""
    _, head = readout(handle)  # a model without a head: said first
    if not 0 <= position < len(token_ids):
        raise LmscopeError(f"Position {position} does not exist: the text has positions 0 to {len(token_ids) - 1}.")
    vocabulary = head.get_parameter("weight").shape[0]
    if not 0 <= target_id < vocabulary:
        raise LmscopeError(f"Token id {target_id} is not in the vocabulary (0 to {vocabulary - 1}).")
    return PROBE.cached(handle, cache, token_ids=list(token_ids), position=position, target_id=target_id)
