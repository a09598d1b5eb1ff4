"""One forward pass of a loaded model on one token sequence, under the model's lock."""

from __future__ import annotations

import inspect

import numpy as np
import torch
from transformers.utils import ModelOutput

from probes.errors import LmscopeError
from probes.models import ModelHandle


def forward(handle: ModelHandle, token_ids: np.ndarray, *, logits: bool = False, **outputs: bool) -> ModelOutput:
    """Run the model on one sequence (n,) or a batch of equal-length sequences (b, n), without gradients.

    `outputs` are transformers flags such as output_attentions=True or output_hidden_states=True.

    Causal LMs compute vocabulary logits only for the last position unless `logits` is set,
    which saves hundreds of MB on Gemma's 262k-token vocabulary.
    """
    ids = torch.as_tensor(np.asarray(token_ids), dtype=torch.long)
    ids = ids[None] if ids.ndim == 1 else ids
    kwargs: dict = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **outputs}
    if not logits and "logits_to_keep" in inspect.signature(handle.model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    with handle.lock, torch.inference_mode():
        try:
            return handle.model(**kwargs)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:  # e.g. a model that needs decoder inputs
            raise LmscopeError(f"Model '{handle.name}' failed on this text: {type(exc).__name__}: {exc}") from exc
