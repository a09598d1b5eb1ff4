"""Attention probe: every layer's and query head's attention map, with per-head summaries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probes.cache import Cached, ResultCache, cache_key
from probes.errors import LmscopeError
from probes.forward import forward
from probes.models import ModelHandle
from probes.settings import settings
from probes.text import Encoded, encode

NAME = "attention"
VERSION = 1
SUMMARIES = ("sink_share", "previous_token", "entropy")


@dataclass
class AttentionResult:
    """Attention maps (layers x query heads x queries x keys, rows sum to 1) and per-head summaries."""

    model: str
    fingerprint: str
    token_ids: np.ndarray
    tokens: list[str]
    is_causal: bool
    maps: np.ndarray  # float16, (n_layers, n_heads, n_tokens, n_tokens)
    sink_share: np.ndarray  # (n_layers, n_heads): mean over queries 1..n-1 of the weight on key 0
    previous_token: np.ndarray  # (n_layers, n_heads): mean over queries 1..n-1 of the weight on key q-1
    entropy: np.ndarray  # (n_layers, n_heads): mean over queries of the row entropy, in nats

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


def head_summaries(layer_maps: np.ndarray) -> dict[str, np.ndarray]:
    """Sink share, previous-token share and entropy of each head of one layer, from (heads, q, k) maps."""
    maps = layer_maps.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(maps > 0, maps * np.log(maps), 0.0)
    return {
        "sink_share": maps[:, 1:, 0].mean(axis=-1),
        "previous_token": np.diagonal(maps, offset=-1, axis1=1, axis2=2).mean(axis=-1),
        "entropy": -plogp.sum(axis=-1).mean(axis=-1),
    }


def compute(handle: ModelHandle, encoded: Encoded) -> AttentionResult:
    """Run the model once with output_attentions and summarise every head."""
    outputs = forward(handle, encoded.token_ids, output_attentions=True)
    if not outputs.attentions or outputs.attentions[0] is None:
        raise LmscopeError(f"Model '{handle.name}' returned no attention weights (it needs eager attention).")
    layers = [a[0].float().numpy() for a in outputs.attentions]
    per_layer = [head_summaries(m) for m in layers]
    summaries = {k: np.stack([s[k] for s in per_layer]).astype(np.float32) for k in SUMMARIES}
    return AttentionResult(
        model=handle.name,
        fingerprint=handle.fingerprint,
        token_ids=encoded.token_ids,
        tokens=encoded.tokens,
        is_causal=handle.is_causal,
        maps=np.stack(layers).astype(np.float16),
        **summaries,
    )


def run(handle: ModelHandle, text: str, cache: ResultCache) -> Cached[AttentionResult]:
    """Attention of the model on the text, from the disk cache when it has been computed before."""
    encoded = encode(handle, text, settings().max_tokens)
    if len(encoded.token_ids) < 2:
        raise LmscopeError("Attention needs at least two tokens: type a longer text.")
    key = cache_key(handle.fingerprint, NAME, VERSION, {"token_ids": encoded.token_ids.tolist()})
    return cache.fetch(key, lambda: compute(handle, encoded))
