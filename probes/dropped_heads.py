"""Dropping attention heads (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"; Voita et al. 2019):
the loss of a text with one head zeroed at a time, and with heads removed together, least important first or in a
random order.

A head is dropped by zeroing its slice of the input of its layer's attention output projection (o_proj, out_proj,
c_proj): that input is the query heads' outputs side by side, n_heads * head_dim wide (with grouped key/value
heads too), so head h is columns [h * head_dim, (h + 1) * head_dim). The zeroing is a forward pre-hook of this call
only (`runtime.hooks.observing`): the shared model is never edited. Several choices of dropped heads run as one
batch of copies of the text, each row with its own heads dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from probes import pruning
from probes.batches import Progress
from probes.nll import token_nll
from probes.text import encode
from results.dropped_heads import DroppedHeads, removal_order
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.hooks import PreCallback, observing
from runtime.probe import CachedProbe
from runtime.settings import settings

NAME = "dropped_heads"
VERSION = 1
POINTS = 21  # numbers of heads removed on the curves: 0%, 5%, ..., 100% of them
DEFAULT_SEEDS = 5
_MAX_BATCH = 8
_LOGITS_BUDGET = 2**26  # vocabulary logits held at once in one batch (Gemma's vocabulary has 262k entries)


def out_projections(handle: ModelHandle) -> list[nn.Module]:
    """Each layer's attention output projection, in layer order; a plain error for an encoder or an unknown model."""
    if not handle.is_causal:
        raise LmscopeError(
            f"'{handle.name}' is an encoder: it predicts no next token, so there is no loss to lose by dropping heads. "
            "Pick a decoder."
        )
    found = pruning.linear_weights(handle, ("o",))
    if [m.layer for m in found] != list(range(handle.n_layers)):
        raise LmscopeError(f"lmscope expects one attention output projection in each block of '{handle.name}'.")
    return [m.module for m in found]


@contextmanager
def dropping(handle: ModelHandle, dropped: np.ndarray) -> Iterator[None]:
    """Within the block, and only in this call's context, row i of a batch runs with the heads marked in
    dropped[i] ((rows, layers, heads) bool) zeroed."""
    dropped = np.asarray(dropped, dtype=bool)
    if dropped.shape[1:] != (handle.n_layers, handle.n_heads):
        raise ValueError(f"a mask of dropped heads is (rows, {handle.n_layers}, {handle.n_heads}), not {dropped.shape}")

    def hook(layer: int) -> PreCallback:
        keep = torch.as_tensor(~dropped[:, layer])  # (rows, heads)

        def call(module: nn.Module, args: tuple) -> tuple:
            heads = args[0]  # (rows, tokens, n_heads * head_dim)
            width = heads.shape[-1]
            if width % handle.n_heads or heads.shape[0] != len(keep):
                raise LmscopeError(
                    f"lmscope cannot split the attention output ({tuple(heads.shape)}) of '{handle.name}' into "
                    f"{handle.n_heads} heads for {len(keep)} rows."
                )
            columns = keep.to(heads.device, heads.dtype).repeat_interleave(width // handle.n_heads, dim=1)
            return (heads * columns[:, None, :], *args[1:])

        return call

    projections = out_projections(handle)
    layers = np.flatnonzero(dropped.any(axis=(0, 2)))
    with observing(pre={projections[i]: hook(int(i)) for i in layers}):
        yield


def _batch_rows(handle: ModelHandle, n_tokens: int) -> int:
    return max(1, min(_MAX_BATCH, _LOGITS_BUDGET // (n_tokens * int(handle.text_config.vocab_size))))


def masked_nll(
    handle: ModelHandle, token_ids: np.ndarray, dropped: np.ndarray, on_batch: Callable[[int], None] | None = None
) -> np.ndarray:
    """Mean per-token NLL of the text for each mask of dropped heads ((rows, layers, heads) bool), run in batches;
    on_batch(rows) after each."""
    step = _batch_rows(handle, len(token_ids))
    nll = []
    for start in range(0, len(dropped), step):
        part = dropped[start : start + step]
        with dropping(handle, part):
            nll.append(token_nll(handle, np.repeat(np.asarray(token_ids)[None], len(part), axis=0)).mean(axis=1))
        if on_batch is not None:
            on_batch(len(part))
    return np.concatenate(nll).astype(np.float64)


def removal_counts(n_heads: int, points: int = POINTS) -> np.ndarray:
    """Numbers of heads removed on the curves: evenly spaced from 0 to all of them, at most `points`."""
    return np.unique(np.round(np.linspace(0, n_heads, points)).astype(np.int64))


def passes(handle: ModelHandle, seeds: int) -> int:
    """Copies of the text run through the model (in batches): once whole, once per head, once per point inside each
    curve, once with every head dropped."""
    n = handle.n_layers * handle.n_heads
    return 1 + n + (1 + seeds) * (len(removal_counts(n)) - 2) + 1


def _prefixes(order: np.ndarray, counts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(counts, layers, heads) masks: the first counts[i] heads of the order dropped."""
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return (ranks[None, :] < counts[:, None]).reshape(len(counts), *shape)


def compute(handle: ModelHandle, token_ids: list[int], seeds: int, on_progress: Progress | None = None) -> DroppedHeads:
    """The loss with each head dropped alone, then with heads dropped cumulatively by importance and in `seeds`
    random orders (seeds 0, 1, ...)."""
    ids = np.asarray(token_ids, dtype=np.int64)
    shape = (handle.n_layers, handle.n_heads)
    n = shape[0] * shape[1]
    removed = removal_counts(n)
    inner = removed[1:-1]  # none removed is the base loss; all removed is the same for every order, run once
    total = passes(handle, seeds)
    done = [0]

    def advance(rows: int) -> None:
        done[0] += rows
        if on_progress is not None:
            on_progress(done[0], total)

    base = float(token_nll(handle, ids).mean())
    advance(1)
    delta = (masked_nll(handle, ids, np.eye(n, dtype=bool).reshape(n, *shape), advance) - base).reshape(shape)
    orders = [removal_order(delta)] + [np.random.default_rng(seed).permutation(n) for seed in range(seeds)]
    masks = np.concatenate([*(_prefixes(order, inner, shape) for order in orders), np.ones((1, *shape), dtype=bool)])
    nll = masked_nll(handle, ids, masks, advance)
    curves = np.column_stack(
        [np.full(len(orders), base), nll[:-1].reshape(len(orders), len(inner)), np.full(len(orders), nll[-1])]
    )
    return DroppedHeads(
        model=handle.name,
        fingerprint=handle.fingerprint,
        n_tokens=len(ids),
        nll_base=base,
        delta=delta,
        removed=removed,
        nll_by_importance=curves[0],
        nll_random=curves[1:],
    )


PROBE = CachedProbe(NAME, VERSION, compute)


def run(
    handle: ModelHandle, text: str, cache: ResultCache, seeds: int = DEFAULT_SEEDS, on_progress: Progress | None = None
) -> Cached[DroppedHeads]:
    """Head ablation of the text (cut to the token limit) on a decoder, from the disk cache when computed before."""
    limits.check_range(seeds, 1, limits.HEAD_DROP_SEEDS, "number of random orders")
    out_projections(handle)  # an encoder gets its message before any work
    ids = encode(handle, text, settings().max_tokens).token_ids.tolist()
    return PROBE.cached(handle, cache, on_progress, token_ids=ids, seeds=seeds)
