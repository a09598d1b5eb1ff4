"""Loss of a text under a causal LM: the negative log-likelihood of each next token."""

from __future__ import annotations

import numpy as np
import torch

from probes.errors import LmscopeError
from probes.forward import forward
from probes.handle import ModelHandle


def token_nll(handle: ModelHandle, token_ids: np.ndarray) -> np.ndarray:
    """NLL (nats) of tokens 1..n-1, each given the tokens before it; run inside `capturing` to alter the model."""
    if not handle.is_causal:
        raise LmscopeError(f"'{handle.name}' is an encoder: it does not predict the next token, so it has no loss.")
    if len(token_ids) < 2:
        raise LmscopeError("The loss needs at least two tokens.")
    logits = forward(handle, token_ids, logits=True)["logits"][0, :-1].float()
    targets = torch.as_tensor(np.asarray(token_ids[1:]), dtype=torch.long)
    return torch.nn.functional.cross_entropy(logits, targets, reduction="none").numpy()


def perplexity(nll: np.ndarray) -> float:
    """exp of the mean per-token NLL."""
    return float(np.exp(np.mean(nll)))
