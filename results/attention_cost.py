"""What attention costs as the context grows: forward passes timed and their memory measured, live."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AttentionCost:
    """Seconds and peak memory of one forward pass of the model over n tokens, for each n and each way of computing
    its attention, on one machine; NaN where a way was not run (it would not fit in memory)."""

    model: str
    device: str  # "cpu", "cuda:0 (NVIDIA H200)"
    threads: int  # torch's intra-op threads on the CPU
    lengths: np.ndarray  # (n,) int64, ascending: tokens per forward pass
    kinds: list[str]  # how attention was computed: eager, chunked, window
    labels: list[str]  # the same in words
    window: int  # the sliding window of "window"
    chunk: int  # queries per chunk of "chunked" and "window"
    seconds: np.ndarray  # (kinds, n): the whole forward pass (last-token logits), best of its repeats
    attention_seconds: np.ndarray  # (kinds, n): the part of it spent in the attention layers
    peak_bytes: np.ndarray  # (kinds, n): memory the pass took above what was in use before it
    measured_at: str  # ISO time (UTC)
    host: str

    def exponent(self, kind: str, values: str = "attention_seconds", points: int = 3) -> float:
        """The slope of log(values) against log(n) over the longest `points` lengths measured for `kind`: about 2
        for a cost quadratic in n, 1 for a linear one (NaN with fewer than two measured lengths)."""
        row = getattr(self, values)[self.kinds.index(kind)]
        measured = np.flatnonzero(np.isfinite(row) & (row > 0))[-points:]
        if measured.size < 2:
            return float("nan")
        return float(np.polyfit(np.log(self.lengths[measured]), np.log(row[measured]), 1)[0])
