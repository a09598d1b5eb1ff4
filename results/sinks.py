"""Attention sinks: sink statistics of one text, the average attention over a corpus, and the sink's link to
massive activations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SINK_HEAD = 0.7  # a head that puts this share of its attention on the first token is a sink head


@dataclass
class SinkProfile:
    """Sink statistics of one text, per layer; positions index the attention maps' cells (tokens when pool is 1)."""

    model: str
    tokens: list[str]
    pool: int
    is_causal: bool
    sink_share: np.ndarray  # (layers, heads): mean over queries 1..n-1 of the weight on token 0
    received: np.ndarray  # (layers, cells): head-mean attention each cell gets, averaged over the queries after it
    sink_position: np.ndarray  # per layer: the cell receiving the most attention (the sink)
    uniform_share: float  # what token 0 would get if every query spread its attention evenly

    @property
    def layer_share(self) -> np.ndarray:
        """Sink share of each layer: the mean over its heads."""
        return self.sink_share.mean(axis=1)


@dataclass
class CorpusAttention:
    """Average attention over many sentences cut to the same length, per layer and head (StreamingLLM's Figure 2)."""

    model: str
    fingerprint: str
    is_causal: bool
    n_tokens: int
    token_ids: np.ndarray  # (sentences, n_tokens): what was averaged
    n_skipped: int  # sentences shorter than n_tokens, left out
    first_token: str | None  # the token every sentence starts with (a BOS or [CLS]), if they share one
    probabilities: np.ndarray  # (layers, heads, n, n), mean attention weights
    logits: np.ndarray  # (layers, heads, n, n), mean pre-softmax scores; NaN where masked
    layer_probabilities: np.ndarray  # (layers, n, n), also averaged over heads
    layer_logits: np.ndarray  # (layers, n, n)

    @property
    def n_sentences(self) -> int:
        return self.token_ids.shape[0]

    @property
    def n_layers(self) -> int:
        return self.probabilities.shape[0]


@dataclass
class MassiveLink:
    """Per layer: is the sink also where the residual stream entering the layer has its largest |value|?

    Positions index map cells like SinkProfile (a pooled cell's magnitude is the largest of its tokens').
    """

    model: str
    tokens: list[str]
    pool: int
    sink_position: np.ndarray  # per layer: the cell receiving the most attention
    sink_magnitude: np.ndarray  # per layer: largest |h| over the sink's features
    other_position: np.ndarray  # per layer: the other cell with the largest |h|
    other_magnitude: np.ndarray
    median_magnitude: np.ndarray  # per layer: median |h| over all tokens and features

    @property
    def sink_is_massive(self) -> np.ndarray:
        """Per layer: the sink holds the largest activation of the layer's input."""
        return self.sink_magnitude >= self.other_magnitude

    @property
    def ratio(self) -> np.ndarray:
        """Per layer: the sink's largest |h| over the median |h|."""
        return self.sink_magnitude / self.median_magnitude


@dataclass
class SinkNorms:
    """Per layer and head (layers, heads), over the queries after the first: what the first token gets of the
    attention weights and of the weighted value norms ‖a_ij f(x_j)‖ (Kobayashi et al. 2020)."""

    MEASURES = ("attention_share", "norm_share", "first_value_norm", "other_value_norm", "sink_norm", "output_norm")

    model: str
    tokens: list[str]
    attention_share: np.ndarray  # mean a_i0
    norm_share: np.ndarray  # mean a_i0 ‖f(x_0)‖ / Σ_j a_ij ‖f(x_j)‖
    first_value_norm: np.ndarray  # ‖f(x_0)‖
    other_value_norm: np.ndarray  # mean over j ≥ 1 of ‖f(x_j)‖
    sink_norm: np.ndarray  # mean a_i0 ‖f(x_0)‖
    output_norm: np.ndarray  # mean ‖Σ_j a_ij f(x_j)‖, the head's output

    @property
    def n_layers(self) -> int:
        return self.attention_share.shape[0]


@dataclass
class FirstKeyMasked:
    """The text's mean next-token loss (nats) under full attention, with the first token's key hidden from every
    later query, under a sliding window of `window` tokens, and under that window with the first `sinks` kept."""

    model: str
    n_tokens: int
    window: int
    sinks: int
    full: float
    masked: float
    window_alone: float
    window_sinks: float

    @property
    def losses(self) -> dict[str, float]:
        """Each attention's loss by its label."""
        return {
            "full attention": self.full,
            "first key masked": self.masked,
            f"window {self.window}": self.window_alone,
            f"window {self.window} + first {self.sinks}": self.window_sinks,
        }
