"""Attention sinks: where each layer puts the attention it has nowhere else to put (StreamingLLM, Xiao et al. 2023).

Three views: statistics of the user's text from the attention probe's result (positions are the map's cells,
which are tokens unless a long text was block-pooled); the average attention map over many short sentences
(the corpus mode of StreamingLLM's Figure 2); and whether the sink token is also the token with massive
activations in the residual stream (Sun et al. 2024).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from probes.text import clean, token_strings
from results.attention import AttentionResult
from results.sinks import CorpusAttention, MassiveLink, SinkProfile
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.capture import capturing
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe
from runtime.settings import settings

VERSION = 2
CORPUS_NAME = "sinks-corpus"
MASSIVE_NAME = "sinks-massive"
BATCH_SIZE = 32
# StreamingLLM's settings: Figure 2 averages 256 sentences of 16 tokens; its cache keeps 4 initial (sink) tokens.
DEFAULT_SENTENCES = 256
DEFAULT_TOKENS = 16
DEFAULT_K = 4
# (sentences done, sentences in all) -> None
Progress = Callable[[int, int], None]


def _cell_sizes(n_tokens: int, pool: int) -> np.ndarray:
    """How many tokens each map cell covers (the last cell may be short)."""
    cells = -(-n_tokens // pool)
    sizes = np.full(cells, pool, dtype=np.float64)
    sizes[-1] = n_tokens - (cells - 1) * pool
    return sizes


def _layer_maps(result: AttentionResult) -> np.ndarray:
    """Head-averaged maps, (layers, cells, cells), in float64."""
    return result.maps.astype(np.float64).mean(axis=1)


def received_attention(result: AttentionResult) -> np.ndarray:
    """Per layer and key cell: the head-mean weight it receives, averaged over the queries that can look back at it.

    Those queries are the later ones in a decoder and all others in an encoder; a pooled cell's queries are
    weighted by the tokens they hold. The last cell of a decoder has no later query and gets NaN.
    """
    sizes = _cell_sizes(len(result.tokens), result.pool)
    cells = np.arange(len(sizes))
    senders = cells[:, None] > cells[None, :] if result.is_causal else cells[:, None] != cells[None, :]
    weight = sizes[:, None] * senders  # (queries, keys)
    total = np.einsum("lqk,qk->lk", _layer_maps(result), weight)
    count = weight.sum(axis=0)
    return np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0)


def uniform_sink_share(n_tokens: int, is_causal: bool) -> float:
    """Token 0's share if each query 1..n-1 spread its weight evenly over the tokens it sees."""
    if not is_causal:
        return 1.0 / n_tokens
    return float(np.mean(1.0 / np.arange(2, n_tokens + 1)))


def sink_profile(result: AttentionResult) -> SinkProfile:
    """Sink share per layer and head, the attention each position receives, and the sink of each layer."""
    received = received_attention(result)
    return SinkProfile(
        model=result.model,
        tokens=result.tokens,
        pool=result.pool,
        is_causal=result.is_causal,
        sink_share=result.sink_share,
        received=received.astype(np.float32),
        sink_position=np.nanargmax(received, axis=1),
        uniform_share=uniform_sink_share(len(result.tokens), result.is_causal),
    )


def logit_lead(result: AttentionResult) -> np.ndarray:
    """Per layer and head: the mean over queries 1..n-1 of token 0's logit lead, x_q0 minus the largest logit of
    the other keys the query sees. Softmax gives token 0 the weight 1 / (1 + sum_k exp(x_qk - x_q0)): a lead of a
    few nats makes it the sink. Needs exact logits (a result with logits, of a text not pooled)."""
    if result.logits is None or result.pool != 1:
        raise LmscopeError("The logit lead needs exact attention logits: a text short enough not to be pooled.")
    logits = result.logits.astype(np.float64)  # NaN where masked
    lead = logits[..., 1:, 0] - np.nanmax(logits[..., 1:, 1:], axis=-1)
    return lead.mean(axis=-1)


def toy_logits(n: int, spread: float, seed: int = 0) -> np.ndarray:
    """The logits of the other n - 1 keys of the softmax toy: normal, mean 0 and standard deviation `spread`."""
    limits.check_range(n, 2, limits.TOY_KEYS, "number of keys")
    if not 0 <= spread <= limits.TOY_SPREAD:
        raise LmscopeError(f"The spread of the other logits must be from 0 to {limits.TOY_SPREAD}; got {spread}.")
    return np.random.default_rng(seed).normal(0.0, spread, n - 1)


def first_k_range(result: AttentionResult) -> tuple[int, int, int]:
    """The k that first_k_share accepts: (smallest, largest, step); a pooled map allows only whole cells."""
    cells = result.maps.shape[-1]
    return result.pool, (cells - 1) * result.pool, result.pool


def default_k(result: AttentionResult) -> int:
    """StreamingLLM's 4 sink tokens, or the nearest k this text allows."""
    low, high, step = first_k_range(result)
    return min(high, max(low, DEFAULT_K // step * step))


def check_k(result: AttentionResult, k: int) -> None:
    """Raise a clear error for a k that first_k_share cannot use on this text."""
    low, high, step = first_k_range(result)
    if not low <= k <= high:
        raise LmscopeError(f"k = {k} is out of range: with {len(result.tokens)} tokens, k can be {low} to {high}.")
    if k % step:
        raise LmscopeError(f"This long text is pooled {step} tokens per cell, so k must be a multiple of {step}.")


def first_k_share(result: AttentionResult, k: int) -> np.ndarray:
    """Per layer: mean over queries q >= k of the head-mean weight on the first k tokens (keys < k)."""
    check_k(result, k)
    m = k // result.pool
    sizes = _cell_sizes(len(result.tokens), result.pool)[m:]
    on_first = _layer_maps(result)[:, m:, :m].sum(axis=-1)  # layers x query cells from m on
    return (on_first @ sizes / sizes.sum()).astype(np.float32)


def split_sentences(text: str) -> list[str]:
    """Pasted text as sentences: one per non-blank line."""
    return [line.strip() for line in clean(text).splitlines() if line.strip()]


def sentence_ids(
    handle: ModelHandle, sentences: Sequence[str], n_tokens: int, limit: int | None = None
) -> tuple[np.ndarray, int]:
    """Token ids (sentences, n_tokens) of the first `limit` sentences with at least n_tokens tokens, and how
    many shorter ones were skipped on the way. Tokenised as the model does, special tokens included."""
    if not sentences:
        raise LmscopeError("There are no sentences: paste at least one, one sentence per line.")
    if limit is None:
        limits.check_count(sentences, limits.CORPUS_SENTENCES, "sentences")
    else:
        limits.check_range(limit, 1, limits.CORPUS_SENTENCES, "number of sentences")
    limits.check_range(n_tokens, 2, min(limits.CORPUS_TOKENS, settings().max_tokens), "number of tokens per sentence")
    kept, skipped, longest = [], 0, 0
    for sentence in sentences:
        if limit is not None and len(kept) >= limit:
            break
        ids = handle.tokenizer(clean(sentence))["input_ids"]
        longest = max(longest, len(ids))
        if len(ids) < n_tokens:
            skipped += 1
        else:
            kept.append(ids[:n_tokens])
    if not kept:
        raise LmscopeError(
            f"None of the {skipped} sentences has {n_tokens} tokens (the longest has {longest}). "
            "Use longer sentences or fewer tokens per sentence."
        )
    return np.asarray(kept, dtype=np.int64), skipped


def average_attention(
    handle: ModelHandle, token_ids: np.ndarray, batch_size: int, on_progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean attention weights and logits (layers, heads, n, n) over equal-length sequences, run in batches.

    Only running sums are kept: each layer adds its batch into them as it is computed.
    """
    probabilities: dict[int, torch.Tensor] = {}
    logits: dict[int, torch.Tensor] = {}

    def on_layer(layer: int, weights: torch.Tensor, layer_logits: Callable[[], torch.Tensor]) -> None:
        probabilities[layer] = probabilities.get(layer, 0) + weights.double().sum(0)
        logits[layer] = logits.get(layer, 0) + layer_logits().double().sum(0)

    total = len(token_ids)
    with capturing(handle.model, on_layer):
        for start in range(0, total, batch_size):
            forward(handle, token_ids[start : start + batch_size])
            if on_progress is not None:
                on_progress(min(start + batch_size, total), total)
    if not probabilities:
        raise LmscopeError(f"Model '{handle.name}' reported no attention layers to lmscope.")
    layers = sorted(probabilities)
    mean_weights, mean_logits = (
        (torch.stack([sums[i] for i in layers]) / total).numpy().astype(np.float32) for sums in (probabilities, logits)
    )
    return mean_weights, mean_logits


def _shared_first_token(handle: ModelHandle, token_ids: np.ndarray) -> str | None:
    """The token at position 0 when every sequence starts with the same one."""
    first = np.unique(token_ids[:, 0])
    return token_strings(handle, [int(first[0])])[0] if len(first) == 1 else None


def _corpus(
    handle: ModelHandle, token_ids: list[list[int]], n_tokens: int, skipped: int, batch_size: int, on_progress: Progress
) -> CorpusAttention:
    ids = np.asarray(token_ids, dtype=np.int64)
    probabilities, logits = average_attention(handle, ids, batch_size, on_progress)
    return CorpusAttention(
        model=handle.name,
        fingerprint=handle.fingerprint,
        is_causal=handle.is_causal,
        n_tokens=n_tokens,
        token_ids=ids,
        n_skipped=skipped,
        first_token=_shared_first_token(handle, ids),
        probabilities=probabilities,
        logits=logits,
        layer_probabilities=probabilities.mean(axis=1),
        layer_logits=logits.mean(axis=1),
    )


CORPUS = CachedProbe(CORPUS_NAME, VERSION, _corpus)


def corpus_attention(
    handle: ModelHandle,
    sentences: Sequence[str],
    cache: ResultCache,
    *,
    n_tokens: int = DEFAULT_TOKENS,
    limit: int | None = None,
    batch_size: int = BATCH_SIZE,
    on_progress: Progress | None = None,
) -> Cached[CorpusAttention]:
    """Average attention over the first `limit` sentences of at least n_tokens tokens, each cut to n_tokens."""
    token_ids, skipped = sentence_ids(handle, sentences, n_tokens, limit)
    return CORPUS.cached(
        handle,
        cache,
        on_progress,
        token_ids=token_ids.tolist(),
        n_tokens=n_tokens,
        skipped=skipped,
        batch_size=batch_size,
    )


def default_layers(n_layers: int) -> list[int]:
    """Layers to show side by side: the first three (where the sink forms) and three spread over the rest."""
    return sorted({i for i in (0, 1, 2, n_layers // 3, 2 * n_layers // 3, n_layers - 1) if i < n_layers})


def activation_magnitudes(handle: ModelHandle, token_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest |h| over features per layer and token (layers, n), and the median |h| per layer, of the hidden
    state entering each layer (hidden_states[l]; the last entry, after the final norm, feeds no layer)."""
    states = forward(handle, token_ids, output_hidden_states=True)["hidden_states"][: handle.n_layers]
    peaks = np.stack([h[0].abs().amax(dim=-1).double().numpy() for h in states])
    medians = np.array([float(np.median(h[0].abs().double().numpy())) for h in states])
    return peaks, medians


def _cell_max(values: np.ndarray, pool: int) -> np.ndarray:
    """Largest value over the tokens of each cell ((layers, n) -> (layers, cells))."""
    cells = -(-values.shape[-1] // pool)
    padded = np.pad(values, ((0, 0), (0, cells * pool - values.shape[-1])), constant_values=-np.inf)
    return padded.reshape(values.shape[0], cells, pool).max(axis=-1)


def _massive_link(handle: ModelHandle, token_ids: list[int], pool: int, sink_position: list[int]) -> MassiveLink:
    """Each layer's largest activation magnitude at its sink's cell and at the largest other cell."""
    peaks, medians = activation_magnitudes(handle, np.asarray(token_ids, dtype=np.int64))
    cells = _cell_max(peaks, pool)
    sinks = np.asarray(sink_position, dtype=np.int64)
    rows = np.arange(len(cells))
    others = cells.copy()
    others[rows, sinks] = -np.inf
    other_position = others.argmax(axis=1)
    return MassiveLink(
        model=handle.name,
        tokens=token_strings(handle, token_ids),
        pool=pool,
        sink_position=sinks,
        sink_magnitude=cells[rows, sinks],
        other_position=other_position,
        other_magnitude=cells[rows, other_position],
        median_magnitude=medians,
    )


MASSIVE = CachedProbe(MASSIVE_NAME, VERSION, _massive_link)


def massive_link(handle: ModelHandle, result: AttentionResult, cache: ResultCache) -> Cached[MassiveLink]:
    """Compare each layer's sink with where its input has the largest activation magnitude."""
    profile = sink_profile(result)
    return MASSIVE.cached(
        handle,
        cache,
        token_ids=result.token_ids.tolist(),
        pool=int(result.pool),
        sink_position=profile.sink_position.tolist(),
    )
