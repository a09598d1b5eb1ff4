"""Attention computed a chunk of queries at a time, so that its memory grows linearly with the text.

Each chunk of queries scores only the keys it may see: every earlier key for full attention (memory: chunk x n
scores, the idea behind FlashAttention's tiling; time still n²), or the last `reach` keys under a sliding window
(chunk x (chunk + reach) scores; time and memory linear in n), and optionally under an imposed structure (a
boolean (n, n) array of the pairs a query may see, read a chunk of rows at a time). The scores are formed as the
model's eager attention forms them (q.k x scaling, soft-capped where the model caps them), and a layer's own
sliding window (Gemma 3's local layers) is kept, so with no window imposed the output equals the model's eager
attention. An encoder's chunks see every key. The mask is built here as it goes, for one unpadded sequence.
`on_chunk` hears each chunk's probabilities and scores, so that summaries of a long text are computed without its
(n, n) maps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from runtime.errors import LmscopeError

CHUNK = 512  # queries per chunk
# The score of a hidden key, as in the model's eager additive masks: its probability is exactly 0, as under -inf, and
# weights x scores stay finite (0), so that sums over a chunk's rows need no masking.
HIDDEN = torch.finfo(torch.float32).min
# (first query, first key, probabilities (batch, heads, queries, keys), scores before the softmax with HIDDEN where
# a key is hidden), both float32
ChunkCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


def expanded(query: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Key or value heads repeated to the query heads (grouped-query attention: each serves several query heads)."""
    heads = query.shape[1]
    return states if states.shape[1] == heads else states.repeat_interleave(heads // states.shape[1], dim=1)


def scores(module: nn.Module, query: torch.Tensor, key: torch.Tensor, **kwargs) -> torch.Tensor:
    """Pre-softmax scores as the model's eager attention forms them, before any mask: q.k x scaling, soft-capped
    where the model caps them, in float32 (`key` already expanded to the query heads)."""
    scaling = kwargs.get("scaling") or getattr(module, "scaling", None) or query.shape[-1] ** -0.5
    formed = torch.matmul(query, key.transpose(2, 3)).float().mul_(scaling)  # a new tensor either way: in place
    if softcap := kwargs.get("softcap"):
        formed.div_(softcap).tanh_().mul_(softcap)
    return formed


def chunked_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    window: int | None,
    chunk: int = CHUNK,
    on_chunk: ChunkCallback | None = None,
    allowed: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """Attention output (batch, queries, heads, head dim), as transformers' attention functions return it, causal
    unless the module says otherwise, with each query limited to the last `window` keys (None: all earlier keys), to
    the layer's own sliding window (`kwargs["sliding_window"]`) and to the keys `allowed` (n, n) lets it see."""
    if kwargs.get("s_aux") is not None:
        raise LmscopeError(f"{type(module).__name__} adds learned sink logits, which chunked attention leaves out.")
    causal = getattr(module, "is_causal", True)
    n_heads, n = query.shape[1], query.shape[2]
    key, value = expanded(query, key), expanded(query, value)
    windows = [w for w in (window, kwargs.get("sliding_window")) if w] if causal else []
    reach = min(windows) if windows else None
    positions = torch.arange(n, device=query.device)
    output = query.new_empty(query.shape[0], n, n_heads, value.shape[-1])
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        first = 0 if reach is None else max(0, start - reach + 1)
        last = end if causal else n
        formed = scores(module, query[:, :, start:end], key[:, :, first:last], **kwargs)
        if causal:  # only two bands of columns can hold hidden keys: the chunk's own keys, and its first keys
            queries = positions[start:end, None]
            own = formed[..., start - first : end - first]
            own.masked_fill_(positions[None, start:end] > queries, HIDDEN)
            if reach is not None:
                earliest = formed[..., : end - start]
                earliest.masked_fill_(queries - positions[None, first : first + end - start] >= reach, HIDDEN)
        if allowed is not None:
            formed.masked_fill_(~allowed[start:end, first:last].to(formed.device), HIDDEN)
        weights = torch.softmax(formed, dim=-1)
        if on_chunk is not None:
            on_chunk(start, first, weights, formed)
        output[:, start:end] = torch.matmul(weights.to(value.dtype), value[:, :, first:last]).transpose(1, 2)
    return output
