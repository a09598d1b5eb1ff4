"""Dropped attention heads: the loss of a text with single heads zeroed, and with more and more of them removed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def removal_order(delta: np.ndarray) -> np.ndarray:
    """Flat head indices (layer * heads + head) by ascending delta: the least important head first."""
    return np.argsort(np.asarray(delta).ravel(), kind="stable")


@dataclass
class DroppedHeads:
    """Head ablation on one text (Michel et al. 2019): a head is dropped by zeroing its output before the attention's
    output projection. NLLs are mean per-token negative log-likelihoods in nats."""

    model: str
    fingerprint: str
    n_tokens: int
    nll_base: float  # every head kept
    delta: np.ndarray  # (layers, heads) NLL increase with only that head dropped
    removed: np.ndarray  # (points,) numbers of heads dropped together, 0 first and every head last
    nll_by_importance: np.ndarray  # (points,) the removed[i] heads of least delta dropped
    nll_random: np.ndarray  # (seeds, points) the first removed[i] heads of a random order (seed s) dropped

    @property
    def n_layers(self) -> int:
        return int(self.delta.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.delta.shape[1])

    @property
    def n_seeds(self) -> int:
        return int(self.nll_random.shape[0])

    def importance_order(self) -> np.ndarray:
        """Flat head indices (layer * heads + head) in the order the importance curve removes them."""
        return removal_order(self.delta)
