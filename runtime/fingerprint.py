"""Content fingerprints of model files, memoised by (path, size, mtime) so a load hashes each file once."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from runtime.settings import settings

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
_CHUNK = 1 << 20


def _memo_path() -> Path:
    return settings().home / "file-digests.json"


def _read_memo(path: Path) -> dict[str, dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, reusing the last digest while its size and mtime are unchanged."""
    path = path.resolve()
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    memo_path = _memo_path()
    memo = _read_memo(memo_path)
    known = memo.get(str(path))
    if known and all(known.get(k) == v for k, v in stamp.items()):
        return known["sha256"]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    memo[str(path)] = {**stamp, "sha256": digest.hexdigest()}
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_path)
    except OSError:
        pass  # an unwritable home only costs a re-hash next time
    return memo[str(path)]["sha256"]


def folder_fingerprint(folder: Path) -> str:
    """Fingerprint of a model folder: its config.json plus the digest of every weight file in it."""
    config = json.loads((folder / "config.json").read_text())
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for weight in sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES):
        digest.update(f"{weight.name}:{file_digest(weight)}".encode())
    return digest.hexdigest()[:16]
