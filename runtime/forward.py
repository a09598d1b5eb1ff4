"""One forward pass of a loaded model on one token sequence, under the model's lock."""

from __future__ import annotations

import inspect

import numpy as np
import torch
from transformers.utils.generic import ModelOutput

from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.placement import host, require_weights


def host_outputs(outputs: ModelOutput) -> ModelOutput:
    """The outputs' tensors (and tuples of tensors: hidden states, attentions) on the host in float32 or wider; other
    entries (a key-value cache) are dropped. A CPU float32 model's outputs come back unchanged."""
    kept = {}
    for name, value in outputs.items():
        if isinstance(value, torch.Tensor):
            kept[name] = host(value)
        elif isinstance(value, tuple) and all(isinstance(v, torch.Tensor) for v in value):
            kept[name] = tuple(host(v) for v in value)
    return type(outputs)(**kept)


def forward(handle: ModelHandle, token_ids: np.ndarray, *, logits: bool = False, **outputs: bool) -> ModelOutput:
    """Run the model on one sequence (n,) or a batch of equal-length sequences (b, n), without gradients; the
    outputs' tensors come back on the host (see `host_outputs`).

    `outputs` are transformers flags such as output_attentions=True or output_hidden_states=True.

    An encoder-decoder's decoder reads the same tokens shifted right. Causal LMs compute vocabulary logits only
    for the last position unless `logits` is set, which saves hundreds of MB on Gemma's 262k-token vocabulary.
    """
    require_weights(handle.device)
    ids = torch.as_tensor(np.asarray(token_ids), dtype=torch.long, device=handle.device)
    ids = ids[None] if ids.ndim == 1 else ids
    kwargs: dict = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **outputs}
    if handle.config.is_encoder_decoder:  # the decoder reads the same text, shifted right (teacher forcing)
        start = torch.full_like(ids[:, :1], getattr(handle.config, "decoder_start_token_id", None) or 0)
        kwargs["decoder_input_ids"] = torch.cat([start, ids[:, :-1]], dim=1)
    if not logits and "logits_to_keep" in inspect.signature(handle.model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    with handle.lock, torch.inference_mode():
        try:
            return host_outputs(handle.model(**kwargs))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise LmscopeError(f"Model '{handle.name}' failed on this text: {type(exc).__name__}: {exc}") from exc
