"""Loss of a text under a causal LM: the negative log-likelihood of each next token."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.hooks import observing
from runtime.placement import host

LOGIT_FLOATS = 2**26  # vocabulary logits formed at once (256 MB in float32): a long text's rows are taken in chunks


def head_logits(handle: ModelHandle, head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The vocabulary logits of final hidden states, as the model's head forms them, soft-capped where the model
    caps them, in float32 on the host."""
    with torch.inference_mode():
        logits = host(head(hidden)).float()
    if cap := getattr(handle.text_config, "final_logit_softcapping", None):
        logits = torch.tanh(logits / cap) * cap
    return logits


def token_nll(handle: ModelHandle, token_ids: np.ndarray) -> np.ndarray:
    """NLL (nats) of tokens 1..n-1, each given the tokens before it: (n - 1,) for one sequence (n,), (b, n - 1) for
    a batch (b, n) of equal-length ones; run inside `observing` to alter the model.

    The model's head sees only the last position in the pass (its logits are the check); the other positions' logits
    are formed afterwards from the final hidden states a chunk of rows at a time, so that a long text never holds
    its (n, vocabulary) logits (Gemma 3: 1 GB per 1,000 tokens)."""
    if not handle.is_causal:
        raise LmscopeError(f"'{handle.name}' is an encoder: it does not predict the next token, so it has no loss.")
    ids = np.asarray(token_ids)
    if ids.shape[-1] < 2:
        raise LmscopeError("The loss needs at least two tokens.")
    batch = ids if ids.ndim == 2 else ids[None]
    head = handle.model.get_output_embeddings()
    if head is None:
        raise LmscopeError(f"Model '{handle.name}' has no output embeddings to form its logits with.")
    final: list[torch.Tensor] = []

    def keep_last(_module: nn.Module, args: tuple) -> tuple:
        final.append(args[0])
        return (args[0][:, -1:], *args[1:])

    with observing(pre={head: keep_last}):
        last = forward(handle, batch, logits=True)["logits"][:, -1].float()
    hidden = final[0]
    if not torch.allclose(head_logits(handle, head, hidden[:, -1:])[:, 0], last, rtol=1e-4, atol=1e-4):
        raise LmscopeError(f"Model '{handle.name}' transforms its logits in a way lmscope does not know.")
    targets = torch.as_tensor(batch[:, 1:], dtype=torch.long)
    rows = max(1, LOGIT_FLOATS // last.shape[-1])
    nll = torch.empty(targets.shape)
    for start in range(0, targets.shape[1], rows):
        logits = head_logits(handle, head, hidden[:, start : start + rows])[:, : targets.shape[1] - start]
        # Flat (tokens, vocabulary) rows: cross_entropy over a transposed (b, vocabulary, n) tensor differs by 2e-4.
        nll[:, start : start + logits.shape[1]] = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), targets[:, start : start + logits.shape[1]].flatten(), reduction="none"
        ).reshape(logits.shape[:2])
    return nll.numpy().reshape(targets.shape) if ids.ndim == 2 else nll.numpy()[0]


def perplexity(nll: np.ndarray) -> float:
    """exp of the mean per-token NLL."""
    return float(np.exp(np.mean(nll)))
