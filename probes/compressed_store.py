"""Calibrated compressions in the model store: a model pruned by Wanda or SparseGPT, or quantized by GPTQ, is kept
by (model fingerprint, method, settings, calibration text), so that a second request computes nothing.

Each matrix is kept as what the method made of it, compactly: the pruned weights as a bit mask, plus the kept
values where the method changed them (SparseGPT re-fits them; Wanda keeps the original ones); a quantized matrix as
its integer codes and scales. Reading a file back gives bit for bit the matrices that were computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from probes.reconstruction import Quantized
from results.pruning import Compression
from runtime.handle import ModelHandle
from runtime.settings import settings
from runtime.store_files import write_atomically

# (module name, its original weight, the copy's weight): the matrices a compression rewrites
Target = tuple[str, torch.Tensor, torch.Tensor]

log = logging.getLogger(__name__)


def recipe(handle: ModelHandle, compression: Compression, calibration: list[list[int]], version: int) -> dict:
    """What decides the compressed matrices: the method and its settings, the calibration token ids, the code's
    version, and the model's float type and device (whose arithmetic the sweeps use)."""
    ids = np.asarray(calibration, dtype=np.int64)
    return {
        "method": compression.method,
        "amount": compression.amount,
        "pattern": compression.pattern,
        "group": compression.group,
        "kinds": list(compression.kinds),
        "calibration": f"{ids.shape[0]}x{ids.shape[1]}:{hashlib.sha256(ids.tobytes()).hexdigest()}",
        "version": version,
        "dtype": str(handle.dtype),
        "device": handle.device.type,
    }


def store_path(handle: ModelHandle, settings_: dict) -> Path:
    """compressed folder (LMSCOPE_COMPRESSED_DIR; in the model store) / fingerprint / method-digest.safetensors."""
    digest = hashlib.sha256(json.dumps(settings_, sort_keys=True).encode()).hexdigest()[:16]
    folder = re.sub(r"[^\w.-]", "_", handle.fingerprint)
    return settings().compressed_dir / folder / f"{settings_['method']}-{digest}.safetensors"


def _packed(mask: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(mask.cpu().numpy().ravel()))


def _unpacked(bits: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    mask = np.unpackbits(bits.numpy(), count=like.numel()).astype(bool)
    return torch.from_numpy(mask).view(like.shape).to(like.device)


def save_compressed(
    handle: ModelHandle, settings_: dict, targets: Sequence[Target], quantized: dict[str, Quantized]
) -> None:
    """Store the copy's compressed matrices (`quantized` holds GPTQ's codes and scales by module name)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, original, compressed in targets:
        if name in quantized:
            tensors[f"{name}:codes"] = quantized[name].codes.cpu().contiguous()
            tensors[f"{name}:scales"] = quantized[name].scales.cpu().contiguous()
            continue
        pruned = compressed == 0
        tensors[f"{name}:pruned"] = _packed(pruned)
        kept = compressed[~pruned]
        if not torch.equal(kept, original[~pruned]):
            tensors[f"{name}:kept"] = kept.cpu().contiguous()
    metadata = {"settings": json.dumps(settings_, sort_keys=True), "fingerprint": handle.fingerprint}
    if write_atomically(store_path(handle, settings_), save(tensors, metadata=metadata), "A compressed model"):
        evict(settings().compressed_dir, int(settings().compressed_store_gb * 1e9))


def evict(folder: Path, budget: int) -> None:
    """Delete the least recently used stored compressions until the rest take `budget` bytes at most (reading a
    file marks it used); a file another process deletes first is skipped."""
    files = []
    for path in folder.glob("*/*.safetensors"):
        try:
            files.append((path.stat().st_mtime, path.stat().st_size, path))
        except FileNotFoundError:
            continue
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files):
        if total <= budget:
            return
        path.unlink(missing_ok=True)
        total -= size


def _restored(stored: safe_open, keys: set[str], name: str, original: torch.Tensor, group: int | None) -> torch.Tensor:
    if f"{name}:codes" in keys:
        codes, scales = stored.get_tensor(f"{name}:codes"), stored.get_tensor(f"{name}:scales")
        if codes.shape != original.shape or scales.shape[0] != original.shape[0]:
            raise ValueError(f"{name}'s codes do not fit the matrix")
        return Quantized(codes, scales, group).weight(original.dtype).to(original.device)
    pruned = _unpacked(stored.get_tensor(f"{name}:pruned"), original)
    restored = torch.where(pruned, torch.zeros((), dtype=original.dtype, device=original.device), original)
    if f"{name}:kept" in keys:
        kept = stored.get_tensor(f"{name}:kept")
        if kept.dtype != original.dtype or kept.numel() != int((~pruned).sum()):
            raise ValueError(f"{name}'s kept values do not fit the matrix")
        restored[~pruned] = kept.to(original.device)
    return restored


def restore_compressed(handle: ModelHandle, settings_: dict, targets: Sequence[Target]) -> bool:
    """Write the stored compressed matrices into the copy's weights; False if there are none for these settings (a
    damaged or foreign file is ignored, to be computed and stored over). The copy may be partly written then."""
    path = store_path(handle, settings_)
    if not path.is_file():
        return False
    try:
        with contextlib.suppress(OSError):  # a read-only store is still read
            path.touch()  # used now: the last to be evicted
        with safe_open(str(path), framework="pt") as stored:
            metadata = stored.metadata() or {}
            if json.loads(metadata["settings"]) != json.loads(json.dumps(settings_, sort_keys=True)):
                raise ValueError("other settings")
            if metadata["fingerprint"] != handle.fingerprint:
                raise ValueError("another model")
            keys = set(stored.keys())
            with torch.no_grad():
                for name, original, target in targets:
                    target.copy_(_restored(stored, keys, name, original, settings_["group"] or None))
        return True
    except (OSError, SafetensorError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("The stored compressed model %s is unusable (%s); computing it again.", path, exc)
        return False
