"""One forward pass of a loaded model on one token sequence, under the model's lock."""

from __future__ import annotations

import inspect

import numpy as np
import torch
from transformers.utils.generic import ModelOutput

from probes.errors import LmscopeError
from probes.handle import ModelHandle


def forward(handle: ModelHandle, token_ids: np.ndarray, *, logits: bool = False, **outputs: bool) -> ModelOutput:
    """Run the model on one sequence (n,) or a batch of equal-length sequences (b, n), without gradients.

    `outputs` are transformers flags such as output_attentions=True or output_hidden_states=True.

    An encoder-decoder's decoder reads the same tokens shifted right. Causal LMs compute vocabulary logits only
    for the last position unless `logits` is set, which saves hundreds of MB on Gemma's 262k-token vocabulary.
    """
    ids = torch.as_tensor(np.asarray(token_ids), dtype=torch.long)
    ids = ids[None] if ids.ndim == 1 else ids
    kwargs: dict = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **outputs}
    if handle.config.is_encoder_decoder:  # the decoder reads the same text, shifted right (teacher forcing)
        start = torch.full_like(ids[:, :1], getattr(handle.config, "decoder_start_token_id", None) or 0)
        kwargs["decoder_input_ids"] = torch.cat([start, ids[:, :-1]], dim=1)
    if not logits and "logits_to_keep" in inspect.signature(handle.model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    with handle.lock, torch.inference_mode():
        try:
            return handle.model(**kwargs)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise LmscopeError(f"Model '{handle.name}' failed on this text: {type(exc).__name__}: {exc}") from exc
