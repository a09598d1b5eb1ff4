"""See every attention layer as it runs, through transformers' own AttentionInterface.

Models are loaded with the attention implementation "lmscope": it calls the model's own eager attention
function unchanged, so outputs equal plain eager attention. Inside a `capturing` block it also hands each
layer's probabilities (and, on demand, its pre-softmax logits) to a callback. The callback sees one layer at a
time, so summaries of long texts never need every layer's (n, n) maps at once. Inside a `chunking` block the
attention is computed a chunk of queries at a time instead (runtime.chunked: no (n, n) scores and no (n, n) float
mask, optionally under a sliding window or an imposed structure: sliding, dilated, global + sliding, block-sparse),
and `timing` collects the seconds each layer's attention took.
"""

from __future__ import annotations

import contextvars
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
from transformers.modeling_utils import AttentionInterface

from runtime.chunked import CHUNK, chunked_attention, expanded, scores
from runtime.placement import host

IMPLEMENTATION = "lmscope"

# (layer, probabilities (batch, heads, queries, keys), a function returning the logits in that shape, NaN = masked),
# on the host in float32 whatever the model's device and float type
LayerCallback = Callable[[int, torch.Tensor, Callable[[], torch.Tensor]], None]
# (layer, first query, first key, probabilities, scores): one chunk of a layer's queries (runtime.chunked), on the host
ChunkedLayerCallback = Callable[[int, int, int, torch.Tensor, torch.Tensor], None]
# (layer, value states (batch, key/value heads, keys, head dim)) as the attention reads them, on the host in float32
ValuesCallback = Callable[[int, torch.Tensor], None]


@dataclass(frozen=True)
class Chunking:
    """Attention a chunk of queries at a time, each query limited to the last `window` keys (None: all earlier) and
    to the keys `allowed` lets it see ((queries, keys) bool, on top of the model's own masks; None: no more)."""

    window: int | None
    chunk: int = CHUNK
    allowed: np.ndarray | None = field(default=None, compare=False)


@dataclass
class _Capture:
    layer_of: dict[int, int]
    on_layer: LayerCallback | None = None
    chunking: Chunking | None = None
    seconds: list[float] | None = None  # each attention call's seconds, when asked for
    on_chunk: ChunkedLayerCallback | None = None  # each chunk's probabilities and scores, with its layer
    on_values: ValuesCallback | None = None  # each layer's value states, before its probabilities


_ACTIVE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("lmscope_capture", default=None)


def _model_eager(module: nn.Module) -> Callable:
    """The eager attention function of the model's own modeling file."""
    return sys.modules[type(module).__module__].eager_attention_forward


def attention_logits(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None, **kwargs
) -> torch.Tensor:
    """Pre-softmax scores as the model's eager attention forms them (q.k * scaling, soft-capped, plus the mask),
    in float32, with NaN where the mask hides a key."""
    key = expanded(query, key)
    logits = scores(module, query, key, **kwargs)
    if mask is not None:
        mask = mask[..., : key.shape[-2]]
        logits = (logits + mask.float()).masked_fill(mask <= torch.finfo(mask.dtype).min / 2, float("nan"))
    return logits


def _attention(module: nn.Module, query, key, value, attention_mask, **kwargs):
    capture = _ACTIVE.get()
    if capture is None:
        return _model_eager(module)(module, query, key, value, attention_mask, **kwargs)
    if capture.on_values is not None:
        capture.on_values(capture.layer_of[id(module)], host(value))
    started = time.perf_counter()
    if capture.chunking is not None:
        output, weights = _chunked(capture, capture.chunking, module, query, key, value, kwargs), None
    else:
        output, weights = _model_eager(module)(module, query, key, value, attention_mask, **kwargs)
    if capture.seconds is not None:
        if output.is_cuda:
            torch.cuda.synchronize(output.device)
        capture.seconds.append(time.perf_counter() - started)
    if capture.on_layer is not None and weights is not None:
        capture.on_layer(
            capture.layer_of[id(module)],
            host(weights),
            lambda: host(attention_logits(module, query, key, attention_mask, **kwargs)),
        )
    return output, weights


def _chunked(capture: _Capture, chunks: Chunking, module: nn.Module, query, key, value, kwargs: dict) -> torch.Tensor:
    """The attention output computed in chunks, each chunk handed to the capture's listener (on the host)."""
    heard = capture.on_chunk
    listener = None if heard is None else partial(_on_host, heard, capture.layer_of[id(module)])
    allowed = None if chunks.allowed is None else torch.from_numpy(chunks.allowed)
    return chunked_attention(module, query, key, value, chunks.window, chunks.chunk, listener, allowed, **kwargs)


def _on_host(
    heard: ChunkedLayerCallback, layer: int, start: int, first: int, weights: torch.Tensor, formed: torch.Tensor
) -> None:
    heard(layer, start, first, host(weights), host(formed))


def _mask(*args, **kwargs) -> torch.Tensor | None:
    """The eager attention's (n, n) additive mask; none when the attention is chunked (it masks as it goes)."""
    capture = _ACTIVE.get()
    return None if capture is not None and capture.chunking is not None else eager_mask(*args, **kwargs)


AttentionInterface.register(IMPLEMENTATION, _attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, _mask)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a model in layer order (those that dispatch through the interface)."""
    found = []
    for _, module in model.named_modules():
        source = sys.modules.get(type(module).__module__)
        if (
            hasattr(source, "eager_attention_forward")
            and "Attention" in type(module).__name__
            and any(isinstance(child, nn.Linear) for child in module.children())
        ):
            found.append(module)
    return found


@contextmanager
def capturing(
    model: nn.Module, on_layer: LayerCallback | None = None, on_values: ValuesCallback | None = None
) -> Iterator[None]:
    """Within the block, forward passes of `model` report each layer to on_layer (and its value states, first, to
    on_values)."""
    with _active(_Capture(_layers(model), on_layer, on_values=on_values)):
        yield


@contextmanager
def chunking(
    model: nn.Module,
    chunks: Chunking,
    seconds: list[float] | None = None,
    on_chunk: ChunkedLayerCallback | None = None,
) -> Iterator[None]:
    """Within the block, forward passes of `model` (one unpadded sequence) compute attention a chunk of queries at a
    time (`chunks`), append each attention call's seconds to `seconds` when given, and hand each chunk to
    `on_chunk` when given."""
    with _active(_Capture(_layers(model), chunking=chunks, seconds=seconds, on_chunk=on_chunk)):
        yield


@contextmanager
def timing(model: nn.Module, seconds: list[float]) -> Iterator[None]:
    """Within the block, forward passes of `model` append each attention call's seconds to `seconds`."""
    with _active(_Capture(_layers(model), seconds=seconds)):
        yield


def _layers(model: nn.Module) -> dict[int, int]:
    return {id(m): i for i, m in enumerate(attention_modules(model))}


@contextmanager
def _active(capture: _Capture) -> Iterator[None]:
    token = _ACTIVE.set(capture)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
