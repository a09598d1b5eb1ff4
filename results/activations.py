"""Massive activations: magnitudes of every block's output on a text, the entries that count as massive, their
consistency over a corpus, and the loss of a text with them removed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from results.errors import LmscopeError

# The kinds of token a massive activation sits on; ActivationResult.kinds and CorpusActivations.kinds index them.
KINDS = ("first token", "first delimiter", "later delimiter", "other token")


@dataclass(frozen=True)
class Thresholds:
    """What counts as massive: |value| above min_magnitude and above min_ratio times the layer's median |value|.

    The defaults are Sun et al.'s: larger than 100 and about 1,000 times the median.
    """

    min_magnitude: float = 100.0
    min_ratio: float = 1000.0

    def passes(self, magnitude: np.ndarray, median: np.ndarray | float) -> np.ndarray:
        """Which magnitudes count as massive against their layer's median."""
        return (magnitude > self.min_magnitude) & (magnitude > self.min_ratio * np.asarray(median))


@dataclass
class ActivationResult:
    """Magnitudes of every block's output on one text; layer l is the output of block l."""

    model: str
    fingerprint: str
    token_ids: np.ndarray
    tokens: list[str]
    kinds: np.ndarray  # index into KINDS per token
    max_abs: np.ndarray  # per layer: largest |h|
    median_abs: np.ndarray  # per layer: median |h| over tokens and features
    top_positions: np.ndarray  # layers x TOP: token of each of the largest-|h| entries, largest first
    top_dims: np.ndarray  # layers x TOP: feature dimension of each
    top_values: np.ndarray  # layers x TOP: signed value of each
    token_peak: np.ndarray  # (layers, tokens): largest |h| over the features
    dim_peak: np.ndarray  # (layers, features): largest |h| over the tokens

    @property
    def n_layers(self) -> int:
        return len(self.max_abs)

    @property
    def hidden_size(self) -> int:
        return self.dim_peak.shape[1]

    def check_layer(self, layer: int) -> None:
        """Raise a clear error for a layer this model does not have."""
        if not 0 <= layer < self.n_layers:
            raise LmscopeError(f"Layer {layer} does not exist: this model has layers 0 to {self.n_layers - 1}.")

    def ranked(self, rank: int) -> np.ndarray:
        """Per layer, the |h| of the rank-th largest entry (rank 1 = the largest)."""
        return np.abs(self.top_values[:, rank - 1])


@dataclass
class Massive:
    """One massive activation."""

    layer: int
    position: int
    token: str
    kind: str
    dim: int
    value: float
    ratio: float  # |value| over the layer's median |h|


@dataclass
class LayerActivations:
    """One block's output on one text, every value ((tokens, features), signed float32)."""

    model: str
    layer: int
    tokens: list[str]
    values: np.ndarray


@dataclass
class CorpusActivations:
    """The largest entries of every block's output on each of many sentences, with each entry's kind of token."""

    model: str
    fingerprint: str
    n_sentences: int
    hidden_size: int
    median_abs: np.ndarray  # (sentences, layers)
    dims: np.ndarray  # (sentences, layers, CORPUS_TOP), largest |h| first
    values: np.ndarray  # (sentences, layers, CORPUS_TOP), signed
    kinds: np.ndarray  # (sentences, layers, CORPUS_TOP): index into KINDS of each entry's token

    @property
    def n_layers(self) -> int:
        return self.median_abs.shape[1]



@dataclass
class Ablation:
    """Loss of one text with its massive activations zeroed, set to their corpus mean, or left alone, and with
    as many random activations zeroed instead."""

    model: str
    tokens: list[str]
    min_magnitude: float
    min_ratio: float
    everywhere: bool  # each massive entry edited at every layer where it is massive, not only where it first appears
    layers: np.ndarray  # the edited entries: layer, position and feature of each
    positions: np.ndarray
    dims: np.ndarray
    values: np.ndarray  # their values in the unedited model
    means: np.ndarray  # what "mean" sets them to: the corpus mean at the same layer, feature and kind of token
    n_without_mean: int  # entries the corpus never had as massive: they keep their own value under "mean"
    nll_base: np.ndarray  # per token 1..n-1, in nats
    nll_zeroed: np.ndarray
    nll_mean: np.ndarray
    nll_random: np.ndarray  # RANDOM_DRAWS x tokens: each draw zeroes as many random entries at the same layers

