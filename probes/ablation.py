"""The causal test of massive activations: remove them where they appear and measure the loss of the text.

Sun et al. (2024) set the few massive activations to zero at the layer where they first appear and the model
breaks, while setting them to their mean over many sentences leaves it intact; zeroing as many random
activations changes little. The same three edits, on any decoder. Where later blocks rebuild a massive feature
(Gemma 3 grows its own over many layers), editing it only where it first appears is not enough, so the edit can
also be made at every layer where the entry is massive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from probes import activations, corpus
from probes.batches import Progress
from probes.nll import token_nll
from probes.residual import hooked_blocks
from probes.text import encode
from results.activations import Ablation, Massive, Thresholds
from runtime.cache import Cached, ResultCache
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe
from runtime.settings import settings

NAME = "ablation"
VERSION = 2
RANDOM_DRAWS = 5


def edited_nll(
    handle: ModelHandle,
    token_ids: np.ndarray,
    layers: np.ndarray,
    positions: np.ndarray,
    dims: np.ndarray,
    values: np.ndarray,
) -> np.ndarray:
    """Per-token NLL with entry (positions[i], dims[i]) of block layers[i]'s output set to values[i]; the blocks
    after it see the edit."""

    def edit(layer: int, hidden: torch.Tensor) -> torch.Tensor | None:
        here = np.flatnonzero(layers == layer)
        if not len(here):
            return None
        edited = hidden.clone()
        where = (
            torch.as_tensor(positions[here], device=hidden.device),
            torch.as_tensor(dims[here], device=hidden.device),
        )
        edited[0, where[0], where[1]] = torch.as_tensor(values[here], dtype=hidden.dtype, device=hidden.device)
        return edited

    with hooked_blocks(handle, edit):
        return token_nll(handle, token_ids)


def first_appearances(found: list[Massive]) -> list[Massive]:
    """Each massive (token, feature) entry once: at the first layer where it is massive."""
    first: dict[tuple[int, int], Massive] = {}
    for entry in sorted(found, key=lambda m: m.layer):
        first.setdefault((entry.position, entry.dim), entry)
    return list(first.values())


def random_entries(
    rng: np.random.Generator, layers: np.ndarray, n_tokens: int, hidden_size: int, avoid: set[tuple[int, int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """For each of `layers`, a (position, dim) entry drawn uniformly; all distinct, none in `avoid` (layer, position,
    dim). Returned as positions and dims aligned with `layers`."""
    chosen: list[tuple[int, int, int]] = []
    for layer in layers.tolist():
        entry = (layer, int(rng.integers(n_tokens)), int(rng.integers(hidden_size)))
        while entry in avoid or entry in chosen:
            entry = (layer, int(rng.integers(n_tokens)), int(rng.integers(hidden_size)))
        chosen.append(entry)
    return np.array([e[1] for e in chosen], dtype=np.int64), np.array([e[2] for e in chosen], dtype=np.int64)


def ablate(
    handle: ModelHandle,
    cache: ResultCache,
    token_ids: list[int],
    thresholds: list[float],
    sentences: list[str],
    everywhere: bool,
    on_progress: Progress,
) -> Ablation:
    """Zero each of the text's massive activations at the first layer where it is massive, or at every such layer
    (then set them to their mean over the sentences instead, then zero as many random entries at the same layers),
    measuring the loss each time (thresholds: min_magnitude, min_ratio). The activations of the text and of the
    sentences are the activation probe's cached results."""
    result = activations.PROBE.cached(handle, cache, token_ids=token_ids).value
    minimum = Thresholds(*thresholds)
    found = activations.massive(result, minimum)
    entries = found if everywhere else first_appearances(found)
    layers = np.array([m.layer for m in entries], dtype=np.int64)
    positions = np.array([m.position for m in entries], dtype=np.int64)
    dims = np.array([m.dim for m in entries], dtype=np.int64)
    values = np.array([m.value for m in entries], dtype=np.float32)
    ids = result.token_ids
    base = token_nll(handle, ids)
    means, n_without_mean = values, 0
    zeroed, mean, random = base, base, np.stack([base] * RANDOM_DRAWS)
    if entries:
        table = activations.massive_means(activations.corpus_run(handle, sentences, cache, on_progress).value, minimum)
        keys = [(m.layer, m.dim, int(result.kinds[m.position])) for m in entries]
        means = np.array([table.get(key, m.value) for key, m in zip(keys, entries)], dtype=np.float32)
        n_without_mean = sum(key not in table for key in keys)
        zeroed = edited_nll(handle, ids, layers, positions, dims, np.zeros_like(values))
        mean = edited_nll(handle, ids, layers, positions, dims, means)
        rng = np.random.default_rng(0)
        avoid = set(zip(layers.tolist(), positions.tolist(), dims.tolist()))
        zeros = np.zeros_like(values)
        random = np.stack(
            [
                edited_nll(
                    handle, ids, layers, *random_entries(rng, layers, len(ids), result.hidden_size, avoid), zeros
                )
                for _ in range(RANDOM_DRAWS)
            ]
        )
    return Ablation(
        model=handle.name,
        tokens=result.tokens,
        min_magnitude=minimum.min_magnitude,
        min_ratio=minimum.min_ratio,
        everywhere=everywhere,
        layers=layers,
        positions=positions,
        dims=dims,
        values=values,
        means=means,
        n_without_mean=n_without_mean,
        nll_base=base,
        nll_zeroed=zeroed,
        nll_mean=mean,
        nll_random=random,
    )


PROBE = CachedProbe(NAME, VERSION, ablate, depends=(activations.PROBE, activations.CORPUS))


def run(
    handle: ModelHandle,
    text: str,
    thresholds: Thresholds,
    cache: ResultCache,
    sentences: Sequence[str] | None = None,
    everywhere: bool = False,
    on_progress: Progress | None = None,
) -> Cached[Ablation]:
    """Ablation of the text's massive activations (see `ablate`; the means come from `sentences`, by default the
    bundled corpus), from the activation probe's cached result."""
    token_ids = encode(handle, text, settings().max_tokens).token_ids.tolist()
    chosen = list(corpus.sentences() if sentences is None else sentences)
    limits = [thresholds.min_magnitude, thresholds.min_ratio]
    return PROBE.cached(
        handle, cache, on_progress, token_ids=token_ids, thresholds=limits, sentences=chosen, everywhere=everywhere
    )
