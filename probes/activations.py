"""Massive activations (Sun et al. 2024): a few residual-stream values thousands of times the median magnitude.

Found automatically on any model: per block output, the largest-magnitude entries and the median magnitude,
computed inside forward hooks so that a long text never holds every layer at once, with the attention computed a
chunk of queries at a time (runtime.chunked), so that a text may be as long as the model's context. Over the
bundled corpus, which dimensions are massive and on which kinds of token (the first token, the first delimiter, ...).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from probes.attention import delimiter_tokens
from probes.batches import LengthGroups, Progress, batches, grouped
from probes.residual import block_output, hooked_blocks
from probes.text import Encoded, encode, from_ids, long_limit, token_strings
from results.activations import KINDS, ActivationResult, CorpusActivations, LayerActivations, Massive, Thresholds
from runtime.cache import Cached, ResultCache
from runtime.capture import Chunking, chunking
from runtime.chunked import CHUNK
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.placement import host
from runtime.probe import CachedProbe
from runtime.settings import settings

NAME = "activations"
LAYER_NAME = "activations-layer"
CORPUS_NAME = "activations-corpus"
VERSION = 3
TOP = 64  # largest-magnitude entries kept per layer of a text
CORPUS_TOP = 8  # ... per layer of each corpus sentence


def token_kinds(handle: ModelHandle, token_ids: np.ndarray, tokens: list[str]) -> np.ndarray:
    """Index into KINDS per token: position 0, the first delimiter after it, later delimiters, other tokens."""
    delimiters = delimiter_tokens(handle, token_ids, tokens)
    kinds = np.full(len(tokens), KINDS.index("other token"), dtype=np.int8)
    kinds[delimiters] = KINDS.index("later delimiter")
    later = np.flatnonzero(delimiters[1:])
    if len(later):
        kinds[later[0] + 1] = KINDS.index("first delimiter")
    kinds[0] = KINDS.index("first token")
    return kinds


def top_entries(hidden: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k largest-magnitude entries of (..., tokens, features) states: positions, dims and signed values,
    largest first, per leading index."""
    flat = hidden.flatten(-2)
    k = min(k, flat.shape[-1])
    index = flat.abs().topk(k, dim=-1).indices
    width = hidden.shape[-1]
    return (index // width).numpy(), (index % width).numpy(), flat.gather(-1, index).numpy()


def massive(result: ActivationResult, thresholds: Thresholds) -> list[Massive]:
    """Every stored entry that counts as massive, layer by layer, largest first.

    Only the TOP largest entries per layer are stored, so at most TOP per layer are found.
    """
    found = []
    for layer in range(result.n_layers):
        values = result.top_values[layer]
        for j in np.flatnonzero(thresholds.passes(np.abs(values), result.median_abs[layer])):
            position = int(result.top_positions[layer, j])
            found.append(
                Massive(
                    layer=layer,
                    position=position,
                    token=result.tokens[position],
                    kind=KINDS[result.kinds[position]],
                    dim=int(result.top_dims[layer, j]),
                    value=float(values[j]),
                    ratio=float(abs(values[j]) / result.median_abs[layer]),
                )
            )
    return found


def compute(handle: ModelHandle, encoded: Encoded) -> ActivationResult:
    """Run the model once, summarising each block's output as it is computed (attention in chunks of queries)."""
    per_layer: dict[int, dict[str, np.ndarray]] = {}

    def summarise(layer: int, hidden: torch.Tensor) -> None:
        h = host(hidden[0])
        magnitude = h.abs()
        positions, dims, values = top_entries(h, TOP)
        per_layer[layer] = {
            "max_abs": magnitude.max().numpy(),
            "median_abs": np.median(magnitude.numpy()),
            "top_positions": positions,
            "top_dims": dims,
            "top_values": values,
            "token_peak": magnitude.amax(dim=1).numpy(),
            "dim_peak": magnitude.amax(dim=0).numpy(),
        }

    with hooked_blocks(handle, summarise), chunking(handle.model, Chunking(None, CHUNK)):
        forward(handle, encoded.token_ids)
    layers = sorted(per_layer)
    return ActivationResult(
        model=handle.name,
        fingerprint=handle.fingerprint,
        token_ids=encoded.token_ids,
        tokens=encoded.tokens,
        kinds=token_kinds(handle, encoded.token_ids, encoded.tokens),
        **{name: np.stack([per_layer[i][name] for i in layers]) for name in per_layer[layers[0]]},
    )


def _activations(handle: ModelHandle, token_ids: list[int]) -> ActivationResult:
    return compute(handle, from_ids(handle, token_ids))


def _layer(handle: ModelHandle, token_ids: list[int], layer: int) -> LayerActivations:
    ids = from_ids(handle, token_ids)
    return LayerActivations(handle.name, layer, ids.tokens, block_output(handle, ids.token_ids, layer))


PROBE = CachedProbe(NAME, VERSION, _activations)
LAYER = CachedProbe(LAYER_NAME, VERSION, _layer)


def run(handle: ModelHandle, text: str, cache: ResultCache) -> Cached[ActivationResult]:
    """Magnitudes of every block's output on the text (up to the model's context: `long_limit`), from the disk
    cache when computed before."""
    return PROBE.cached(handle, cache, token_ids=encode(handle, text, long_limit(handle)).token_ids.tolist())


def layer_run(handle: ModelHandle, text: str, layer: int, cache: ResultCache) -> Cached[LayerActivations]:
    """Every value of one block's output on the text (the blocks after it are not run), cached; of a decoder's
    longer text, on its first LMSCOPE_MAX_TOKENS tokens (which never see the later ones)."""
    encoded = encode(handle, text, long_limit(handle) if handle.is_causal else settings().max_tokens)
    token_ids = encoded.token_ids[: settings().max_tokens].tolist()
    return LAYER.cached(handle, cache, token_ids=token_ids, layer=layer)


def massive_counts(result: CorpusActivations, thresholds: Thresholds) -> np.ndarray:
    """(layers, features, KINDS): in how many sentences the feature is massive on that kind of token
    (a sentence counts once per kind even if several of its tokens of that kind qualify)."""
    hit = thresholds.passes(np.abs(result.values), result.median_abs[..., None])
    seen = np.zeros((result.n_sentences, result.n_layers, result.hidden_size, len(KINDS)), dtype=bool)
    s, layer, j = np.nonzero(hit)
    seen[s, layer, result.dims[s, layer, j], result.kinds[s, layer, j]] = True
    return seen.sum(axis=0)


def massive_means(result: CorpusActivations, thresholds: Thresholds) -> dict[tuple[int, int, int], float]:
    """(layer, feature, kind) -> mean signed value of its massive entries over the sentences."""
    hit = thresholds.passes(np.abs(result.values), result.median_abs[..., None])
    groups: dict[tuple[int, int, int], list[float]] = defaultdict(list)
    for s, layer, j in zip(*np.nonzero(hit)):
        groups[(int(layer), int(result.dims[s, layer, j]), int(result.kinds[s, layer, j]))].append(
            float(result.values[s, layer, j])
        )
    return {group: float(np.mean(values)) for group, values in groups.items()}


def _corpus(handle: ModelHandle, groups: LengthGroups, on_progress: Progress) -> CorpusActivations:
    rows: list[dict[str, np.ndarray]] = []
    current: dict[int, torch.Tensor] = {}

    def keep(layer: int, hidden: torch.Tensor) -> None:
        current[layer] = host(hidden)

    with hooked_blocks(handle, keep):
        for batch in batches(dict(groups), on_progress):
            forward(handle, batch)
            states = torch.stack([current[i] for i in sorted(current)], dim=1)  # (batch, layers, n, d)
            positions, dims, values = top_entries(states, CORPUS_TOP)
            kinds = np.stack([token_kinds(handle, ids, token_strings(handle, ids)) for ids in batch])
            rows.append(
                {
                    "median_abs": np.median(states.abs().flatten(-2).numpy(), axis=-1),
                    "dims": dims,
                    "values": values,
                    "kinds": np.take_along_axis(kinds[:, None, :], positions, axis=-1),
                }
            )
    return CorpusActivations(
        model=handle.name,
        fingerprint=handle.fingerprint,
        n_sentences=sum(len(group) for _, group in groups),
        hidden_size=handle.text_config.hidden_size,
        **{name: np.concatenate([row[name] for row in rows]) for name in rows[0]},
    )


CORPUS = CachedProbe(CORPUS_NAME, VERSION, _corpus)


def corpus_run(
    handle: ModelHandle, sentences: Sequence[str], cache: ResultCache, on_progress: Progress | None = None
) -> Cached[CorpusActivations]:
    """The largest entries of every block's output on each sentence, run in batches of equal length, cached."""
    return CORPUS.cached(handle, cache, on_progress, groups=grouped(handle, sentences))
