"""The residual stream between blocks: each block's output, read and edited through per-call forward hooks
(`runtime.hooks`).

Block l's output is what output_hidden_states reports as hidden_states[l + 1], except for the last block of
models with a final norm, where transformers reports the normed state instead; the hooks see the block itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.hooks import observing
from runtime.placement import host

# (layer, the block's output hidden states (batch, tokens, features)) -> a replacement, or None to keep them
BlockCallback = Callable[[int, torch.Tensor], torch.Tensor | None]
M = TypeVar("M", bound=nn.Module)


def blocks(handle: ModelHandle) -> nn.ModuleList:
    """The model's transformer blocks in order: its module list with one entry per hidden layer."""
    for _, module in handle.model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == handle.n_layers:
            return module
    raise LmscopeError(f"lmscope could not find the {handle.n_layers} blocks of model '{handle.name}'.")


def submodule(module: nn.Module, path: str, kind: type[M]) -> M:
    """The module at `path` under `module` (such as "mlp.down_proj"), checked to be a `kind`: torch types a child
    module read as an attribute only as Tensor | Module."""
    found = module.get_submodule(path)
    if not isinstance(found, kind):
        raise LmscopeError(f"lmscope expects {path} of {type(module).__name__} to be a {kind.__name__}.")
    return found


@contextmanager
def hooked_blocks(handle: ModelHandle, on_output: BlockCallback) -> Iterator[None]:
    """Within the block, and only in this call's context, every block's output passes through on_output, which may
    replace it."""

    def hook(layer: int) -> Callable:
        def call(module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> torch.Tensor | tuple | None:
            hidden = output[0] if isinstance(output, tuple) else output
            replaced = on_output(layer, hidden)
            if replaced is None:
                return None
            return (replaced, *output[1:]) if isinstance(output, tuple) else replaced

        return call

    with observing(forward={block: hook(i) for i, block in enumerate(blocks(handle))}):
        yield


class _Enough(Exception):
    """Raised by a hook to end a forward pass once the layers asked for have run."""


def block_output(handle: ModelHandle, token_ids: np.ndarray, layer: int) -> np.ndarray:
    """The output of one block, float32, on one sequence (tokens, features) or a batch of equal-length ones
    (batch, tokens, features); later blocks are not run."""
    if not 0 <= layer < handle.n_layers:
        raise LmscopeError(f"Layer {layer} does not exist: this model has layers 0 to {handle.n_layers - 1}.")
    kept: list[torch.Tensor] = []

    def keep(i: int, hidden: torch.Tensor) -> None:
        if i == layer:
            kept.append(host(hidden).clone())
            raise _Enough

    with hooked_blocks(handle, keep):
        try:
            forward(handle, token_ids)
        except _Enough:
            pass
    return kept[0].numpy() if np.ndim(token_ids) == 2 else kept[0][0].numpy()
