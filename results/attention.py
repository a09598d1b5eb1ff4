"""The attention probe's result: per-head summaries and (block-pooled) maps of every head."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from results.errors import LmscopeError


@dataclass
class AttentionResult:
    """Per-head summaries (layers, heads) and attention maps (layers, heads, cells, cells)."""

    model: str
    fingerprint: str
    token_ids: np.ndarray
    tokens: list[str]
    is_causal: bool
    delimiters: np.ndarray  # bool per token: punctuation, newline, or a special token after the first
    specials: np.ndarray  # bool per token: a special token ([SEP], <eos>) after the first
    pool: int  # tokens per map cell along each axis; 1 means the maps are exact
    maps: np.ndarray  # float16; a cell is the queries' mean total weight on the cell's keys, so rows sum to 1
    logits: np.ndarray | None  # float16 pre-softmax scores, pooled like maps (mean of visible scores); NaN = masked
    sink_share: np.ndarray  # mean over queries 1..n-1 of the weight on key 0
    previous_token: np.ndarray  # mean over queries 1..n-1 of the weight on key q-1
    delimiter_share: np.ndarray  # mean over queries 1..n-1 of the weight on delimiter tokens
    special_share: np.ndarray  # mean over queries 1..n-1 of the weight on special tokens after the first
    mean_distance: np.ndarray  # mean over queries of sum_k weight * |q - k|, in tokens
    entropy: np.ndarray  # mean over queries of the row entropy, in nats
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # extra per-head scores asked for by the caller

    @property
    def n_layers(self) -> int:
        return self.maps.shape[0]

    @property
    def n_heads(self) -> int:
        return self.maps.shape[1]

    def check_head(self, layer: int, head: int) -> None:
        """Raise a clear error for a layer or head this model does not have."""
        if not 0 <= layer < self.n_layers:
            raise LmscopeError(f"Layer {layer} does not exist: this model has layers 0 to {self.n_layers - 1}.")
        if not 0 <= head < self.n_heads:
            raise LmscopeError(f"Head {head} does not exist: this model has heads 0 to {self.n_heads - 1}.")

