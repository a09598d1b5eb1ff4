"""The derived MoE in the model store: the fitted MoEfication as safetensors with a manifest, checked when read,
built once when missing; and the derived model's handle made from a base SmolLM2 and it."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors
from torch import nn

from probes.batches import Progress
from probes.moe_modules import MoefiedMLP
from probes.moefication import BASE_NAME, DERIVED_NAME, EVAL_SENTENCES, HELD_OUT_EVERY, METHOD, VERSION, build
from probes.residual import blocks, submodule
from results.moefication import EXPERT_COUNTS, Moefication
from runtime.handle import ModelHandle
from runtime.placement import dtype_name
from runtime.settings import settings
from runtime.store_files import write_atomically

FILE_NAME = "moefication.safetensors"
MANIFEST_NAME = "manifest.json"

log = logging.getLogger(__name__)
_build_lock = threading.Lock()


def store_path(dtype: torch.dtype = torch.float32) -> Path:
    """The stored MoEfication (safetensors) of a base model held in `dtype`, in the model store; a manifest.json lies
    beside it. Each float type has its own (its corpus pass differs), so that processes holding the base model in
    different types do not rebuild each other's."""
    folder = settings().model_store / "derived" / DERIVED_NAME
    return (folder if dtype == torch.float32 else folder / dtype_name(dtype)) / FILE_NAME


def serialise(moefication: Moefication) -> bytes:
    """The MoEfication as safetensors bytes, what the store holds."""
    tensors = {}
    for e in EXPERT_COUNTS:
        tensors[f"assignments.{e}"] = moefication.assignments[e]
        tensors[f"router_weight.{e}"] = moefication.router_weight[e]
        tensors[f"router_bias.{e}"] = moefication.router_bias[e]
        tensors[f"router_recall.{e}"] = moefication.router_recall[e]
    metadata = {
        "version": str(VERSION),
        "base_fingerprint": moefication.base_fingerprint,
        "n_tokens": str(moefication.n_tokens),
        "build_seconds": repr(moefication.build_seconds),
    }
    return save_tensors(tensors, metadata=metadata)


def _is_balanced(assignment: np.ndarray, n_experts: int, shape: tuple[int, int]) -> bool:
    """Whether each row gives every neuron one of n_experts experts, all of the same size."""
    if assignment.shape != shape or assignment.min() < 0 or assignment.max() >= n_experts:
        return False
    sizes = np.stack([np.bincount(row, minlength=n_experts) for row in assignment.astype(np.int64)])
    return bool((sizes == shape[1] // n_experts).all())


def _deserialise(data: bytes, n_layers: int, intermediate: int, hidden: int) -> Moefication:
    """The stored MoEfication; ValueError if it is not one for this VERSION and these shapes."""
    tensors = load_tensors(data)
    # safetensors.numpy reads no metadata from bytes; the header is an 8-byte little-endian length, then JSON.
    metadata = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")]).get("__metadata__", {})
    if metadata.get("version") != str(VERSION):
        raise ValueError(f"version {metadata.get('version')}, expected {VERSION}")
    moefication = Moefication(
        base_fingerprint=metadata["base_fingerprint"],
        assignments={e: tensors[f"assignments.{e}"] for e in EXPERT_COUNTS},
        router_weight={e: tensors[f"router_weight.{e}"] for e in EXPERT_COUNTS},
        router_bias={e: tensors[f"router_bias.{e}"] for e in EXPERT_COUNTS},
        router_recall={e: tensors[f"router_recall.{e}"] for e in EXPERT_COUNTS},
        n_tokens=int(metadata["n_tokens"]),
        build_seconds=float(metadata["build_seconds"]),
    )
    for e in EXPERT_COUNTS:
        if (
            not _is_balanced(moefication.assignments[e], e, (n_layers, intermediate))
            or moefication.router_weight[e].shape != (n_layers, e, hidden)
            or moefication.router_bias[e].shape != (n_layers, e)
        ):
            raise ValueError(f"the E = {e} tensors do not fit the model")
    return moefication


def _manifest(moefication: Moefication, digest: str) -> dict:
    return {
        "name": DERIVED_NAME,
        "base": BASE_NAME,
        "base_fingerprint": moefication.base_fingerprint,
        "method": METHOD,
        "version": VERSION,
        "corpus": (
            f"probes/data/corpus.txt sentences {EVAL_SENTENCES}+ ({moefication.n_tokens} tokens; every "
            f"{HELD_OUT_EVERY}th sentence held out for the recall)"
        ),
        "expert_counts": list(EXPERT_COUNTS),
        "seconds": round(moefication.build_seconds, 1),
        "median_recall": {str(e): float(np.median(r)) for e, r in moefication.router_recall.items()},
        "sha256": digest,
    }


def _save(moefication: Moefication, data: bytes, path: Path) -> None:
    """Write the file atomically (a concurrent reader sees the old file or the new one), then its manifest."""
    if write_atomically(path, data, "The MoEfied model"):
        manifest = _manifest(moefication, hashlib.sha256(data).hexdigest())
        write_atomically(path.parent / MANIFEST_NAME, json.dumps(manifest, indent=1).encode(), "Its manifest")


def read_stored(handle: ModelHandle, path: Path) -> tuple[Moefication, bytes] | None:
    """The MoEfication stored at path for this base model, and its bytes; None if missing, stale or corrupt."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("The stored MoEfication at %s is unreadable (%s); rebuilding it.", path, exc)
        return None
    gate = submodule(blocks(handle)[0], "mlp.gate_proj", nn.Linear)
    try:
        moefication = _deserialise(data, handle.n_layers, gate.out_features, gate.in_features)
    except (SafetensorError, ValueError, KeyError, TypeError, OverflowError) as exc:
        log.warning("The stored MoEfication at %s is unusable (%s); rebuilding it.", path, exc)
        return None
    if moefication.base_fingerprint != handle.fingerprint:
        log.warning("The stored MoEfication at %s was built from another base model; rebuilding it.", path)
        return None
    return moefication, data


def stored_or_built(handle: ModelHandle, on_progress: Progress | None) -> tuple[Moefication, bytes]:
    """The MoEfication of the base model `handle` and its bytes: from the model store, else built and stored."""
    path = store_path(handle.dtype)
    with _build_lock:  # two sessions loading at once build once
        found = read_stored(handle, path)
        if found is not None:
            return found
        moefication = build(handle, on_progress)
        data = serialise(moefication)
        _save(moefication, data, path)
        return moefication, data


def derive(base: ModelHandle, moefication: Moefication, data: bytes) -> ModelHandle:
    """The derived model's handle: the dense base's MLPs replaced, in place, by MoefiedMLPs using `moefication`
    (`data`, its stored bytes, names it in the fingerprint)."""
    started = time.perf_counter()
    for layer, block in enumerate(blocks(base)):

        def per_layer(table: dict[int, np.ndarray]) -> dict[int, torch.Tensor]:
            return {e: torch.from_numpy(np.ascontiguousarray(v[layer])) for e, v in table.items()}

        tables = (moefication.assignments, moefication.router_weight, moefication.router_bias)
        mlp = MoefiedMLP(submodule(block, "mlp", nn.Module), *(per_layer(table) for table in tables))
        block.mlp = mlp.to(base.device)  # its routers' and tables' buffers beside the model's weights
    recall = ", ".join(f"E={e}: {np.median(r):.2f}" for e, r in moefication.router_recall.items())
    source = (
        f"derived: MoEfication of {BASE_NAME} ({'/'.join(map(str, EXPERT_COUNTS))} experts per MLP, clustered on "
        f"{moefication.n_tokens} corpus tokens; the fitted router finds the oracle's top E/4 experts at a median "
        f"rate of {recall})"
    )
    # A fingerprint of its own, so cached results of the derived model never mix with the base model's.
    fingerprint = hashlib.sha256(f"{base.fingerprint}:{hashlib.sha256(data).hexdigest()}".encode()).hexdigest()[:16]
    seconds = base.load_seconds + time.perf_counter() - started
    return ModelHandle(DERIVED_NAME, source, base.model, base.tokenizer, fingerprint, seconds)


def load_derived(base: ModelHandle, on_progress: Progress | None = None) -> ModelHandle:
    """The MoEfied SmolLM2 made from `base`, a SmolLM2 loaded for it alone (its MLPs are replaced in place); the
    MoEfication is built and stored on first use (on_progress then reports corpus sentences, then layers fitted,
    as steps done of steps in all)."""
    started = time.perf_counter()
    moefication, data = stored_or_built(base, on_progress)
    handle = derive(base, moefication, data)
    handle.load_seconds = base.load_seconds + time.perf_counter() - started
    return handle
