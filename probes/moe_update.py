"""What training changed in a trained MoE, as a small file: the split of the dense neurons into experts, the update of
every router, and the experts' update from their converted weights at rank r per layer and weight (the stacked gate
and up projections of a layer's experts share their input side, the down projections their output side), in
float16. A build is its converted model plus this update, so the file is the build: the model store keeps it beside
each folder, and `moe-train --export` writes it alone."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from results.moe_trained import Recipe
from runtime.errors import LmscopeError

FILE_NAME = "update.safetensors"
STORED = torch.float16
_LEFT, _RIGHT = ".left", ".right"  # a weight's update as the product of two factors


@dataclass
class Update:
    """A build's update: added to the model that `recipe` converts from the dense model (`base`, a fingerprint) with
    this `assignment` (layers, intermediate) of neurons to experts and these `shared` experts (layers, S), by the
    build of version `version`, it gives the trained MoE."""

    recipe: Recipe
    base: str
    version: int
    assignment: np.ndarray
    shared: np.ndarray
    tensors: dict[str, torch.Tensor]  # a weight's name: its update, or name.left and name.right: its factors


def trained_weights(moe: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of what training changes: every MoE block's weights (routers, experts, shared experts)."""
    return {name: value.detach().clone() for name, value in moe.state_dict().items() if ".mlp." in name}


def _as_matrix(name: str, value: torch.Tensor) -> torch.Tensor:
    """A weight as one matrix whose low-rank part is kept: stacked experts (E, out, in) side by side along their
    hidden-size side, (E·2m, d) for the gate and up projections, (d, E·m) for the down projections."""
    if value.ndim == 2:
        return value
    if name.endswith("down_proj"):
        return value.transpose(0, 1).reshape(value.shape[1], -1)
    return value.reshape(-1, value.shape[-1])


def _from_matrix(name: str, matrix: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of _as_matrix for a weight of this shape."""
    if len(shape) == 2:
        return matrix
    if name.endswith("down_proj"):
        return matrix.reshape(shape[1], shape[0], shape[2]).transpose(0, 1)
    return matrix.reshape(shape)


def _kept_in_full(name: str, value: torch.Tensor, rank: int) -> bool:
    """Routers (and shared-expert gates) are small and decide the routing: their update is kept whole, as is every
    update at rank 0 or one whose matrix is no wider than the rank."""
    return rank == 0 or name.endswith("gate.weight") or min(_as_matrix(name, value).shape) <= rank


def extract(before: dict[str, torch.Tensor], moe: nn.Module, rank: int) -> dict[str, torch.Tensor]:
    """The update from the weights `before` training (trained_weights of the converted model) to moe's, the experts'
    at rank `rank` (0: in full): the best such approximation, by the truncated SVD."""
    update: dict[str, torch.Tensor] = {}
    for name, after in trained_weights(moe).items():
        delta = after.float() - before[name].float()
        if _kept_in_full(name, delta, rank):
            update[name] = delta.to(STORED)
            continue
        u, s, vh = torch.linalg.svd(_as_matrix(name, delta), full_matrices=False)
        update[name + _LEFT] = (u[:, :rank] * s[:rank]).to(STORED)
        update[name + _RIGHT] = vh[:rank].to(STORED)
    return update


def apply(moe: nn.Module, update: dict[str, torch.Tensor]) -> None:
    """Add the update to the converted model `moe`, in place."""
    state = moe.state_dict()
    for name, value in state.items():
        if name in update:
            delta = update[name].float()
        elif name + _LEFT in update:
            delta = _from_matrix(name, update[name + _LEFT].float() @ update[name + _RIGHT].float(), value.shape)
        else:
            continue
        with torch.no_grad():
            value.copy_((value.float() + delta).to(value.dtype))


def save(update: Update, folder: Path) -> None:
    """Write the update into `folder` as FILE_NAME."""
    metadata = {"recipe": json.dumps(asdict(update.recipe)), "base": update.base, "version": str(update.version)}
    tensors = {
        **update.tensors,
        "assignment": torch.from_numpy(update.assignment.astype(np.int16)),
        "shared": torch.from_numpy(update.shared.astype(np.int64)),
    }
    save_file({name: value.contiguous() for name, value in tensors.items()}, str(folder / FILE_NAME), metadata)


def read(folder: Path) -> Update:
    """The update written into `folder` by `save`."""
    path = folder / FILE_NAME
    try:
        with safe_open(str(path), "pt") as opened:
            metadata = opened.metadata()
        tensors = load_file(str(path))
        recipe = Recipe(**json.loads(metadata["recipe"]))
        version = int(metadata["version"])
        base = metadata["base"]
    except (OSError, SafetensorError, ValueError, KeyError, TypeError) as exc:
        raise LmscopeError(f"The trained MoE's update {path} is unreadable: {exc}") from exc
    assignment, shared = tensors.pop("assignment").numpy().astype(np.int64), tensors.pop("shared").numpy()
    return Update(recipe, base, version, assignment, shared, tensors)
