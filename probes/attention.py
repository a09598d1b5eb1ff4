"""Attention probe: per-head summaries of every layer, and maps of every head (block-pooled when long).

Summaries are computed layer by layer inside the attention call (runtime.capture), so a 4,096-token text
never holds more than one layer's (n, n) maps at a time.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping

import numpy as np
import torch

from probes.text import Encoded, encode, from_ids
from results.attention import AttentionResult
from runtime.cache import Cached, ResultCache
from runtime.capture import capturing
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe
from runtime.settings import settings

NAME = "attention"
VERSION = 4
SUMMARIES = ("sink_share", "previous_token", "delimiter_share", "special_share", "mean_distance", "entropy")
# A scorer maps one layer's (heads, n, n) probabilities to one score per head.
Scorer = Callable[[torch.Tensor], torch.Tensor]
# Maps longer than this are block-pooled for display; summaries always use the exact maps.
MAX_MAP_SIDE = 256
QUERY_CHUNK = 128
STRIDED_POOL = 4  # up to this pool (texts up to 1,024 tokens), block_pool sums by strided adds


_MARKS = set(string.punctuation) | {"…", "—", "–", "«", "»", "“", "”", "‘", "’"}


def special_tokens(handle: ModelHandle, token_ids: np.ndarray) -> np.ndarray:
    """Which tokens are special tokens ([SEP], <eos>, ...) after the first position (the first is the sink)."""
    special = set(handle.tokenizer.all_special_ids)
    return np.array([i > 0 and int(t) in special for i, t in enumerate(token_ids)], dtype=bool)


def delimiter_tokens(handle: ModelHandle, token_ids: np.ndarray, tokens: list[str]) -> np.ndarray:
    """Which tokens are delimiters: punctuation or whitespace-only text, or special tokens after the first."""
    text_marks = [(t != "" and t.strip() == "") or (t.strip() != "" and set(t.strip()) <= _MARKS) for t in tokens]
    return special_tokens(handle, token_ids) | np.array(text_marks, dtype=bool)


def _strided_block_sums(maps: torch.Tensor, pool: int) -> torch.Tensor:
    """Sums over pool x pool blocks (the last ones may be short): rows first, then columns, by strided adds."""
    by_rows = maps[..., 0::pool, :].clone()
    for i in range(1, pool):
        part = maps[..., i::pool, :]
        by_rows[..., : part.shape[-2], :] += part
    sums = by_rows[..., 0::pool].clone()
    for j in range(1, pool):
        part = by_rows[..., j::pool]
        sums[..., : part.shape[-1]] += part
    return sums


def block_pool(maps: torch.Tensor, pool: int, reduce_keys: str = "sum") -> torch.Tensor:
    """Pool (..., queries, keys) maps into pool x pool blocks: over a block's keys take the sum (probabilities:
    rows still sum to 1) or the NaN-ignoring mean (logits, NaN where masked), then average over its queries."""
    if pool == 1:
        return maps
    rows, cols = maps.shape[-2:]
    row_cells, col_cells = -(-rows // pool), -(-cols // pool)
    padding = (0, col_cells * pool - cols, 0, row_cells * pool - rows)
    if reduce_keys == "sum":  # block sums / pool, then a true mean for a short last row
        if pool <= STRIDED_POOL:  # a few strided adds beat avg_pool2d (4x at pool 2) on the short texts
            sums = _strided_block_sums(maps, pool)
        else:
            flat = maps.reshape(-1, 1, rows, cols)
            sums = torch.nn.functional.avg_pool2d(flat, pool, ceil_mode=True, divisor_override=1)
            sums = sums.reshape(*maps.shape[:-2], row_cells, col_cells)
        sums /= pool
        sums[..., -1, :] *= pool / (rows - (row_cells - 1) * pool)
        return sums
    padded = torch.nn.functional.pad(maps, padding, value=float("nan"))
    return padded.reshape(*maps.shape[:-2], row_cells, pool, col_cells, pool).nanmean(-1).nanmean(-2)


def head_summaries(
    weights: torch.Tensor,
    delimiters: torch.Tensor,
    specials: torch.Tensor,
    causal: bool,
    scratch: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The summaries of each head of one layer, from its (heads, n, n) probabilities.

    Works through the queries in chunks so that a long text needs no more (n, n) temporaries; for a causal
    model a chunk's keys stop at its last query, since later keys carry no weight. `scratch`, a
    (heads, QUERY_CHUNK, n) buffer reused across layers, saves allocating one per chunk.
    """
    n = weights.shape[-1]
    if scratch is None or scratch.shape[0] != weights.shape[0] or scratch.shape[-1] < n:
        scratch = torch.empty(weights.shape[0], min(n, QUERY_CHUNK), n)
    positions = torch.arange(n, dtype=weights.dtype)
    # One matrix product per chunk gives each query's total weight, weighted key position, and weight on
    # delimiters and on special tokens: one pass over the maps instead of four.
    features = torch.stack([torch.ones(n), positions, delimiters.to(weights.dtype), specials.to(weights.dtype)], dim=1)
    totals = {name: torch.zeros(weights.shape[0], dtype=torch.float64) for name in SUMMARIES}
    for start in range(0, n, QUERY_CHUNK):
        stop = min(n, start + QUERY_CHUNK)
        keys = stop if causal else n
        chunk = weights[:, start:stop, :keys]
        skip = 1 if start == 0 else 0  # summaries of "later" queries leave out query 0
        row_total, key_position, on_delimiters, on_specials = (chunk @ features[:keys]).unbind(-1)
        totals["sink_share"] += chunk[:, skip:, 0].sum(-1)
        totals["previous_token"] += torch.diagonal(chunk, offset=start - 1, dim1=1, dim2=2).sum(-1)
        totals["delimiter_share"] += on_delimiters[:, skip:].sum(-1)
        totals["special_share"] += on_specials[:, skip:].sum(-1)
        if causal:  # every key is at or before its query: sum_k w (q - k) = q * sum_k w - sum_k w k
            totals["mean_distance"] += (positions[start:stop] * row_total - key_position).sum(-1)
        else:
            totals["mean_distance"] += (chunk * (positions[start:stop, None] - positions[None, :]).abs()).sum((-1, -2))
        plogp = scratch[:, : stop - start, :keys]
        totals["entropy"] -= torch.xlogy(chunk, chunk, out=plogp).sum((-1, -2))
    return {name: total / (n if name in ("mean_distance", "entropy") else n - 1) for name, total in totals.items()}


def compute(
    handle: ModelHandle, encoded: Encoded, with_logits: bool = False, scorers: Mapping[str, Scorer] | None = None
) -> AttentionResult:
    """Run the model once, summarising each layer (and scoring it with any extra scorers) as it is computed."""
    n = len(encoded.token_ids)
    pool = -(-n // MAX_MAP_SIDE)
    delimiters = delimiter_tokens(handle, encoded.token_ids, encoded.tokens)
    specials = special_tokens(handle, encoded.token_ids)
    masks = torch.as_tensor(delimiters), torch.as_tensor(specials)
    scorers = dict(scorers or {})
    scratch = torch.empty(handle.n_heads, min(n, QUERY_CHUNK), n)
    per_layer: dict[int, dict[str, torch.Tensor]] = {}
    maps: dict[int, torch.Tensor] = {}
    logits: dict[int, torch.Tensor] = {}

    def on_layer(layer: int, batch_weights: torch.Tensor, layer_logits) -> None:
        weights = batch_weights[0]
        summaries = head_summaries(weights, *masks, handle.is_causal, scratch)
        per_layer[layer] = summaries | {k: f(weights) for k, f in scorers.items()}
        maps[layer] = block_pool(weights, pool).half()
        if with_logits:
            logits[layer] = block_pool(layer_logits()[0], pool, reduce_keys="mean").half()

    with capturing(handle.model, on_layer):
        forward(handle, encoded.token_ids)
    if not per_layer:
        raise LmscopeError(f"Model '{handle.name}' reported no attention layers to lmscope.")
    layers = sorted(per_layer)
    stacked = {k: torch.stack([per_layer[i][k] for i in layers]).numpy().astype(np.float32) for k in per_layer[layers[0]]}
    return AttentionResult(
        model=handle.name,
        fingerprint=handle.fingerprint,
        token_ids=encoded.token_ids,
        tokens=encoded.tokens,
        is_causal=handle.is_causal,
        delimiters=delimiters,
        specials=specials,
        pool=pool,
        maps=torch.stack([maps[i] for i in layers]).numpy(),
        logits=torch.stack([logits[i] for i in layers]).numpy() if with_logits else None,
        scores={k: stacked.pop(k) for k in scorers},
        **stacked,
    )


def _attention(handle: ModelHandle, token_ids: list[int], logits: bool) -> AttentionResult:
    return compute(handle, from_ids(handle, token_ids), logits)


PROBE = CachedProbe(NAME, VERSION, _attention)


def run(handle: ModelHandle, text: str, cache: ResultCache, with_logits: bool = False) -> Cached[AttentionResult]:
    """Attention of the model on the text, from the disk cache when it has been computed before."""
    encoded = encode(handle, text, settings().max_tokens)
    if len(encoded.token_ids) < 2:
        raise LmscopeError("Attention needs at least two tokens: type a longer text.")
    return PROBE.cached(handle, cache, token_ids=encoded.token_ids.tolist(), logits=with_logits)
