"""What the attention sink does: the norm of what it adds to the output, and the loss without it.

Norms (Kobayashi et al. 2020, "Attention is not only a weight"): head h's output at query i is
Σ_j a_ij f_h(x_j), with f_h(x_j) = W_O^h v_j the value of key j through the head's slice of the output projection.
A weight a_i0 near 1 on the first token moves the output little when ‖f_h(x_0)‖ is small: the sink's share of the
norms, a_i0 ‖f_h(x_0)‖ / Σ_j a_ij ‖f_h(x_j)‖, is then below its share of the weights. The value states are read
as the attention reads them (runtime.capture, for this call only), the weights from the same pass.

Masking (the lecture: softmax must put its weight somewhere): the text's loss when no query after the first may see
the first token's key, against full attention and a sliding window with and without the first tokens kept visible.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from probes import pruning
from probes.structured import check_window, full_mask, masked_nll, windowed_mask
from probes.text import encode, from_ids, long_limit
from results.sinks import FirstKeyMasked, SinkNorms
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.capture import capturing
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe

NORMS_NAME = "sink-norms"
MASKED_NAME = "sink-masked"
VERSION = 2
DEFAULT_WINDOW = 16
DEFAULT_SINKS = 4


def _head_outputs(handle: ModelHandle) -> list[torch.Tensor]:
    """Each layer's output projection split by head: (heads, hidden, head dim)."""
    found = pruning.linear_weights(handle, ("o",))
    if [m.layer for m in found] != list(range(handle.n_layers)):
        raise LmscopeError(f"lmscope expects one attention output projection in each block of '{handle.name}'.")
    split = []
    for matrix in found:
        weight = matrix.weight.detach().float().cpu()
        weight = weight if isinstance(matrix.module, nn.Linear) else weight.T  # GPT-2's Conv1D stores (in, out)
        split.append(weight.view(weight.shape[0], handle.n_heads, -1).permute(1, 0, 2))
    return split


def _norms(handle: ModelHandle, token_ids: list[int]) -> SinkNorms:
    outputs = _head_outputs(handle)
    values: dict[int, torch.Tensor] = {}
    shape = (handle.n_layers, handle.n_heads)
    found = {name: np.zeros(shape, dtype=np.float32) for name in SinkNorms.MEASURES}

    def on_values(layer: int, value: torch.Tensor) -> None:
        values[layer] = value[0].double()  # (key/value heads, n, head dim)

    def on_layer(layer: int, weights: torch.Tensor, _logits) -> None:
        a = weights[0].double()  # (heads, n, n)
        v = values.pop(layer)
        v = v.repeat_interleave(a.shape[0] // v.shape[0], dim=0)  # grouped key/value heads: one per query head
        f = torch.einsum("hnd,hod->hno", v, outputs[layer].double())  # f_h(x_j): (heads, n, hidden)
        size = f.norm(dim=-1)  # (heads, n)
        weighted = a[:, 1:] * size[:, None, :]  # ‖a_ij f_h(x_j)‖ for the queries after the first
        found["attention_share"][layer] = a[:, 1:, 0].mean(-1).numpy()
        found["norm_share"][layer] = (weighted[..., 0] / weighted.sum(-1)).mean(-1).numpy()
        found["first_value_norm"][layer] = size[:, 0].numpy()
        found["other_value_norm"][layer] = size[:, 1:].mean(-1).numpy()
        found["sink_norm"][layer] = weighted[..., 0].mean(-1).numpy()
        found["output_norm"][layer] = torch.einsum("hij,hjo->hio", a[:, 1:], f).norm(dim=-1).mean(-1).numpy()

    with capturing(handle.model, on_layer, on_values=on_values):
        forward(handle, np.asarray(token_ids, dtype=np.int64))
    return SinkNorms(model=handle.name, tokens=from_ids(handle, token_ids).tokens, **found)


NORMS = CachedProbe(NORMS_NAME, VERSION, _norms)


def _ids(handle: ModelHandle, text: str) -> list[int]:
    """The text's tokens: 2 to `limits.SINK_NORM_TOKENS`, within the model's context (each layer's whole maps and
    values are read here)."""
    ids = encode(handle, text, long_limit(handle)).token_ids.tolist()
    most = min(limits.SINK_NORM_TOKENS, handle.context_length or limits.SINK_NORM_TOKENS)
    if not 2 <= len(ids) <= most:
        raise LmscopeError(
            f"The sink's norms and masked loss read 2 to {most:,} tokens (each layer's whole attention maps and "
            f"values); the text has {len(ids):,}. Shorten it."
        )
    return ids


def norms(handle: ModelHandle, text: str, cache: ResultCache) -> Cached[SinkNorms]:
    """Per layer and head: the first token's share of the attention weights and of the weighted value norms."""
    return NORMS.cached(handle, cache, token_ids=_ids(handle, text))


def _masked(handle: ModelHandle, token_ids: list[int], window: int, sinks: int) -> FirstKeyMasked:
    ids = np.asarray(token_ids, dtype=np.int64)
    n = len(ids)
    hidden = full_mask(n)
    hidden[1:, 0] = False  # no query after the first sees the first token's key
    losses = [
        float(np.mean(masked_nll(handle, ids, mask)))
        for mask in (None, hidden, windowed_mask(n, window, 0), windowed_mask(n, window, sinks))
    ]
    return FirstKeyMasked(handle.name, n, window, sinks, *losses)


MASKED = CachedProbe(MASKED_NAME, VERSION, _masked)


def first_key_masked(
    handle: ModelHandle, text: str, cache: ResultCache, window: int = DEFAULT_WINDOW, sinks: int = DEFAULT_SINKS
) -> Cached[FirstKeyMasked]:
    """The text's mean loss with full attention, with the first token's key hidden from every later query, and
    under a sliding window without and with the first `sinks` tokens kept visible."""
    if not handle.is_causal:
        raise LmscopeError(
            f"'{handle.name}' is an encoder: it has no next-token loss to lose. Masking the first key needs a decoder."
        )
    ids = _ids(handle, text)
    check_window(window, len(ids))
    limits.check_range(sinks, 0, len(ids) - 1, "sink tokens")
    return MASKED.cached(handle, cache, token_ids=ids, window=window, sinks=sinks)
