"""Structured attention: masks against real attention, and the loss of a text under sliding windows and other
patterns."""

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
        means = {
            "window only": self.mean_window,
            **({f"window + {self.sinks} sinks": self.mean_sinks} if self.sinks else {}),
        }
        means["full attention"] = np.full(len(self.windows), self.mean_full)
        return [
            {
                "window": int(w),
                **{f"mean NLL, {name}": float(values[i]) for name, values in means.items()},
                **{f"perplexity, {name}": float(np.exp(values[i])) for name, values in means.items()},
            }
            for i, w in enumerate(self.windows)
        ]


@dataclass
class PatternSweep:
    """Mean NLL (nats) of a text with every layer under each structured pattern at each size, without and with the
    first `sinks` tokens kept visible, and the attention budget each kept: the share of the causal n(n+1)/2
    query-key pairs it allows."""

    model: str
    n_tokens: int
    patterns: list[str]  # the names the URL and the CLI use: sliding, dilated, global, block
    labels: list[str]  # the same in words
    settings: str  # the patterns' other settings in words (dilation, global tokens, random blocks)
    sizes: np.ndarray  # int, ascending: the window, or the block of block-sparse
    sinks: int
    nll_full: float
    nll: np.ndarray  # (patterns, sizes, 2 if sinks else 1): without sinks, then with them
    budget: np.ndarray  # the same shape, in (0, 1]

    def rows(self) -> list[dict[str, object]]:
        """One row per pattern, size and sink setting: budget, mean NLL and what it adds to full attention."""
        return [
            {
                "pattern": self.labels[i],
                "size": int(self.sizes[j]),
                "sinks": (0, self.sinks)[k],
                "budget": float(self.budget[i, j, k]),
                "mean NLL": float(self.nll[i, j, k]),
                "extra NLL": float(self.nll[i, j, k] - self.nll_full),
            }
            for i, j, k in np.ndindex(self.nll.shape)
        ]


@dataclass(frozen=True)
class WindowLoss:
    """Mean per-token NLL (nats) and perplexity of a text with full attention and with every layer under one
    structured pattern (a sliding window unless `pattern` says otherwise)."""

    model: str
    n_tokens: int
    pattern: str
    window: int  # the window, or the block of the block-sparse pattern
    sinks: int
    budget: float  # the share of the causal query-key pairs the pattern keeps
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
