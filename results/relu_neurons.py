"""Dead ReLU neurons in a network that really uses ReLU: how many hidden activations are exactly zero, and which
neurons never fire, before and after training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ReluNeurons:
    """Per stage ("initialised", "trained") and hidden layer, over the test inputs: the share of activations that are
    exactly 0, each neuron's firing rate (the share of inputs on which it is above 0), and the dead neurons (rate 0)."""

    dataset: str
    layer_sizes: tuple[int, ...]
    seed: int
    n_inputs: int
    stages: list[str]
    accuracy: np.ndarray  # (stages,) test accuracy
    zero_share: np.ndarray  # (stages, hidden layers)
    rates: list[list[np.ndarray]]  # [stage][hidden layer]: (neurons,) firing rates

    @property
    def dead(self) -> np.ndarray:
        """(stages, hidden layers): neurons that fire on no test input."""
        return np.array([[int((r == 0).sum()) for r in stage] for stage in self.rates])
