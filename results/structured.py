"""Structured attention: masks against real attention, and the loss of a text under sliding windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class WindowSweep:
    """Per-token NLL (nats) of tokens 1..n-1: full attention, and every layer limited to each sliding window,
    without and with the first `sinks` tokens kept visible (nll_sinks is nll_window when sinks is 0)."""

    model: str
    fingerprint: str
    token_ids: np.ndarray
    tokens: list[str]
    windows: np.ndarray  # int, ascending
    sinks: int
    nll_full: np.ndarray  # (n-1,)
    nll_window: np.ndarray  # (windows, n-1)
    nll_sinks: np.ndarray  # (windows, n-1)

    @property
    def mean_full(self) -> float:
        """Mean per-token NLL with full attention."""
        return float(self.nll_full.mean())

    @property
    def mean_window(self) -> np.ndarray:
        """Mean per-token NLL for each window, without sink tokens."""
        return self.nll_window.mean(axis=-1)

    @property
    def mean_sinks(self) -> np.ndarray:
        """Mean per-token NLL for each window, with the first `sinks` tokens kept visible."""
        return self.nll_sinks.mean(axis=-1)

    def rows(self) -> list[dict[str, float | int]]:
        """One row per window: mean NLL and perplexity with the window only, with sinks (when k > 0), and full."""
        means = {"window only": self.mean_window, **({f"window + {self.sinks} sinks": self.mean_sinks} if self.sinks else {})}
        means["full attention"] = np.full(len(self.windows), self.mean_full)
        return [
            {
                "window": int(w),
                **{f"mean NLL, {name}": float(values[i]) for name, values in means.items()},
                **{f"perplexity, {name}": float(np.exp(values[i])) for name, values in means.items()},
            }
            for i, w in enumerate(self.windows)
        ]


@dataclass(frozen=True)
class WindowLoss:
    """Mean per-token NLL (nats) and perplexity of a text with full attention and with one sliding window."""

    model: str
    n_tokens: int
    window: int
    sinks: int
    nll_full: float
    nll_window: float
    perplexity_full: float
    perplexity_window: float


@dataclass
class MaskView:
    """The structured masks for display (block-pooled like the attention maps) and the share of every head's
    real attention each one keeps."""

    model: str
    titles: list[str]
    pool: int  # tokens per cell along each axis, as in the attention probe's maps
    cells: np.ndarray  # (masks, cells, cells) float32: the share of the cell's (query, key) pairs the mask allows
    kept: np.ndarray  # (masks, layers, heads) float32: mean over queries of the head's weight inside the mask

