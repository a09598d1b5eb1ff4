"""What sparse weights cost to multiply: one block's matrix products, dense against sparse formats, timed live."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SparseCost:
    """Seconds of one block's matrix products (every kind of block matrix times a batch of token vectors) on one
    machine: dense, CSR at each sparsity, 2:4 semi-structured where the device runs it, and the weights quantized to
    int8 and int4 where the device has kernels for weight-only quantized products (NaN where not)."""

    model: str
    layer: int
    device: str  # "cpu", "cuda:0 (NVIDIA H200)"
    threads: int  # torch's intra-op threads on the CPU
    shapes: np.ndarray  # (matrices, 2) int64: (out, in) of each product's weight
    tokens: np.ndarray  # (t,) int64: token vectors per product (1: generating; more: reading a prompt)
    sparsities: np.ndarray  # (s,) float64, ascending
    dense_seconds: np.ndarray  # (t,)
    csr_seconds: np.ndarray  # (t, s)
    semi_seconds: np.ndarray  # (t,), NaN where 2:4 does not run
    int8_seconds: np.ndarray  # (t,), weight-only int8 (one scale per row), NaN where it does not run
    int4_seconds: np.ndarray  # (t,), weight-only int4 (a scale per group of inputs), NaN where it does not run
    dense_bytes: int  # the block's weights stored dense in the measured dtype
    csr_bytes: np.ndarray  # (s,) values, column indices and row pointers
    int8_bytes: int  # codes and float32 scales
    int4_bytes: int
    dtype: str
    measured_at: str  # ISO time (UTC)
    host: str

    def speedup(self) -> np.ndarray:
        """Dense time over CSR time, (t, s): above 1 the sparse product is faster."""
        return self.dense_seconds[:, None] / self.csr_seconds

    def crossover(self) -> np.ndarray:
        """Per token count, the smallest measured sparsity from which CSR stays faster than dense (NaN if none)."""
        found = np.full(len(self.tokens), np.nan)
        for row, faster in enumerate(self.speedup() > 1):
            slower = np.flatnonzero(~faster)
            first = 0 if slower.size == 0 else slower[-1] + 1
            if first < len(self.sparsities):
                found[row] = self.sparsities[first]
        return found
