"""Layer-wise compression from the literature: prune or quantize one weight matrix, knowing what its inputs are.

A linear layer computes y = W x (W: out x in, as nn.Linear stores it). Compressing W into Ŵ changes the outputs of
the calibration inputs X (tokens x in) by X (W - Ŵ)ᵀ, and the methods here choose Ŵ to keep that small:

- magnitude: zero the smallest |w| (the inputs are not read).
- Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs"): score |W_ij| · ‖X_j‖₂ and prune the
  lowest scores of each output row; the kept weights stay as they are.
- SparseGPT (Frantar & Alistarh 2023): prune column by column, choosing the mask from OBS's saliency w² / [H⁻¹]_jj
  (H restricted to the columns not yet processed), and move every pruned weight's error onto those columns (the
  Optimal Brain Surgeon update).
- RTN: symmetric round-to-nearest, one scale per row or per group of consecutive inputs.
- GPTQ (Frantar et al. 2022): the OBS sweep of SparseGPT, rounding each column to the RTN grid instead of zeroing.

All the inputs tell these methods is H = (2/n) Σ x xᵀ over the n calibration tokens: the Hessian, with respect to
any row of Ŵ, of the mean squared output error (1/n) ‖X (W - Ŵ)ᵀ‖²_F, which equals tr((W - Ŵ) H (W - Ŵ)ᵀ) / 2
(`reconstruction_error`). Wanda's ‖X_j‖₂ is the square root of the diagonal of Σ x xᵀ. Pure torch on one matrix:
no model, no cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from results.pruning import MAX_BITS
from runtime.errors import LmscopeError

# The n kept weights of every m consecutive inputs of a row (2:4 is what sparse tensor cores run).
Pattern = tuple[int, int]
# (current weights of a chunk of columns, diag of H⁻¹'s Cholesky factor there, chunk's first column, i) -> column i
_Compress = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]


class InputStatistics:
    """What a layer's calibration inputs tell the compression methods: Σ x xᵀ and the token count.

    The sum is kept in float64 by default: exact enough that SparseGPT without damping, swept in float64, can be
    checked against least squares, where H's condition number reaches 3e7 (SmolLM2's q_proj, 1,033 tokens). For
    compressing alone float32 does, at half the time (the sweeps run in the Hessian's float type): on those inputs
    the float32 sum differed by 1e-7 (relative) and SparseGPT's output error by 1e-4.
    """

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        self.dtype = dtype
        self.gram: torch.Tensor | None = None  # Σ x xᵀ (in x in)
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        """Add a batch of inputs (..., in_features); the leading dimensions are tokens."""
        x = x.detach().reshape(-1, x.shape[-1])
        if self.gram is None:
            self.gram = torch.zeros(x.shape[1], x.shape[1], dtype=self.dtype, device=x.device)
        elif x.shape[1] != self.gram.shape[0]:
            raise ValueError(f"inputs of {x.shape[1]} features added to statistics of {self.gram.shape[0]}")
        x = x.to(self.gram.device, self.dtype)
        self.gram.addmm_(x.T, x)
        self.count += x.shape[0]

    def _sum(self) -> torch.Tensor:
        if self.gram is None or self.count == 0:
            raise LmscopeError("There are no calibration inputs: run the model on some text first.")
        return self.gram

    @property
    def hessian(self) -> torch.Tensor:
        """H = (2/n) Σ x xᵀ, in the statistics' float type (in x in)."""
        return self._sum() * (2.0 / self.count)

    @property
    def input_norms(self) -> torch.Tensor:
        """‖X_j‖₂ of each input feature over all tokens (Wanda's activation norm), in their float type (in,)."""
        return self._sum().diagonal().clamp(min=0).sqrt()


def reconstruction_error(weight: torch.Tensor, approx: torch.Tensor, hessian: torch.Tensor) -> float:
    """Mean squared output error per calibration token, (1/n) ‖X (W - Ŵ)ᵀ‖²_F = tr((W - Ŵ) H (W - Ŵ)ᵀ) / 2.

    Multiply by n (`InputStatistics.count`) for the squared Frobenius norm of the change of the outputs.
    """
    delta = (weight.detach().to(torch.float64) - approx.detach().to(torch.float64)).to(hessian.device)
    return float(((delta @ hessian.to(torch.float64)) * delta).sum()) / 2


# Checks of what a user chooses ---------------------------------------------------------------------------------


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_sparsity(sparsity: float) -> None:
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float) or not 0 <= sparsity < 1:
        raise LmscopeError(
            f"The sparsity is the share of weights pruned, from 0 up to (not including) 1 (got {sparsity!r})."
        )


def _check_pattern(pattern: Pattern | None) -> None:
    if pattern is None:
        return
    ok = isinstance(pattern, tuple) and len(pattern) == 2 and all(_whole(v) for v in pattern)
    if not ok or not 0 < pattern[0] < pattern[1]:
        raise LmscopeError(f"An N:M pattern keeps n of every m weights, with 0 < n < m (got {pattern!r}).")


def _check_bits(bits: int) -> None:
    if not _whole(bits) or not 2 <= bits <= MAX_BITS:
        raise LmscopeError(f"Quantization needs a whole number of bits from 2 to {MAX_BITS} (got {bits!r}).")


def _check_positive(value: int | None, what: str) -> None:
    if value is not None and not (_whole(value) and value >= 1):
        raise LmscopeError(f"The {what} must be a whole number of at least 1 (got {value!r}).")


def _check_damp(damp: float) -> None:
    if isinstance(damp, bool) or not isinstance(damp, int | float) or not 0 <= damp < math.inf:
        raise LmscopeError(f"The damping must be a number of at least 0 (got {damp!r}).")


def _check_shapes(weight: torch.Tensor, inputs: torch.Tensor, what: str, ndim: int) -> None:
    if weight.ndim != 2:
        raise ValueError(f"a weight matrix is needed, not a tensor of shape {tuple(weight.shape)}")
    if tuple(inputs.shape) != (weight.shape[1],) * ndim:
        raise ValueError(f"{what} of shape {tuple(inputs.shape)} for a weight of {weight.shape[1]} inputs")


# Pruning -------------------------------------------------------------------------------------------------------


def _n_pruned(size: int, sparsity: float) -> int:
    return int(math.floor(sparsity * size + 0.5))  # as pruning._n_pruned: halves round up, not to even


def _lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """A mask of the `count` lowest scores of the whole tensor."""
    pruned = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if count:
        pruned[torch.topk(scores.flatten(), count, largest=False, sorted=False).indices] = True
    return pruned.view_as(scores)


def _keep_n_of_m(scores: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """A mask of the n highest scores in each group of m consecutive columns; a short last group keeps its n
    highest too (all of it if it is no longer than n)."""
    n, m = pattern
    rows, cols = scores.shape
    # Padding scores -inf are never kept over a real score (scores are >= 0), and are cut off after.
    padded = nn.functional.pad(scores, (0, -cols % m), value=-math.inf).view(rows, -1, m)
    keep = torch.zeros_like(padded, dtype=torch.bool)
    keep.scatter_(2, torch.topk(padded, n, dim=2).indices, True)
    return keep.view(rows, -1)[:, :cols]


def _zeroed(weight: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    return torch.where(pruned, torch.zeros((), dtype=weight.dtype, device=weight.device), weight.detach())


def magnitude(weight: torch.Tensor, sparsity: float, pattern: Pattern | None = None) -> torch.Tensor:
    """Zero the round(sparsity · size) weights of smallest |w| in the whole matrix; with a pattern (n, m), keep the
    n largest of every m consecutive inputs of a row instead (the pattern sets the sparsity, 1 - n/m)."""
    _check_sparsity(sparsity)
    _check_pattern(pattern)
    if pattern is not None:
        return _zeroed(weight, ~_keep_n_of_m(weight.detach().abs().float(), pattern))
    count = _n_pruned(weight.numel(), sparsity)
    return weight if count == 0 else _zeroed(weight, _lowest(weight.detach().abs(), count))


def wanda(
    weight: torch.Tensor, input_norms: torch.Tensor, sparsity: float, pattern: Pattern | None = None
) -> torch.Tensor:
    """Wanda: zero the round(sparsity · in) lowest |W_ij| · ‖X_j‖₂ of each output row, or keep the n highest of
    every m consecutive inputs with a pattern (n, m)."""
    _check_sparsity(sparsity)
    _check_pattern(pattern)
    _check_shapes(weight, input_norms, "input norms", 1)
    # A weight's effect on its output is |w| ‖X_j‖ at most: rows compete within themselves, because each output is
    # one sum and a large row would otherwise take the budget of a small one.
    scores = weight.detach().abs().to(torch.float64) * input_norms.to(weight.device, torch.float64)
    if pattern is not None:
        return _zeroed(weight, ~_keep_n_of_m(scores, pattern))
    count = _n_pruned(weight.shape[1], sparsity)
    if count == 0:
        return weight
    pruned = torch.zeros_like(scores, dtype=torch.bool)
    pruned.scatter_(1, torch.topk(scores, count, dim=1, largest=False, sorted=False).indices, True)
    return _zeroed(weight, pruned)


# The Optimal Brain Surgeon sweep shared by SparseGPT and GPTQ --------------------------------------------------


def _inverse_factor(weight: torch.Tensor, hessian: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight in H's float type (a copy) and the upper Cholesky factor U of the dampened H⁻¹ (H⁻¹ = UᵀU).

    Row j of U, divided by U_jj, is the OBS update that removing weight j asks of the columns after it, with H
    restricted to columns j.. (the columns before are already fixed): one factorisation gives every step.
    """
    h = hessian.detach().to(weight.device, copy=True)
    w = weight.detach().to(h.dtype, copy=True)
    dead = h.diagonal() == 0
    # An input that is always zero never changes an output: its weights can go (SparseGPT's scores then prune them
    # first, within the count), and H gets a 1 there to stay invertible.
    h.diagonal()[dead] = 1.0
    w[:, dead] = 0.0
    # Damping (a share of the mean curvature) keeps H invertible when there are fewer tokens than inputs, and
    # keeps the updates from chasing directions that the few calibration tokens barely measured.
    h.diagonal().add_(damp * float(h.diagonal().mean()))
    lower, info = torch.linalg.cholesky_ex(h)
    if int(info) != 0:
        raise LmscopeError("The inputs' Hessian is singular (too few calibration tokens?): raise the damping.")
    return w, torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)


def _sweep(w: torch.Tensor, u: torch.Tensor, block: int, unit: int, compress: _Compress) -> torch.Tensor:
    """Compress w's columns left to right, each one's error spread over the columns after it; w is overwritten.

    Lazy batching: the rest of the matrix gets a chunk's updates in one product at the chunk's end. Within a chunk of
    `block` columns, a column gets the updates of the columns before it only when its turn comes, as one product:
    a unit (a group of m for N:M, a quantization group) is brought up to date with the units before it as its turn
    starts, so that its choice sees its current weights, and each of its columns with the unit's columns before it.
    The same updates as a rank-1 step after every column, summed in another order, in far fewer passes over memory
    (twice as fast on SmolLM2's matrices). Chunks hold whole units.
    """
    cols = w.shape[1]
    step = max(1, block // unit) * unit
    for start in range(0, cols, step):
        end = min(start + step, cols)
        chunk, u_chunk = w[:, start:end].clone(), u[start:end, start:end]
        d = u_chunk.diagonal()
        errors = torch.zeros_like(chunk)
        for i in range(end - start):
            first = i - i % unit
            if i == first:
                chunk[:, i : i + unit] -= errors[:, :i] @ u_chunk[:i, i : i + unit]
            else:
                chunk[:, i] -= errors[:, first:i] @ u_chunk[first:i, i]
            q = compress(chunk, d, start, i)
            errors[:, i] = (chunk[:, i] - q) / d[i]
            chunk[:, i] = q
        w[:, start:end] = chunk
        w[:, end:] -= errors @ u[start:end, end:]
    return w


def _sparsegpt(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    pattern: Pattern | None,
    block: int,
    damp: float,
    mask: torch.Tensor | None = None,
    segments: Sequence[int] = (),
) -> torch.Tensor:
    """SparseGPT; a given `mask` (True = pruned, out x in) replaces the chosen one (for tests against least
    squares). `segments` are the row counts of matrices stacked in `weight` (all its rows if empty)."""
    w, u = _inverse_factor(weight, hessian, damp)
    rows = w.shape[0]
    pruned = torch.zeros_like(w, dtype=torch.bool) if mask is None else mask.to(w.device)

    def choose(chunk: torch.Tensor, d: torch.Tensor, start: int, i: int) -> None:
        # OBS's saliency w² / [H⁻¹]_jj, with [H⁻¹]_jj = U_jj² once the earlier columns are out: the output error
        # that zeroing w costs when the later columns are re-fitted. It is read from the current weights, which
        # carry the earlier prunings' updates: the mask adapts as the sweep goes.
        if pattern is None and i == 0:
            # Each matrix's share of its count in the chunk, rounded cumulatively so that the shares add up exactly.
            end, top = start + chunk.shape[1], 0
            for size in segments or (rows,):
                count = _n_pruned(size * end, sparsity) - _n_pruned(size * start, sparsity)
                pruned[top : top + size, start:end] = _lowest(chunk[top : top + size] ** 2 / d**2, count)
                top += size
        elif pattern is not None and i % pattern[1] == 0:
            group = slice(i, i + pattern[1])
            pruned[:, start + i : start + i + pattern[1]] = ~_keep_n_of_m(chunk[:, group] ** 2 / d[group] ** 2, pattern)

    def compress(chunk: torch.Tensor, d: torch.Tensor, start: int, i: int) -> torch.Tensor:
        if mask is None:
            choose(chunk, d, start, i)
        column = chunk[:, i]
        return torch.where(pruned[:, start + i], torch.zeros((), dtype=column.dtype, device=column.device), column)

    unit = 1 if pattern is None or mask is not None else pattern[1]
    return _sweep(w, u, block, unit, compress).to(weight.dtype)


def sparsegpt(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    pattern: Pattern | None = None,
    block: int = 128,
    damp: float = 0.01,
    segments: Sequence[int] = (),
) -> torch.Tensor:
    """SparseGPT: prune `sparsity` of the weights (the lowest w² / [H⁻¹]_jj² of each block of columns) or keep n
    of every m with a pattern, re-fitting the later columns after each pruned one; computed in the Hessian's float
    type, returned in the weight's. Matrices that read the same inputs can be stacked (rows after rows) and swept
    at once, sharing H's factor: `segments` gives their row counts, so that each prunes its own share."""
    _check_sparsity(sparsity)
    if segments and (sum(segments) != weight.shape[0] or min(segments) < 1):
        raise ValueError(f"segments of {list(segments)} rows for a weight of {weight.shape[0]}")
    _check_pattern(pattern)
    _check_positive(block, "block size")
    _check_damp(damp)
    _check_shapes(weight, hessian, "a Hessian", 2)
    if pattern is None and _n_pruned(weight.numel(), sparsity) == 0:
        return weight
    return _sparsegpt(weight, hessian, sparsity, pattern, block, damp, segments=segments)


# Quantization --------------------------------------------------------------------------------------------------


def _scales(w: torch.Tensor, levels: int, group: int | None) -> torch.Tensor:
    """max|w| / levels of each row (rows x 1), or of each group of consecutive inputs, spread over its columns."""
    if group is None:
        top = w.abs().amax(dim=1, keepdim=True)
    else:
        rows, cols = w.shape
        padded = nn.functional.pad(w.abs(), (0, -cols % group)).view(rows, -1, group)
        top = padded.amax(dim=2).repeat_interleave(group, dim=1)[:, :cols]
    scale = top / levels
    return torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row or group stays zero


def _rounded(w: torch.Tensor, scale: torch.Tensor, levels: int) -> torch.Tensor:
    return torch.round(w / scale).clamp(-levels, levels) * scale


def rtn(weight: torch.Tensor, bits: int, group: int | None = None) -> torch.Tensor:
    """Symmetric round-to-nearest to 2^(b-1) - 1 levels each side of 0, one scale max|w| / levels per row or per
    group of `group` consecutive inputs (the last group may be shorter); computed in float32; 16 bits returns the
    input."""
    _check_bits(bits)
    _check_positive(group, "group size")
    if bits >= MAX_BITS:
        return weight
    levels = 2 ** (bits - 1) - 1
    w = weight.detach().float()
    return _rounded(w, _scales(w, levels, group), levels).to(weight.dtype)


@dataclass(frozen=True)
class Quantized:
    """A matrix on a symmetric grid: integer codes (int8, or int16 above 8 bits; out x in) times the scale of their row's input group
    (`scales`: out x groups, one column without groups). What a quantized matrix stores; `weight` is exactly the
    matrix the method computed."""

    codes: torch.Tensor
    scales: torch.Tensor
    group: int | None

    def weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The matrix in `dtype`: codes times scales in the scales' float type, then cast."""
        return (self.codes.to(self.scales.dtype) * _spread(self.scales, self.group, self.codes.shape[1])).to(dtype)

    def split(self, rows: Sequence[int]) -> list[Quantized]:
        """The matrices stacked in this one (rows after rows), `rows` each (GPTQ treats rows apart)."""
        return [
            Quantized(codes, scales, self.group)
            for codes, scales in zip(self.codes.split(list(rows)), self.scales.split(list(rows)), strict=True)
        ]


def _spread(scales: torch.Tensor, group: int | None, cols: int) -> torch.Tensor:
    """Each group's scale over its columns (out x in), or the row's scale as a column (out x 1) without groups."""
    return scales if group is None else scales.repeat_interleave(group, dim=1)[:, :cols]


def _gptq(
    weight: torch.Tensor, hessian: torch.Tensor, bits: int, group: int | None, block: int, damp: float
) -> Quantized:
    """GPTQ's codes and scales, in the Hessian's float type."""
    levels = 2 ** (bits - 1) - 1
    w, u = _inverse_factor(weight, hessian, damp)
    # Without groups, RTN's own grid (from the original weights, in float32); with groups, GPTQ sets a group's
    # scale when the sweep reaches it, from its current weights, which already carry the earlier columns' errors.
    scales = [] if group is not None else [_scales(weight.detach().float(), levels, None).to(w)]

    def compress(chunk: torch.Tensor, d: torch.Tensor, start: int, i: int) -> torch.Tensor:
        if group is not None and i % group == 0:
            scales.append(_scales(chunk[:, i : i + group], levels, None))
        return _rounded(chunk[:, i : i + 1], scales[-1], levels)[:, 0]

    q = _sweep(w, u, block, group or 1, compress)
    spread = torch.cat(scales, dim=1)
    # Each weight is code x scale rounded once to the float type, so dividing by the scale rounds back to the code.
    codes = torch.round(q / _spread(spread, group, q.shape[1])).to(torch.int8 if levels <= 127 else torch.int16)
    return Quantized(codes, spread, group)


def gptq_quantized(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    bits: int,
    group: int | None = None,
    block: int = 128,
    damp: float = 0.01,
) -> Quantized:
    """GPTQ: round the columns left to right onto RTN's symmetric grid (per row, or per group of `group` inputs),
    re-fitting the later columns after each; computed in the Hessian's float type. Rows are quantized apart, so
    matrices that read the same inputs can be stacked and swept at once (`Quantized.split` parts them)."""
    _check_bits(bits)
    _check_positive(group, "group size")
    _check_positive(block, "block size")
    _check_damp(damp)
    _check_shapes(weight, hessian, "a Hessian", 2)
    return _gptq(weight, hessian, bits, group, block, damp)


def gptq(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    bits: int,
    group: int | None = None,
    block: int = 128,
    damp: float = 0.01,
) -> torch.Tensor:
    """The GPTQ matrix (`gptq_quantized`) in the weight's float type; 16 bits returns the input."""
    _check_bits(bits)
    if bits >= MAX_BITS:
        return weight
    return gptq_quantized(weight, hessian, bits, group, block, damp).weight(weight.dtype)
