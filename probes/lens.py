"""The logit lens (nostalgebraist 2020): the residual stream after each block read out through the model's own
final norm and unembedding, as if the model stopped there.

Every block's output is taken by a per-call hook before any final norm (`probes.residual.hooked_blocks`), and the
embeddings from output_hidden_states[0]; each goes through the same final norm, unembedding and logit soft-capping
that make the model's logits, so the last block's readout is the model's own prediction. The vocabulary logits of
every layer are never held at once: positions are read in chunks (Gemma's vocabulary has 262k entries).

`zeroed` features are set to 0 in the residual stream before each readout only (the forward pass is untouched),
the last one included; the KL divergence is always from the model's own prediction, so the last row's shows what
zeroing them does to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from probes.batches import Progress
from probes.residual import hooked_blocks
from probes.text import encode, from_ids, token_strings
from results.lens import LensResult
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.placement import host
from runtime.probe import CachedProbe
from runtime.settings import settings

NAME = "lens"
VERSION = 2
TOP = 5  # tokens kept per layer and position
CHUNK = 64  # positions read out at once
FINAL_NORMS = ("norm", "ln_f", "final_layer_norm", "final_layernorm")  # the final norm's name, by model family


def readout(handle: ModelHandle) -> tuple[nn.Module, nn.Module]:
    """The model's final norm and unembedding; a clear error for a model without a language-model head."""
    if not handle.is_causal:
        raise LmscopeError(f"{handle.name} is an encoder: it has no unembedding to read the layers out through.")
    head = handle.model.get_output_embeddings()
    base = handle.model.base_model
    norms = [getattr(base, name) for name in FINAL_NORMS if isinstance(getattr(base, name, None), nn.Module)]
    if head is None or len(norms) != 1:
        raise LmscopeError(f"lmscope cannot find the final norm and unembedding of model '{handle.name}'.")
    return norms[0], head


def _reader(handle: ModelHandle, zeroed: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Residual states (positions, features) -> float32 log-probabilities of the next token, through the model's
    final norm, unembedding and logit soft-capping, `zeroed` features set to 0 first."""
    norm, head = readout(handle)
    cap = getattr(handle.text_config, "final_logit_softcapping", None)

    def read(hidden: torch.Tensor) -> torch.Tensor:
        if zeroed:
            hidden = hidden.clone()
            hidden[:, list(zeroed)] = 0
        logits = head(norm(hidden.to(handle.device))).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.log_softmax(logits, dim=-1).cpu()

    return read


def residual_states(handle: ModelHandle, token_ids: np.ndarray) -> list[torch.Tensor]:
    """The residual stream of one sequence at every depth (tokens, features): the embeddings, then each block's
    output before any final norm."""
    outputs: list[torch.Tensor] = []

    def keep(_: int, hidden: torch.Tensor) -> None:
        outputs.append(host(hidden[0]).clone())

    with hooked_blocks(handle, keep):
        embedded = forward(handle, token_ids, output_hidden_states=True)["hidden_states"][0][0]
    return [embedded, *outputs]


def compute(
    handle: ModelHandle, token_ids: list[int], zeroed: list[int], on_progress: Progress | None = None
) -> LensResult:
    """The lens of one sequence (see the module)."""
    ids = np.asarray(token_ids, dtype=np.int64)
    states = residual_states(handle, ids)
    n, rows = len(ids), len(states)
    top_ids = np.zeros((rows, n, TOP), dtype=np.int64)
    top_probs = np.zeros((rows, n, TOP), dtype=np.float32)
    next_prob = np.zeros((rows, n - 1), dtype=np.float32)
    next_rank = np.zeros((rows, n - 1), dtype=np.int64)
    entropy = np.zeros((rows, n), dtype=np.float32)
    kl_final = np.zeros((rows, n), dtype=np.float32)
    following = torch.as_tensor(ids[1:])
    own, read = _reader(handle, ()), _reader(handle, zeroed)
    with handle.lock, torch.inference_mode():
        for start in range(0, n, CHUNK):
            span = slice(start, min(n, start + CHUNK))
            final = own(states[-1][span])  # the model's own prediction
            targets = following[start : span.stop]  # the next token of each position that has one
            for row, state in enumerate(states):
                logp = final if row == rows - 1 and not zeroed else read(state[span])
                probs = logp.exp()
                best = torch.topk(logp, TOP, dim=-1)
                top_ids[row, span] = best.indices.numpy()
                top_probs[row, span] = best.values.exp().numpy()
                entropy[row, span] = (-(probs * logp).sum(-1)).numpy()
                kl_final[row, span] = (final.exp() * (final - logp)).sum(-1).clamp_min(0).numpy()
                if len(targets):
                    chosen = logp[: len(targets)].gather(1, targets[:, None])
                    next_prob[row, start : start + len(targets)] = chosen[:, 0].exp().numpy()
                    next_rank[row, start : start + len(targets)] = (logp[: len(targets)] > chosen).sum(-1).numpy()
            if on_progress is not None:
                on_progress(span.stop, n)
    unique, where = np.unique(top_ids, return_inverse=True)
    decoded = np.asarray(token_strings(handle, unique.tolist()), dtype=str)[where]
    return LensResult(
        model=handle.name,
        fingerprint=handle.fingerprint,
        token_ids=ids,
        tokens=from_ids(handle, token_ids).tokens,
        zeroed=list(zeroed),
        top_ids=top_ids,
        top_tokens=decoded.reshape(top_ids.shape),
        top_probs=top_probs,
        next_prob=next_prob,
        next_rank=next_rank,
        entropy=entropy,
        kl_final=kl_final,
    )


PROBE = CachedProbe(NAME, VERSION, compute)


def run(
    handle: ModelHandle,
    text: str,
    cache: ResultCache,
    zeroed: Sequence[int] = (),
    on_progress: Progress | None = None,
) -> Cached[LensResult]:
    """The logit lens of the model on the text (at most `limits.LENS_TOKENS` tokens), from the disk cache when it
    has been computed before; `zeroed`: residual features set to 0 before each readout."""
    readout(handle)  # a model without a head: said before the text is read
    features = int(handle.text_config.hidden_size)
    chosen = sorted(set(int(f) for f in zeroed))
    if any(not 0 <= f < features for f in chosen):
        raise LmscopeError(f"The features to zero must be from 0 to {features - 1}; got {chosen}.")
    encoded = encode(handle, text, settings().max_tokens)
    if not 2 <= len(encoded.token_ids) <= limits.LENS_TOKENS:
        advice = "lengthen it" if len(encoded.token_ids) < 2 else "shorten it"
        raise LmscopeError(
            f"The lens reads 2 to {limits.LENS_TOKENS} tokens (every layer's readout is a pass through the whole "
            f"vocabulary); the text has {len(encoded.token_ids)}: {advice}."
        )
    return PROBE.cached(handle, cache, on_progress, token_ids=encoded.token_ids.tolist(), zeroed=chosen)
