"""Loss of a text under a causal LM: the negative log-likelihood of each next token."""

from __future__ import annotations

import numpy as np
import torch

from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle


def token_nll(handle: ModelHandle, token_ids: np.ndarray) -> np.ndarray:
    """NLL (nats) of tokens 1..n-1, each given the tokens before it: (n - 1,) for one sequence (n,), (b, n - 1) for
    a batch (b, n) of equal-length ones; run inside `observing` to alter the model."""
    if not handle.is_causal:
        raise LmscopeError(f"'{handle.name}' is an encoder: it does not predict the next token, so it has no loss.")
    ids = np.asarray(token_ids)
    if ids.shape[-1] < 2:
        raise LmscopeError("The loss needs at least two tokens.")
    batch = ids if ids.ndim == 2 else ids[None]
    logits = forward(handle, batch, logits=True)["logits"][:, :-1].float()
    targets = torch.as_tensor(batch[:, 1:], dtype=torch.long)
    # Flat (tokens, vocabulary) rows: cross_entropy over a transposed (b, vocabulary, n) tensor differs by 2e-4.
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").numpy()
    return nll.reshape(targets.shape) if ids.ndim == 2 else nll


def perplexity(nll: np.ndarray) -> float:
    """exp of the mean per-token NLL."""
    return float(np.exp(np.mean(nll)))
