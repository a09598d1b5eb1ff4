"""Lottery tickets: test accuracy of a small network pruned iteratively, against the share of weights it keeps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LotteryResult:
    """Iterative magnitude pruning with rewinding (Frankle and Carbin 2019) on a small MLP, per seed and round.

    Round 0 is the dense network, the same for the three lines; in round r the winning ticket is the network the
    pruning found, rewound to its original initialisation and trained again, "reinit" the same masks trained from
    a fresh initialisation, and "random mask" random masks of the same per-layer sparsity from the original one.
    """

    dataset: str
    layer_sizes: tuple[int, ...]  # widths, input first: (64, 300, 100, 10)
    prune_rate: float  # share of the remaining weights pruned per round (the output layer at half of it)
    epochs: int
    batch_size: int
    learning_rate: float
    n_train: int
    n_test: int
    remaining: np.ndarray  # (rounds + 1,) share of all weights kept, 1.0 first
    remaining_per_layer: np.ndarray  # (rounds + 1, layers)
    accuracy_ticket: np.ndarray  # (seeds, rounds + 1) test accuracy
    accuracy_reinit: np.ndarray  # (seeds, rounds + 1)
    accuracy_random_mask: np.ndarray  # (seeds, rounds + 1)

    @property
    def n_seeds(self) -> int:
        return int(self.accuracy_ticket.shape[0])

    @property
    def n_rounds(self) -> int:
        return len(self.remaining) - 1

    @property
    def dense(self) -> np.ndarray:
        """(seeds,) the dense network's test accuracy."""
        return self.accuracy_ticket[:, 0]

    def lines(self) -> dict[str, np.ndarray]:
        """The three lines by name, each (seeds, rounds + 1)."""
        return {
            "winning ticket": self.accuracy_ticket,
            "reinit": self.accuracy_reinit,
            "random mask": self.accuracy_random_mask,
        }

    def nearest_round(self, share: float) -> int:
        """The pruned round whose share of weights remaining is closest to `share` (on a log scale)."""
        return 1 + int(np.argmin(np.abs(np.log(self.remaining[1:]) - np.log(share))))
