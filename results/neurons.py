"""MLP neuron statistics: a histogram of pre-activations per layer and each neuron's largest one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Histogram of pre-activations per layer: bins of 0.05 from -8 to 8 (values beyond go to the end bins), so
# the share of active neurons can be read off at any threshold on that grid.
EDGES = np.round(np.linspace(-8.0, 8.0, 321), 2)


@dataclass
class NeuronStats:
    """Pre-activation statistics of every MLP neuron over some tokens."""

    model: str
    activation: str
    gated: bool  # the neuron's output is act(z) times an up projection
    n_sequences: int
    n_tokens: int
    counts: np.ndarray  # (layers, bins): histogram of z over tokens and neurons; bin i is (EDGES[i], EDGES[i+1]]
    peak: np.ndarray  # (layers, neurons): the largest z over the tokens

    @property
    def n_neurons(self) -> int:
        return self.peak.shape[1]

