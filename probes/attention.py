"""Attention probe: per-head summaries of every layer, and maps of every head (block-pooled when long).

The attention is computed a chunk of queries at a time (runtime.chunked) and every chunk is summarised as it is
computed (runtime.capture), so no (n, n) map of any layer is ever formed: memory grows with n times the chunk, and
a long text (tens of thousands of tokens) fits where its maps would not.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from probes.text import Encoded, encode, from_ids, long_limit
from results.attention import AttentionResult
from runtime.cache import Cached, ResultCache
from runtime.capture import Chunking, chunking
from runtime.chunked import CHUNK, HIDDEN
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe

NAME = "attention"
VERSION = 7
SUMMARIES = ("sink_share", "previous_token", "delimiter_share", "special_share", "mean_distance", "entropy")
# Maps longer than this are block-pooled for display; summaries always use the exact probabilities.
MAX_MAP_SIDE = 256
STRIDED_SUM = 8  # runs up to this long are summed by strided adds (texts up to 2,048 tokens)


_MARKS = set(string.punctuation) | {"…", "—", "–", "«", "»", "“", "”", "‘", "’"}


def special_tokens(handle: ModelHandle, token_ids: np.ndarray) -> np.ndarray:
    """Which tokens are special tokens ([SEP], <eos>, ...) after the first position (the first is the sink)."""
    special = set(handle.tokenizer.all_special_ids)
    return np.array([i > 0 and int(t) in special for i, t in enumerate(token_ids)], dtype=bool)


def delimiter_tokens(handle: ModelHandle, token_ids: np.ndarray, tokens: list[str]) -> np.ndarray:
    """Which tokens are delimiters: punctuation or whitespace-only text, or special tokens after the first."""
    text_marks = [(t != "" and t.strip() == "") or (t.strip() != "" and set(t.strip()) <= _MARKS) for t in tokens]
    return special_tokens(handle, token_ids) | np.array(text_marks, dtype=bool)


def _runs(maps: torch.Tensor, pool: int, dim: int, reduce: Callable, short_first: int = 0) -> torch.Tensor:
    """`reduce` over consecutive runs of `pool` entries along `dim` (-1 or -2): the first run `short_first` entries
    short (its other entries lie before the tensor), the last one as long as what is left. Views, no copies."""
    size = maps.shape[dim]
    opening = min(size, (pool - short_first) % pool)
    body = (size - opening) // pool * pool
    parts = []
    if opening:
        parts.append(reduce(maps.narrow(dim, 0, opening), dim, keepdim=True))
    if body:
        runs = maps.narrow(dim, opening, body).unflatten(dim, (body // pool, pool))
        if reduce is torch.sum and pool <= STRIDED_SUM:  # a few strided adds beat a reduction over a short axis
            total = runs.select(dim, 0).clone()
            for i in range(1, pool):
                total += runs.select(dim, i)
            parts.append(total)
        else:
            parts.append(reduce(runs, dim))
    if opening + body < size:
        parts.append(reduce(maps.narrow(dim, opening + body, size - opening - body), dim, keepdim=True))
    return torch.cat(parts, dim) if len(parts) > 1 else parts[0]


def block_pool(maps: torch.Tensor, pool: int, reduce_keys: str = "sum", lead: int = 0) -> torch.Tensor:
    """Pool (..., queries, keys) maps into pool x pool blocks: over a block's keys take the sum (probabilities:
    rows still sum to 1) or the NaN-ignoring mean (logits, NaN where masked), then average over its queries (the
    last block may be short). `lead`: the keys start `lead` places into their first block."""
    if pool == 1:
        return maps
    by_keys = _runs(maps, pool, -1, torch.sum if reduce_keys == "sum" else torch.nanmean, lead)
    return _runs(by_keys, pool, -2, torch.mean if reduce_keys == "sum" else torch.nanmean)


@dataclass(frozen=True)
class PairScore:
    """An extra per-head score: the mean, over the pairs (queries[i], keys[i]) of absolute positions, of the weight
    query i puts on key i (the induction score is one: heads.induction_score)."""

    queries: np.ndarray
    keys: np.ndarray


class _Layer:
    """One layer's summaries, extra scores and pooled maps, accumulated a chunk of queries at a time."""

    def __init__(
        self,
        n_heads: int,
        n: int,
        features: torch.Tensor,
        causal: bool,
        pool: int,
        scores: Mapping[str, PairScore],
        with_logits: bool,
    ) -> None:
        cells = -(-n // pool)
        self.n, self.features, self.causal, self.pool, self.with_logits = n, features, causal, pool, with_logits
        self.totals = {name: torch.zeros(n_heads, dtype=torch.float64) for name in SUMMARIES}
        self.pair_scores = dict(scores)
        self.extra = {name: torch.zeros(n_heads, dtype=torch.float64) for name in scores}
        self.maps = torch.zeros(n_heads, cells, cells, dtype=torch.float16)  # as the result keeps them
        self.logits = torch.full((n_heads, cells, cells) if with_logits else (0,), float("nan"))

    def add(self, start: int, first: int, weights: torch.Tensor, scores: torch.Tensor) -> None:
        """Queries start.. of this layer: their (heads, queries, keys) probabilities and scores (runtime.chunked's),
        keys from `first`."""
        stop, last = start + weights.shape[1], first + weights.shape[2]
        positions = self.features[:, 1]
        skip = 1 if start == 0 else 0  # summaries of "later" queries leave out query 0
        # One matrix product gives each query's total weight, weighted key position, and weight on delimiters and
        # on special tokens: one pass over the chunk instead of four.
        row_total, key_position, on_delimiters, on_specials = (weights @ self.features[first:last]).unbind(-1)
        if first == 0:
            self.totals["sink_share"] += weights[:, skip:, 0].sum(-1)
        self.totals["previous_token"] += torch.diagonal(weights, offset=start - 1 - first, dim1=1, dim2=2).sum(-1)
        self.totals["delimiter_share"] += on_delimiters[:, skip:].sum(-1)
        self.totals["special_share"] += on_specials[:, skip:].sum(-1)
        if self.causal:  # every key is at or before its query: sum_k w (q - k) = q * sum_k w - sum_k w k
            self.totals["mean_distance"] += (positions[start:stop] * row_total - key_position).sum(-1)
        else:
            distance = (positions[start:stop, None] - positions[None, first:last]).abs()
            self.totals["mean_distance"] += (weights * distance).sum((-1, -2))
        # Entropy without a logarithm per key: -sum p log p = logsumexp(s) - sum p s, and logsumexp(s) = max s -
        # log max p (the softmax's largest probability is exp(max s - logsumexp s)); hidden keys add 0 x HIDDEN = 0.
        n_queries, n_keys = weights.shape[1:]
        weighted = torch.bmm(weights.reshape(-1, 1, n_keys), scores.reshape(-1, n_keys, 1)).reshape(-1, n_queries)
        self.totals["entropy"] += (scores.amax(-1) - weights.amax(-1).log() - weighted).sum(-1)
        for name, pairs in self.pair_scores.items():
            inside = (pairs.queries >= start) & (pairs.queries < stop) & (pairs.keys >= first) & (pairs.keys < last)
            rows = torch.as_tensor(pairs.queries[inside] - start)
            self.extra[name] += weights[:, rows, torch.as_tensor(pairs.keys[inside] - first)].sum(-1)
        # Keys before `first` carry no weight (and no score): the first cell of keys may start part-way.
        cells, lead = slice(start // self.pool, -(-stop // self.pool)), first % self.pool
        pooled = block_pool(weights, self.pool, lead=lead)
        cols = slice(first // self.pool, first // self.pool + pooled.shape[-1])
        self.maps[:, cells, cols] = pooled
        if self.with_logits:
            visible = scores.masked_fill(scores == HIDDEN, float("nan"))
            self.logits[:, cells, cols] = block_pool(visible, self.pool, reduce_keys="mean", lead=lead)

    def summaries(self) -> dict[str, torch.Tensor]:
        """Each summary per head: means over the queries (1..n-1 for the shares)."""
        n = self.n
        return {
            name: total / (n if name in ("mean_distance", "entropy") else n - 1) for name, total in self.totals.items()
        }


def query_chunk(pool: int) -> int:
    """Queries per chunk: about CHUNK, a whole number of map cells."""
    return max(pool, CHUNK // pool * pool)


def compute(
    handle: ModelHandle,
    encoded: Encoded,
    with_logits: bool = False,
    scores: Mapping[str, PairScore] | None = None,
) -> AttentionResult:
    """Run the model once with its attention computed a chunk of queries at a time (runtime.chunked), summarising
    each chunk of each layer (and scoring it with any extra `scores`) as it is computed: no (n, n) map is formed."""
    n = len(encoded.token_ids)
    pool = -(-n // MAX_MAP_SIDE)
    delimiters = delimiter_tokens(handle, encoded.token_ids, encoded.tokens)
    specials = special_tokens(handle, encoded.token_ids)
    features = torch.stack(
        [
            torch.ones(n),
            torch.arange(n, dtype=torch.float32),
            torch.as_tensor(delimiters, dtype=torch.float32),
            torch.as_tensor(specials, dtype=torch.float32),
        ],
        dim=1,
    )
    extra = dict(scores or {})
    layers: dict[int, _Layer] = {}

    def on_chunk(layer: int, start: int, first: int, weights: torch.Tensor, chunk_scores: torch.Tensor) -> None:
        if layer not in layers:
            layers[layer] = _Layer(weights.shape[1], n, features, handle.is_causal, pool, extra, with_logits)
        layers[layer].add(start, first, weights[0], chunk_scores[0])

    with chunking(handle.model, Chunking(None, query_chunk(pool)), on_chunk=on_chunk):
        forward(handle, encoded.token_ids)
    if not layers:
        raise LmscopeError(f"Model '{handle.name}' reported no attention layers to lmscope.")
    order = [layers[i] for i in sorted(layers)]
    summaries = [layer.summaries() for layer in order]
    stacked = {k: torch.stack([s[k] for s in summaries]).numpy().astype(np.float32) for k in SUMMARIES}
    return AttentionResult(
        model=handle.name,
        fingerprint=handle.fingerprint,
        token_ids=encoded.token_ids,
        tokens=encoded.tokens,
        is_causal=handle.is_causal,
        delimiters=delimiters,
        specials=specials,
        pool=pool,
        maps=torch.stack([layer.maps for layer in order]).numpy(),
        logits=torch.stack([layer.logits for layer in order]).half().numpy() if with_logits else None,
        scores={
            name: (torch.stack([layer.extra[name] for layer in order]) / len(pairs.queries)).numpy().astype(np.float32)
            for name, pairs in extra.items()
        },
        **stacked,
    )


def _attention(handle: ModelHandle, token_ids: list[int], logits: bool) -> AttentionResult:
    return compute(handle, from_ids(handle, token_ids), logits)


PROBE = CachedProbe(NAME, VERSION, _attention)


def run(handle: ModelHandle, text: str, cache: ResultCache, with_logits: bool = False) -> Cached[AttentionResult]:
    """Attention of the model on the text (up to the model's context: `long_limit`), from the disk cache when it has
    been computed before."""
    encoded = encode(handle, text, long_limit(handle))
    if len(encoded.token_ids) < 2:
        raise LmscopeError("Attention needs at least two tokens: type a longer text.")
    return PROBE.cached(handle, cache, token_ids=encoded.token_ids.tolist(), logits=with_logits)
