"""What sparsity costs on real hardware (the lecture: pruning is bad for GPU efficiency): one block's products.

Every block matrix of one layer (q, k, v, o, gate, up, down, at the model's own shapes) is pruned by magnitude
and multiplied with a batch of token vectors, dense and as a CSR sparse matrix (`torch.sparse_csr`), and with 2:4
semi-structured sparsity where the device runs it (`torch.sparse.to_sparse_semi_structured`: a CUDA GPU with
sparse tensor cores, in half precision). For comparison, the same products with the weights quantized, the other
way to shrink them: int8 with a scale per row and int4 with a scale per group of 64 inputs, through torch's
weight-only kernels (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`; on the CPU, where they exist). Timed with `torch.utils.benchmark` on the machine that serves the page,
live, then cached for this machine (its name, device and threads are in the key): every session sees the same
measurement, and the result says when and where it was taken.
"""

from __future__ import annotations

import math
import platform
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import numpy as np
import torch
from torch.utils import benchmark

from probes import pruning, reconstruction
from results.sparse_cost import SparseCost
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.machine import machine_key
from runtime.placement import device_name
from runtime.probe import CachedProbe

# torch marks CSR as beta on every conversion; the products used here are the stable core of it.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)

NAME = "sparse-cost"
VERSION = 2
DEFAULT_SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
DEFAULT_TOKENS = (1, 128)
INT4_GROUP = 64  # inputs per int4 scale
MIN_RUN_SECONDS = 0.05  # per measurement: torch.utils.benchmark repeats the products until this long
# (measurements done, measurements in all) -> None
Progress = Callable[[int, int], None]


def _seconds(products: Callable[[], object]) -> float:
    """Median seconds of one call, over repeats of at least MIN_RUN_SECONDS (the timer synchronises CUDA)."""
    timer = benchmark.Timer(stmt="products()", globals={"products": products}, num_threads=torch.get_num_threads())
    return float(timer.blocked_autorange(min_run_time=MIN_RUN_SECONDS).median)


def _semi_structured(weights: Sequence[torch.Tensor], inputs: dict[int, torch.Tensor]) -> float:
    """Seconds of the 2:4 products, or NaN where the device cannot run them."""
    if weights[0].device.type != "cuda":
        return math.nan
    try:
        sparse = [
            torch.sparse.to_sparse_semi_structured(reconstruction.magnitude(w.half(), 0.5, (2, 4))) for w in weights
        ]
        halves = {n: x.half() for n, x in inputs.items()}
        return _seconds(lambda: [w @ halves[w.shape[1]] for w in sparse])
    except (RuntimeError, ValueError):  # shapes or a GPU without sparse tensor cores
        return math.nan


def int8_weights(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w (out x in) as int8 codes and a float scale per row (symmetric, 127 levels each side)."""
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def int8_product(x: torch.Tensor, packed: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x (tokens x in) times the int8 weights' transpose, by torch's weight-only kernel."""
    return torch.ops.aten._weight_int8pack_mm(x, *packed)


def int4_weights(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w (out x in) packed for torch's int4 CPU kernel: codes q = 0..15 standing for (q - 8) x scale + zero, one
    scale per group of INT4_GROUP inputs (symmetric: 7 levels each side, zero 0), and the (groups, out, 2) scales and
    zeros."""
    groups = w.view(w.shape[0], -1, INT4_GROUP)
    scale = groups.abs().amax(dim=2).clamp(min=1e-12) / 7  # (out, groups)
    codes = torch.round(groups / scale[..., None]).clamp(-7, 7).view_as(w).to(torch.int32) + 8
    scales_and_zeros = torch.stack([scale.T, torch.zeros_like(scale.T)], dim=2).contiguous()
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 8), scales_and_zeros


def int4_product(x: torch.Tensor, packed: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x (tokens x in) times the int4 weights' transpose, by torch's weight-only CPU kernel."""
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed[0], INT4_GROUP, packed[1])


Packed = list[tuple[int, tuple[torch.Tensor, torch.Tensor]]]  # (input width, packed weight) of each matrix


def _packed(
    weights: Sequence[torch.Tensor], pack: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
) -> Packed | None:
    """The weights packed for a quantized kernel, once for every token count; None where the device has none."""
    try:
        return [(w.shape[1], pack(w)) for w in weights]
    except (RuntimeError, NotImplementedError, AttributeError):  # no kernel for this device, type or shape
        return None


def _quantized(
    packed: Packed | None,
    rows: dict[int, torch.Tensor],
    product: Callable[[torch.Tensor, tuple[torch.Tensor, torch.Tensor]], torch.Tensor],
) -> float:
    """Seconds of the products with the packed weights; NaN where the device has no such kernel."""
    if packed is None:
        return math.nan
    try:
        return _seconds(lambda: [product(rows[width], p) for width, p in packed])
    except (RuntimeError, NotImplementedError, AttributeError):  # packed, but no product for these inputs
        return math.nan


def _measure(
    handle: ModelHandle, layer: int, sparsities: list[float], tokens: list[int], machine: str, on_progress: Progress
) -> SparseCost:
    """Time layer `layer`'s block products, dense and sparse, for each token count and sparsity (`machine` keys
    the cache only)."""
    chosen = [m for m in pruning.linear_weights(handle) if m.layer == layer]
    weights = [m.weight.detach().float() for m in chosen]
    device = weights[0].device
    generator = torch.Generator(device="cpu").manual_seed(0)
    ordered = sorted(float(s) for s in sparsities)
    dense = np.zeros(len(tokens))
    csr = np.zeros((len(tokens), len(ordered)))
    semi, int8, int4 = np.zeros(len(tokens)), np.zeros(len(tokens)), np.zeros(len(tokens))
    total, done = len(tokens) * (len(ordered) + 4), 0

    def advance() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    with torch.inference_mode():
        sparse_by = [[reconstruction.magnitude(w, s).to_sparse_csr() for w in weights] for s in ordered]
        quantized = [(_packed(weights, int8_weights), int8_product), (_packed(weights, int4_weights), int4_product)]
        for row, n in enumerate(tokens):
            widths = {w.shape[1] for w in weights}
            inputs = {k: torch.randn(k, int(n), generator=generator).to(device) for k in widths}
            dense[row] = _seconds(lambda: [w @ inputs[w.shape[1]] for w in weights])
            advance()
            for col, sparse in enumerate(sparse_by):
                csr[row, col] = _seconds(lambda: [w @ inputs[w.shape[1]] for w in sparse])
                advance()
            semi[row] = _semi_structured(weights, inputs)
            advance()
            rows = {k: x.T.contiguous() for k, x in inputs.items()}  # the quantized kernels take tokens x inputs
            for seconds, (packed, product) in zip((int8, int4), quantized, strict=True):
                seconds[row] = _quantized(packed, rows, product)
                advance()
    element = weights[0].element_size()
    csr_bytes = [
        sum(int(w.values().numel()) * element + int(w.col_indices().numel() + w.crow_indices().numel()) * 8 for w in s)
        for s in sparse_by
    ]
    return SparseCost(
        model=handle.name,
        layer=layer,
        device=device_name(device),
        threads=torch.get_num_threads(),
        shapes=np.asarray([w.shape for w in weights], dtype=np.int64),
        tokens=np.asarray(tokens, dtype=np.int64),
        sparsities=np.asarray(ordered, dtype=np.float64),
        dense_seconds=dense,
        csr_seconds=csr,
        semi_seconds=semi,
        int8_seconds=int8,
        int4_seconds=int4,
        dense_bytes=sum(w.numel() for w in weights) * element,
        csr_bytes=np.asarray(csr_bytes, dtype=np.int64),
        int8_bytes=sum(w.numel() + w.shape[0] * 4 for w in weights),  # codes, float32 scales
        int4_bytes=sum(w.numel() // 2 + w.numel() // INT4_GROUP * 8 for w in weights),  # codes, scales and zeros
        dtype=str(weights[0].dtype).removeprefix("torch."),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=platform.node(),
    )


COST = CachedProbe(NAME, VERSION, _measure)


def measure(
    handle: ModelHandle,
    layer: int,
    cache: ResultCache,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    tokens: Sequence[int] = DEFAULT_TOKENS,
    on_progress: Progress | None = None,
) -> Cached[SparseCost]:
    """One block's products timed dense and sparse on this machine, once per machine, model, layer and settings."""
    if not 0 <= layer < handle.n_layers:
        raise LmscopeError(f"'{handle.name}' has layers 0 to {handle.n_layers - 1}; there is no layer {layer}.")
    limits.check_count(sparsities, limits.SPARSITIES, "sparsities")
    limits.check_count(tokens, limits.COST_TOKEN_COUNTS, "token counts")
    for s in sparsities:
        if not 0 <= s < 1:
            raise LmscopeError(f"A sparsity is at least 0 and below 1 (got {s!r}).")
    for n in tokens:
        limits.check_range(int(n), 1, limits.COST_TOKENS, "token count")
    return COST.cached(
        handle,
        cache,
        on_progress,
        layer=int(layer),
        sparsities=[float(s) for s in sparsities],
        tokens=[int(n) for n in tokens],
        machine=machine_key(handle.device),
    )
