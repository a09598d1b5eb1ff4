"""See every attention layer as it runs, through transformers' own AttentionInterface.

Models are loaded with the attention implementation "lmscope": it calls the model's own eager attention
function unchanged, so outputs equal plain eager attention. Inside a `capturing` block it also hands each
layer's probabilities (and, on demand, its pre-softmax logits) to a callback, and can impose an extra
structural mask (sliding window, dilated, global + sliding) on every layer. The callback sees one layer at a
time, so summaries of long texts never need every layer's (n, n) maps at once.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from runtime.placement import host

IMPLEMENTATION = "lmscope"

# (layer, probabilities (batch, heads, queries, keys), a function returning the logits in that shape, NaN = masked),
# on the host in float32 whatever the model's device and float type
LayerCallback = Callable[[int, torch.Tensor, Callable[[], torch.Tensor]], None]


@dataclass
class _Capture:
    layer_of: dict[int, int]
    on_layer: LayerCallback | None
    allowed: np.ndarray | None  # (queries, keys) bool: what the imposed structure lets each query see


_ACTIVE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("lmscope_capture", default=None)


def _model_eager(module: nn.Module) -> Callable:
    """The eager attention function of the model's own modeling file."""
    return sys.modules[type(module).__module__].eager_attention_forward


def _impose(mask: torch.Tensor | None, allowed: np.ndarray, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """The model's additive mask with the structure's forbidden positions also set to the dtype's minimum."""
    lowest = torch.finfo(query.dtype).min
    keep = torch.as_tensor(np.ascontiguousarray(allowed[-query.shape[-2] :, : key.shape[-2]]), device=query.device)
    blocked = torch.where(keep, 0.0, lowest).to(query.dtype)[None, None]
    return blocked if mask is None else (mask + blocked).clamp(min=lowest)


def attention_logits(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None, **kwargs
) -> torch.Tensor:
    """Pre-softmax scores as the model's eager attention forms them (q.k * scaling, soft-capped, plus the mask),
    in float32, with NaN where the mask hides a key."""
    if key.shape[1] != query.shape[1]:  # grouped-query attention: each key head serves several query heads
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    scaling = kwargs.get("scaling") or getattr(module, "scaling", None) or query.shape[-1] ** -0.5
    logits = torch.matmul(query, key.transpose(2, 3)).float() * scaling
    if softcap := kwargs.get("softcap"):
        logits = torch.tanh(logits / softcap) * softcap
    if mask is not None:
        mask = mask[..., : key.shape[-2]]
        logits = (logits + mask.float()).masked_fill(mask <= torch.finfo(mask.dtype).min / 2, float("nan"))
    return logits


def _attention(module: nn.Module, query, key, value, attention_mask, **kwargs):
    capture = _ACTIVE.get()
    if capture is not None and capture.allowed is not None:
        attention_mask = _impose(attention_mask, capture.allowed, query, key)
    output, weights = _model_eager(module)(module, query, key, value, attention_mask, **kwargs)
    if capture is not None and capture.on_layer is not None:
        capture.on_layer(
            capture.layer_of[id(module)],
            host(weights),
            lambda: host(attention_logits(module, query, key, attention_mask, **kwargs)),
        )
    return output, weights


AttentionInterface.register(IMPLEMENTATION, _attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, eager_mask)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a model in layer order (those that dispatch through the interface)."""
    found = []
    for _, module in model.named_modules():
        source = sys.modules.get(type(module).__module__)
        if hasattr(source, "eager_attention_forward") and "Attention" in type(module).__name__ and any(
            isinstance(child, nn.Linear) for child in module.children()
        ):
            found.append(module)
    return found


@contextmanager
def capturing(model: nn.Module, on_layer: LayerCallback | None = None, allowed: np.ndarray | None = None) -> Iterator[None]:
    """Within the block, forward passes of `model` report each layer to on_layer and obey the `allowed` mask."""
    layer_of = {id(m): i for i, m in enumerate(attention_modules(model))}
    token = _ACTIVE.set(_Capture(layer_of, on_layer, allowed))
    try:
        yield
    finally:
        _ACTIVE.reset(token)
