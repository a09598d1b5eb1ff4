"""Compression of the block matrices: magnitude pruning, 2:4 sparsity, round-to-nearest quantization and low rank.

The lecture's claims, measured on the chosen model: pruning has had limited success (SparseGPT stops near 50%
sparsity) while quantization works better, and low rank is everywhere (LoRA: W = W0 + BA). Every method edits a
copy of the model's q, k, v, o, gate, up and down matrices (the ones chosen); the loaded model is never touched.

Storage is counted in bytes per weight against a dense fp16 baseline of 2 bytes (see `bytes_per_weight`). The
compression is simulated in the model's own dtype: it shows the loss each format would give, not its speed.
"""

from __future__ import annotations

import copy
import gc
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from probes import spectra
from probes.batches import BATCH_SIZE, LengthGroups, grouped
from probes.nll import token_nll
from probes.text import encode
from results.pruning import DENSE_BYTES, KINDS, MAX_BITS, Compression, RankSweep, Tradeoff, TradeoffPoint
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.placement import host
from runtime.probe import CachedProbe
from runtime.settings import settings

NAME = "pruning"
VERSION = 3
# (settings done, settings in all) -> None
Progress = Callable[[int, int], None]

# Vocabulary logits held at once when scoring sentences in batches (Gemma's vocabulary has 262k entries).
_LOGITS_BUDGET = 2**26


@dataclass(frozen=True)
class Matrix:
    """One linear layer of a block: where it is, what kind it is, and the module holding its weight."""

    layer: int
    kind: str
    name: str  # the module name, e.g. "model.layers.0.self_attn.q_proj"
    module: nn.Module  # an nn.Linear, or GPT-2's Conv1D

    @property
    def weight(self) -> nn.Parameter:
        return self.module.get_parameter("weight")

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.weight.shape
        return rows, cols


def linear_weights(handle: ModelHandle, kinds: Sequence[str] = KINDS) -> list[Matrix]:
    """The block matrices of the given kinds (as spectra.block_weights names them), layer by layer, in module order."""
    found = [
        Matrix(ref.layer, ref.kind, ref.name, handle.model.get_submodule(ref.name))
        for ref in spectra.block_weights(handle)
        if ref.layer >= 0 and ref.kind in kinds
    ]
    if not found:
        raise LmscopeError(
            f"lmscope found no {', '.join(kinds)} matrices in the blocks of '{handle.name}': it recognises "
            "q_proj/k_proj/v_proj/o_proj/gate_proj/up_proj/down_proj and BERT's query/key/value/dense layers."
        )
    return found


def full_rank(handle: ModelHandle, kinds: Sequence[str] = KINDS) -> int:
    """The smallest rank that leaves every chosen matrix unchanged: the largest min(rows, columns)."""
    return max(min(m.shape) for m in linear_weights(handle, kinds))


def _n_pruned(n: int, sparsity: float) -> int:
    return int(math.floor(sparsity * n + 0.5))


def _prune(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    n_zero = _n_pruned(weight.numel(), sparsity)
    if n_zero == 0:
        return weight
    flat = weight.detach().flatten().clone()
    flat[torch.topk(flat.abs(), n_zero, largest=False, sorted=False).indices] = 0
    return flat.view_as(weight)


def _prune_2_4(weight: torch.Tensor) -> torch.Tensor:
    rows, cols = weight.shape
    pad = -cols % 4
    # A short last group keeps its two largest; padding gets magnitude -1 so it is never chosen over a weight.
    magnitude = nn.functional.pad(weight.detach().abs().float(), (0, pad), value=-1.0).view(rows, -1, 4)
    keep = torch.zeros_like(magnitude, dtype=torch.bool)
    keep.scatter_(2, torch.topk(magnitude, 2, dim=2).indices, True)
    keep = keep.view(rows, -1)[:, :cols]
    return torch.where(keep, weight.detach(), torch.zeros((), dtype=weight.dtype))


def _quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    if bits >= MAX_BITS:
        return weight
    levels = 2 ** (bits - 1) - 1
    w = weight.detach().float()
    scale = w.abs().amax(dim=1, keepdim=True) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row stays zero
    return (torch.round(w / scale).clamp(-levels, levels) * scale).to(weight.dtype)


def _svd(weight: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The leading `keep` singular triplets (U, S, Vh), computed in float32."""
    u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    return u[:, :keep].clone(), s[:keep].clone(), vh[:keep].clone()


def _truncate(factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], rank: int, dtype: torch.dtype) -> torch.Tensor:
    u, s, vh = factors
    return ((u[:, :rank].contiguous() * s[:rank]) @ vh[:rank]).to(dtype)


def compress_weight(weight: torch.Tensor, compression: Compression) -> torch.Tensor:
    """The compressed version of one (out x in) weight matrix; identity settings return the input itself.

    prune: zero the round(sparsity x size) weights of smallest magnitude over the whole matrix. prune-2:4: in
    every group of 4 consecutive weights along the input dimension keep the 2 of largest magnitude. quantize:
    symmetric round-to-nearest with one scale per output row, max|row| / (2^(b-1) - 1); 16 bits is the fp16
    baseline and returns the input. rank: truncated SVD; a rank >= min(shape) returns the input.
    """
    compression.check()
    if weight.ndim != 2:
        raise ValueError(f"compress_weight takes a matrix, not a tensor of shape {tuple(weight.shape)}")
    if compression.method == "prune":
        return _prune(weight, float(compression.amount))
    if compression.method == "prune-2:4":
        return _prune_2_4(weight)
    if compression.method == "quantize":
        return _quantize(weight, int(compression.amount))
    rank = int(compression.amount)
    if rank >= min(weight.shape):
        return weight
    return _truncate(_svd(weight, rank), rank, weight.dtype)


def _matrix_bytes(compression: Compression, rows: int, cols: int) -> float:
    size = rows * cols
    if compression.method == "prune":
        kept = size - _n_pruned(size, float(compression.amount))
        return DENSE_BYTES * kept + size / 8
    if compression.method == "prune-2:4":
        kept = rows * (2 * (cols // 4) + min(2, cols % 4))
        return (DENSE_BYTES + 2 / 8) * kept
    if compression.method == "quantize":
        bits = int(compression.amount)
        return DENSE_BYTES * size if bits >= MAX_BITS else size * bits / 8 + DENSE_BYTES * rows
    rank = int(compression.amount)
    return DENSE_BYTES * min(rank * (rows + cols), size)


def bytes_per_weight(compression: Compression, shapes: Sequence[tuple[int, int]]) -> float:
    """Storage of the compressed matrices ((rows, columns) each) in bytes per weight, all weights pooled.

    Formats: dense fp16 = 2 bytes. prune: the kept values in fp16 plus a 1-bit mask per weight. prune-2:4: the
    kept values in fp16 plus a 2-bit index per kept value (1.125). quantize, b bits: b/8 per weight plus one fp16
    scale per row; 16 bits is the dense baseline (2). rank r: the factors' r x (rows + columns) fp16 values, or the
    dense matrix where that is smaller (always at r >= min(rows, columns), where the matrix is unchanged).
    """
    compression.check()
    if not shapes:
        raise LmscopeError("There are no matrices to compress.")
    total = sum(_matrix_bytes(compression, int(m), int(n)) for m, n in shapes)
    return total / sum(int(m) * int(n) for m, n in shapes)


@contextmanager
def model_copy(handle: ModelHandle, suffix: str) -> Iterator[ModelHandle]:
    """A handle of a deep copy of the model, whose weights are released (moved to the meta device) on exit."""
    model = copy.deepcopy(handle.model)
    twin = ModelHandle(handle.name, handle.source, model, handle.tokenizer, f"{handle.fingerprint}+{suffix}", 0.0)
    try:
        yield twin
    finally:
        # transformers wraps PreTrainedModel.to in functools.wraps, whose typeshed type loses the bound self
        model.to("meta")  # pyright: ignore[reportArgumentType]
        del model
        gc.collect()


def _set(pairs: list[tuple[Matrix, Matrix]], make: Callable[[Matrix], torch.Tensor]) -> None:
    """Write make(original) into each copy's weight. Callers compress `host(original.weight)`: on the CPU the
    choice among tied magnitudes (a GGUF's weights sit on few levels) and the rounding are the same whatever device
    holds the model, so a pruned or quantized model is the same model everywhere."""
    with torch.no_grad():
        for original, target in pairs:
            target.weight.copy_(make(original))


def _pairs(handle: ModelHandle, twin: ModelHandle, kinds: Sequence[str]) -> list[tuple[Matrix, Matrix]]:
    return list(zip(linear_weights(handle, kinds), linear_weights(twin, kinds)))


@contextmanager
def compressed(handle: ModelHandle, compression: Compression) -> Iterator[ModelHandle]:
    """A handle of a copy of the model with its chosen block matrices compressed; the copy is freed on exit."""
    compression.check()
    linear_weights(handle, compression.kinds)  # a plain error before the copy, if there is nothing to compress
    suffix = f"{NAME}:{compression.method}:{compression.amount}:{','.join(compression.kinds)}"
    with model_copy(handle, suffix) as twin:
        _set(_pairs(handle, twin, compression.kinds), lambda m: compress_weight(host(m.weight), compression))
        yield twin


def sentences_nll(handle: ModelHandle, groups: dict[int, list[list[int]]]) -> float:
    """Mean NLL (nats) over every predicted token of the sentences (token ids grouped by length, as
    `probes.batches.by_length` gives them), run in equal-length batches."""
    if not handle.is_causal:
        raise LmscopeError(f"'{handle.name}' is an encoder: it does not predict the next token, so it has no loss.")
    vocab = int(handle.text_config.vocab_size)
    total, count = 0.0, 0
    for length, group in groups.items():
        step = max(1, min(BATCH_SIZE, _LOGITS_BUDGET // (length * vocab)))
        for start in range(0, len(group), step):
            batch = np.asarray(group[start : start + step], dtype=np.int64)
            logits = forward(handle, batch, logits=True)["logits"][:, :-1].float()
            targets = torch.as_tensor(batch[:, 1:])
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += targets.numel()
    return total / count


def _settings(sparsities: Sequence[float], bits: Sequence[int], kinds: tuple[str, ...]) -> list[Compression]:
    limits.check_count(sparsities, limits.SPARSITIES, "sparsities")
    limits.check_count(bits, limits.BIT_WIDTHS, "bit widths")
    chosen = [Compression("prune", float(s), kinds) for s in sparsities]
    chosen.append(Compression("prune-2:4", 0.5, kinds))
    chosen += [Compression("quantize", b, kinds) for b in bits]
    for compression in chosen:
        compression.check()
    return chosen


def _tradeoff(
    handle: ModelHandle,
    token_ids: list[int],
    groups: LengthGroups,
    sparsities: list[float],
    bits: list[int],
    kinds: list[str],
    on_progress: Progress,
) -> Tradeoff:
    """Mean NLL of the text and of the sentences (grouped by length) at each setting of `_settings`."""
    chosen = _settings(sparsities, bits, tuple(kinds))
    shapes = [m.shape for m in linear_weights(handle, kinds)]
    ids = np.asarray(token_ids, dtype=np.int64)
    total = len(chosen) + 1

    def score(target: ModelHandle) -> tuple[float, float]:
        text_nll = float(np.mean(token_nll(target, ids)))  # first: an encoder stops here with a plain message
        return text_nll, sentences_nll(target, dict(groups)) if groups else math.nan

    base_text, base_corpus = score(handle)  # before the copy
    if on_progress is not None:
        on_progress(1, total)
    points = []
    with model_copy(handle, NAME) as twin:
        pairs = _pairs(handle, twin, kinds)
        for done, compression in enumerate(chosen, start=2):
            _set(pairs, lambda m: compress_weight(host(m.weight), compression))
            nll_text, nll_corpus = score(twin)
            cost = bytes_per_weight(compression, shapes)
            points.append(
                TradeoffPoint(compression.method, compression.amount, compression.label, cost, nll_text, nll_corpus)
            )
            if on_progress is not None:
                on_progress(done, total)
    return Tradeoff(
        model=handle.name,
        fingerprint=handle.fingerprint,
        kinds=tuple(kinds),
        n_tokens_text=len(ids),
        n_sentences=sum(len(group) for _, group in groups),
        base_nll_text=base_text,
        base_nll_corpus=base_corpus,
        points=points,
    )


TRADEOFF = CachedProbe(NAME, VERSION, _tradeoff)


def tradeoff(
    handle: ModelHandle,
    text: str,
    sentences: Sequence[str],
    sparsities: Sequence[float],
    bits: Sequence[int],
    cache: ResultCache,
    kinds: Sequence[str] = KINDS,
    on_progress: Progress | None = None,
) -> Cached[Tradeoff]:
    """Mean NLL of the text and of the sentences for each sparsity, 2:4 once and each bit width, all on one copy
    of the model whose chosen matrices are rewritten from the original's for each setting; cached."""
    _settings(sparsities, bits, tuple(kinds))  # checked before any work
    linear_weights(handle, kinds)  # a plain error before any work, if there is nothing to compress
    return TRADEOFF.cached(
        handle,
        cache,
        on_progress,
        token_ids=encode(handle, text, settings().max_tokens).token_ids.tolist(),
        groups=grouped(handle, sentences) if sentences else [],
        sparsities=[float(s) for s in sparsities],
        bits=[int(b) for b in bits],
        kinds=list(kinds),
    )


def _rank_sweep(
    handle: ModelHandle, token_ids: list[int], ranks: list[int], kinds: list[str], on_progress: Progress
) -> RankSweep:
    """Mean NLL of the text with the chosen matrices truncated to each rank (one SVD per matrix for all ranks)."""
    settings_ = [Compression("rank", r, tuple(kinds)) for r in ranks]
    shapes = [m.shape for m in linear_weights(handle, kinds)]
    ids = np.asarray(token_ids, dtype=np.int64)
    base = float(np.mean(token_nll(handle, ids)))
    total = len(settings_) + 1
    if on_progress is not None:
        on_progress(1, total)
    nll = []
    with model_copy(handle, NAME) as twin:
        pairs = _pairs(handle, twin, kinds)
        factors = {}
        for original, _ in pairs:
            below = [int(r) for r in ranks if int(r) < min(original.shape)]
            if below:
                factors[id(original.module)] = _svd(host(original.weight), max(below))
        for done, compression in enumerate(settings_, start=2):
            rank = int(compression.amount)

            def make(m: Matrix) -> torch.Tensor:
                weight = m.weight
                return weight if rank >= min(m.shape) else _truncate(factors[id(m.module)], rank, weight.dtype)

            _set(pairs, make)
            nll.append(float(np.mean(token_nll(twin, ids))))
            if on_progress is not None:
                on_progress(done, total)
    return RankSweep(
        model=handle.name,
        fingerprint=handle.fingerprint,
        kinds=tuple(kinds),
        ranks=np.asarray([int(r) for r in ranks], dtype=np.int64),
        nll=np.asarray(nll, dtype=np.float64),
        base_nll=base,
        bytes_per_weight=np.asarray([bytes_per_weight(c, shapes) for c in settings_], dtype=np.float64),
        n_tokens=len(ids),
    )


RANKS = CachedProbe(f"{NAME}-rank", VERSION, _rank_sweep)


def rank_sweep(
    handle: ModelHandle,
    text: str,
    ranks: Sequence[int],
    cache: ResultCache,
    kinds: Sequence[str] = KINDS,
    on_progress: Progress | None = None,
) -> Cached[RankSweep]:
    """Mean NLL of the text with every chosen matrix replaced by its rank-r truncation, for each r; each matrix's
    SVD is computed once for all ranks; cached."""
    limits.check_count(ranks, limits.RANKS, "ranks")
    for rank in ranks:
        Compression("rank", rank, tuple(kinds)).check()
    linear_weights(handle, kinds)  # a plain error before any work, if there is nothing to compress
    ids = encode(handle, text, settings().max_tokens).token_ids.tolist()
    return RANKS.cached(handle, cache, on_progress, token_ids=ids, ranks=[int(r) for r in ranks], kinds=list(kinds))


