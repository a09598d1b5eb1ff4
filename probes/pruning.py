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

from probes import calibrated, compressed_store, reconstruction, spectra
from probes.batches import BATCH_SIZE, LengthGroups, grouped
from probes.domains import texts as domain_texts
from probes.nll import token_nll
from probes.text import encode
from results.pruning import (
    CALIBRATED,
    DENSE_BYTES,
    KINDS,
    MAX_BITS,
    PRUNERS,
    QUANTIZERS,
    Compression,
    RankSweep,
    SettingScore,
    Tradeoff,
    TradeoffPoint,
)
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.hooks import observing
from runtime.placement import host
from runtime.probe import CachedProbe
from runtime.settings import settings
from runtime.store_files import file_lock

NAME = "pruning"
VERSION = 7
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


def _svd(weight: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The leading `keep` singular triplets (U, S, Vh), computed in float32."""
    u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    return u[:, :keep].clone(), s[:keep].clone(), vh[:keep].clone()


def _truncate(factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], rank: int, dtype: torch.dtype) -> torch.Tensor:
    u, s, vh = factors
    return ((u[:, :rank].contiguous() * s[:rank]) @ vh[:rank]).to(dtype)


def compress_weight(weight: torch.Tensor, compression: Compression) -> torch.Tensor:
    """The compressed version of one (out x in) weight matrix by a method that needs no calibration; identity
    settings return the input itself.

    prune: magnitude pruning (`reconstruction.magnitude`): the round(sparsity x size) weights of smallest magnitude
    over the whole matrix, or with an N:M pattern the m - n smallest of every m consecutive inputs. quantize:
    symmetric round-to-nearest (`reconstruction.rtn`) with one scale per output row, or per group of inputs; 16 bits
    is the fp16 baseline and returns the input. rank: truncated SVD; a rank >= min(shape) returns the input.
    """
    compression.check()
    if weight.ndim != 2:
        raise ValueError(f"compress_weight takes a matrix, not a tensor of shape {tuple(weight.shape)}")
    if compression.method == "prune":
        return reconstruction.magnitude(weight, float(compression.amount), compression.nm)
    if compression.method == "quantize":
        return reconstruction.rtn(weight, int(compression.amount), compression.group or None)
    if compression.method in CALIBRATED:
        raise ValueError(f"{compression.method} reads calibration inputs: see probes.calibrated")
    rank = int(compression.amount)
    if rank >= min(weight.shape):
        return weight
    return _truncate(_svd(weight, rank), rank, weight.dtype)


def _matrix_bytes(compression: Compression, rows: int, cols: int) -> float:
    size = rows * cols
    if compression.method in PRUNERS:
        nm = compression.nm
        if nm is None:
            kept = size - math.floor(float(compression.amount) * size + 0.5)
            return DENSE_BYTES * kept + size / 8
        n, m = nm
        kept = rows * (n * (cols // m) + min(n, cols % m))
        return (DENSE_BYTES + math.ceil(math.log2(m)) / 8) * kept
    if compression.method in QUANTIZERS:
        bits = int(compression.amount)
        scales = rows * (math.ceil(cols / compression.group) if compression.group else 1)
        return DENSE_BYTES * size if bits >= MAX_BITS else size * bits / 8 + DENSE_BYTES * scales
    rank = int(compression.amount)
    return DENSE_BYTES * min(rank * (rows + cols), size)


def bytes_per_weight(compression: Compression, shapes: Sequence[tuple[int, int]]) -> float:
    """Storage of the compressed matrices ((rows, columns) each) in bytes per weight, all weights pooled.

    Formats: dense fp16 = 2 bytes. Unstructured pruning (any method): the kept values in fp16 plus a 1-bit mask per
    weight. N:M pruning: the kept values in fp16 plus an index of log2(m) bits each (2:4: 1.125). b-bit quantization
    (any method): b/8 per weight plus one fp16 scale per row, or per group of inputs; 16 bits is the dense baseline
    (2). rank r: the factors' r x (rows + columns) fp16 values, or the dense matrix where that is smaller (always at
    r >= min(rows, columns), where the matrix is unchanged).
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


def _compress_copy(
    handle: ModelHandle,
    twin: ModelHandle,
    pairs: list[tuple[Matrix, Matrix]],
    compression: Compression,
    calibration: list[list[int]] | None,
    on_block: Progress | None = None,
) -> None:
    """Write the compressed matrices into the copy: from the original's weights, or for a calibrated method from
    the original's weights restored and then compressed block by block on the calibration sequences."""
    if compression.method not in CALIBRATED:
        _set(pairs, lambda m: compress_weight(host(m.weight), compression))
        return
    if not calibration:
        raise LmscopeError(f"{compression.method} needs calibration text: give it some calibration sequences.")
    stored = compressed_store.recipe(handle, compression, calibration, VERSION)
    targets = [(target.name, original.weight.detach(), target.weight.detach()) for original, target in pairs]
    with file_lock(compressed_store.store_path(handle, stored)):  # sessions asking at once compress once
        if compressed_store.restore_compressed(handle, stored, targets):
            for block in range(1, handle.n_layers + 1):
                if on_block is not None:
                    on_block(block, handle.n_layers)
            return
        _set(pairs, lambda m: m.weight)
        matrices = [(target.layer, target.name, target.module) for _, target in pairs]
        quantized = calibrated.compress_in_place(twin, matrices, compression, calibration, on_block)
        compressed_store.save_compressed(handle, stored, targets, {name: q for (_, name), q in quantized.items()})


@contextmanager
def compressed(
    handle: ModelHandle, compression: Compression, calibration: list[list[int]] | None = None
) -> Iterator[ModelHandle]:
    """A handle of a copy of the model with its chosen block matrices compressed (Wanda, SparseGPT and GPTQ read
    the calibration sequences, `calibrated.calibration_ids`); the copy is freed on exit."""
    compression.check()
    linear_weights(handle, compression.kinds)  # a plain error before the copy, if there is nothing to compress
    suffix = f"{NAME}:{compression.method}:{compression.amount}:{compression.pattern}:{compression.group}"
    with model_copy(handle, f"{suffix}:{','.join(compression.kinds)}") as twin:
        _compress_copy(handle, twin, _pairs(handle, twin, compression.kinds), compression, calibration)
        yield twin


def layer_errors(handle: ModelHandle, twin: ModelHandle, kinds: Sequence[str], token_ids: np.ndarray) -> np.ndarray:
    """Relative output error of each layer's compressed matrices on a text, sqrt(Σ ‖X (W - Ŵ)ᵀ‖² / Σ ‖X Wᵀ‖²) over
    the layer's matrices of these kinds, where X are the inputs each matrix receives in the compressed copy (as the
    calibrated methods see them); NaN for a layer with none. The copy's modules are observed in this call only."""
    pairs = _pairs(handle, twin, kinds)
    stats = {id(target.module): reconstruction.InputStatistics() for _, target in pairs}

    def reader(module: nn.Module, args: tuple) -> None:
        stats[id(module)].add(args[0])

    with observing(pre={target.module: reader for _, target in pairs}):
        forward(twin, np.asarray(token_ids, dtype=np.int64)[None], use_cache=False)
    changed, whole = np.zeros(handle.n_layers), np.zeros(handle.n_layers)
    for original, target in pairs:
        hessian = stats[id(target.module)].hessian
        weight = original.weight.detach()
        changed[original.layer] += reconstruction.reconstruction_error(weight, target.weight, hessian)
        whole[original.layer] += reconstruction.reconstruction_error(weight, torch.zeros_like(weight), hessian)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(changed / whole)


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


def settings_of(
    methods: Sequence[str],
    sparsities: Sequence[float],
    patterns: Sequence[str],
    bits: Sequence[int],
    group: int,
    kinds: tuple[str, ...],
) -> list[Compression]:
    """Every setting of a tradeoff, checked: each pruning method at each sparsity and N:M pattern, each quantization
    method at each bit width (with the group size)."""
    limits.check_count(sparsities, limits.SPARSITIES, "sparsities")
    limits.check_count(bits, limits.BIT_WIDTHS, "bit widths")
    for method in methods:
        if method not in (*PRUNERS, *QUANTIZERS):
            raise LmscopeError(
                f"Unknown method '{method}': choose from {', '.join(PRUNERS)} (pruning) and {', '.join(QUANTIZERS)}."
            )
    chosen = []
    for method in methods:
        if method in PRUNERS:
            chosen += [Compression(method, float(s), kinds) for s in sparsities]
            chosen += [Compression(method, 0.5, kinds, pattern=p) for p in patterns]
        else:
            chosen += [Compression(method, b, kinds, group=group) for b in bits]
    for compression in chosen:
        compression.check()
    return chosen


def _fields(compression: Compression) -> dict:
    """A setting as a probe input (plain JSON, `Compression(**fields)` gives it back)."""
    c = compression
    return {"method": c.method, "amount": c.amount, "kinds": list(c.kinds), "pattern": c.pattern, "group": c.group}


def _domain_ids(handle: ModelHandle) -> list[tuple[str, list[int]]]:
    """Each domain's text (probes.domains) as token ids, cut to the token limit, by name."""
    return [
        (name, encode(handle, body, settings().max_tokens).token_ids.tolist()) for name, body in domain_texts().items()
    ]


def _domain_nll(target: ModelHandle, domains: list[tuple[str, list[int]]]) -> np.ndarray:
    """The mean per-token NLL of each domain's text under `target`."""
    return np.asarray([np.mean(token_nll(target, np.asarray(d))) for _, d in domains], dtype=np.float64)


def _tradeoff(
    handle: ModelHandle,
    token_ids: list[int],
    groups: LengthGroups,
    settings_: list[dict],
    kinds: list[str],
    calibration: list[list[int]],
    domains: list[tuple[str, list[int]]],
    on_progress: Progress,
) -> Tradeoff:
    """Mean NLL of the text and of the sentences (grouped by length) at each setting; progress counts one step for
    the dense model and each setting, plus one per block of each calibrated setting."""
    chosen = [Compression(**fields) for fields in settings_]
    shapes = [m.shape for m in linear_weights(handle, kinds)]
    ids = np.asarray(token_ids, dtype=np.int64)
    steps = [1 + (handle.n_layers if c.method in CALIBRATED else 0) for c in chosen]
    total, done = 1 + sum(steps), 0

    def advance(by: int = 1) -> None:
        nonlocal done
        done += by
        if on_progress is not None:
            on_progress(done, total)

    def score(target: ModelHandle) -> tuple[float, float, np.ndarray]:
        text_nll = float(np.mean(token_nll(target, ids)))  # first: an encoder stops here with a plain message
        return text_nll, sentences_nll(target, dict(groups)) if groups else math.nan, _domain_nll(target, domains)

    base_text, base_corpus, base_domains = score(handle)  # before the copy
    advance()
    points = []
    with model_copy(handle, NAME) as twin:
        pairs = _pairs(handle, twin, kinds)
        for compression in chosen:
            _compress_copy(handle, twin, pairs, compression, calibration, lambda block, _: advance())
            nll_text, nll_corpus, nll_domains = score(twin)
            cost = bytes_per_weight(compression, shapes)
            points.append(
                TradeoffPoint(
                    compression.method, compression.amount, compression.label, cost, nll_text, nll_corpus, nll_domains
                )
            )
            advance()
    return Tradeoff(
        model=handle.name,
        fingerprint=handle.fingerprint,
        kinds=tuple(kinds),
        n_tokens_text=len(ids),
        n_sentences=sum(len(group) for _, group in groups),
        base_nll_text=base_text,
        base_nll_corpus=base_corpus,
        points=points,
        calibration_tokens=sum(len(s) for s in calibration) if any(c.method in CALIBRATED for c in chosen) else 0,
        domains=[name for name, _ in domains],
        base_nll_domains=base_domains,
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
    *,
    methods: Sequence[str] = ("prune", "quantize"),
    patterns: Sequence[str] = ("2:4",),
    group: int = 0,
    calibration: tuple[int, int] = (calibrated.DEFAULT_SEQUENCES, calibrated.DEFAULT_LENGTH),
) -> Cached[Tradeoff]:
    """Mean NLL of the text and of the held-out sentences for every setting of `settings_of`, all on one copy of
    the model whose chosen matrices are rewritten for each setting, and of each text unlike the corpus
    (probes.domains); the calibrated methods read `calibration` (sequences, tokens each) of corpus text that is
    neither held out nor in the text; cached."""
    chosen = settings_of(methods, sparsities, patterns, bits, group, tuple(kinds))  # checked before any work
    linear_weights(handle, kinds)  # a plain error before any work, if there is nothing to compress
    needs_calibration = any(c.method in CALIBRATED for c in chosen)
    return TRADEOFF.cached(
        handle,
        cache,
        on_progress,
        token_ids=encode(handle, text, settings().max_tokens).token_ids.tolist(),
        groups=grouped(handle, sentences) if sentences else [],
        settings_=[_fields(c) for c in chosen],
        kinds=list(kinds),
        calibration=calibrated.calibration_ids(handle, [*sentences, text], *calibration) if needs_calibration else [],
        domains=_domain_ids(handle),
    )


def _setting_score(
    handle: ModelHandle,
    token_ids: list[int],
    compression: dict,
    calibration: list[list[int]],
    domains: list[tuple[str, list[int]]],
    on_progress: Progress,
) -> SettingScore:
    """The text's per-token loss before and after one compression, each layer's output error on it, and the mean
    loss of each domain's text before and after; progress counts the blocks of a calibrated method."""
    chosen = Compression(**compression)
    ids = np.asarray(token_ids, dtype=np.int64)
    base, base_domains = token_nll(handle, ids), _domain_nll(handle, domains)
    with model_copy(handle, NAME) as twin:
        pairs = _pairs(handle, twin, chosen.kinds)
        _compress_copy(handle, twin, pairs, chosen, calibration, on_progress)
        after = token_nll(twin, ids)
        errors = layer_errors(handle, twin, chosen.kinds, ids)
        after_domains = _domain_nll(twin, domains)
    return SettingScore(
        model=handle.name,
        fingerprint=handle.fingerprint,
        method=chosen.method,
        amount=chosen.amount,
        pattern=chosen.pattern,
        group=chosen.group,
        kinds=chosen.kinds,
        calibration_tokens=sum(len(s) for s in calibration) if chosen.method in CALIBRATED else 0,
        bytes_per_weight=bytes_per_weight(chosen, [m.shape for m in linear_weights(handle, chosen.kinds)]),
        nll_base=np.asarray(base, dtype=np.float64),
        nll_compressed=np.asarray(after, dtype=np.float64),
        reconstruction_error=np.asarray(errors, dtype=np.float64),
        domains=[name for name, _ in domains],
        domain_nll_base=base_domains,
        domain_nll_compressed=after_domains,
    )


SETTING = CachedProbe(f"{NAME}-setting", VERSION, _setting_score)


def setting_score(
    handle: ModelHandle,
    text: str,
    compression: Compression,
    cache: ResultCache,
    calibration: tuple[int, int] = (calibrated.DEFAULT_SEQUENCES, calibrated.DEFAULT_LENGTH),
    on_progress: Progress | None = None,
) -> Cached[SettingScore]:
    """The text (cut to the token limit) and each domain's text scored before and after one compression, with each
    layer's output error on the text; a calibrated method reads `calibration` (sequences, tokens each) of corpus
    text that is not in the text; cached."""
    compression.check()
    linear_weights(handle, compression.kinds)  # a plain error before any work, if there is nothing to compress
    return SETTING.cached(
        handle,
        cache,
        on_progress,
        token_ids=encode(handle, text, settings().max_tokens).token_ids.tolist(),
        compression=_fields(compression),
        calibration=(
            calibrated.calibration_ids(handle, [text], *calibration) if compression.method in CALIBRATED else []
        ),
        domains=_domain_ids(handle),
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
