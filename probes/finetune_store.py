"""Fine-tuning runs in the model store: each run's updates ΔW and losses as one safetensors file, under the model's
fingerprint and named by a digest of its recipe, written atomically; a later request reads it instead of training."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from probes.finetune_train import Recipe, Trained
from runtime.handle import ModelHandle
from runtime.settings import settings
from runtime.store_files import file_lock, write_atomically

FOLDER = "finetune"
_DELTA = "delta."

log = logging.getLogger(__name__)


def store_path(handle: ModelHandle, recipe: Recipe) -> Path:
    """Where a run of this recipe on this model is stored: model store / finetune / fingerprint / method-digest."""
    digest = hashlib.sha256(json.dumps(recipe.settings(), sort_keys=True).encode()).hexdigest()[:16]
    folder = re.sub(r"[^\w.-]", "_", handle.fingerprint)
    return settings().model_store / FOLDER / folder / f"{recipe.method}-{digest}.safetensors"


def training_lock(handle: ModelHandle, recipe: Recipe) -> threading.Lock:
    """The lock a request holds while it trains and stores this run, so that this process trains each run once."""
    return file_lock(store_path(handle, recipe))


def save_run(handle: ModelHandle, recipe: Recipe, trained: Trained) -> None:
    """Store a run (a reader sees the whole file or none); an unwritable store only costs training again next
    time."""
    tensors = {f"{_DELTA}{name}": delta for name, delta in trained.deltas.items()}
    tensors |= {"loss_train": trained.loss_train, "eval_steps": trained.eval_steps}
    tensors["loss_heldout"] = trained.loss_heldout
    metadata = {
        "recipe": json.dumps(recipe.settings(), sort_keys=True),
        "fingerprint": handle.fingerprint,
        "trained_params": str(trained.trained_params),
        "total_params": str(trained.total_params),
        "seconds": repr(trained.seconds),
    }
    write_atomically(store_path(handle, recipe), save(tensors, metadata=metadata), "A fine-tuning run")


def load_run(handle: ModelHandle, recipe: Recipe, shapes: dict[str, tuple[int, int]]) -> Trained | None:
    """The stored run, if there is one for this model and recipe with an update of the right shape for each matrix
    in `shapes` (by module name); None otherwise (a damaged file is ignored and trained over)."""
    path = store_path(handle, recipe)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as stored:
            metadata = stored.metadata() or {}
            tensors = {key: stored.get_tensor(key) for key in stored.keys()}
        if json.loads(metadata["recipe"]) != json.loads(json.dumps(recipe.settings(), sort_keys=True)):
            raise ValueError("another recipe")
        deltas = {name: tensors[f"{_DELTA}{name}"] for name in shapes}
        if metadata["fingerprint"] != handle.fingerprint or any(deltas[n].shape != s for n, s in shapes.items()):
            raise ValueError("another model")
        return Trained(
            deltas=deltas,
            loss_train=tensors["loss_train"],
            eval_steps=tensors["eval_steps"],
            loss_heldout=tensors["loss_heldout"],
            trained_params=int(metadata["trained_params"]),
            total_params=int(metadata["total_params"]),
            seconds=float(metadata["seconds"]),
        )
    except (OSError, SafetensorError, ValueError, KeyError) as exc:
        log.warning("The stored fine-tuning run %s is unreadable (%s); training again.", path, exc)
        return None
