"""Operator settings, read from environment variables each time they are needed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    """Where lmscope keeps files and what it allows; see the README's environment table."""

    home: Path
    model_store: Path
    cache_dir: Path
    cache_size_mb: int
    max_tokens: int
    long_tokens: int  # LMSCOPE_LONG_TOKENS: the longest text of the views that read long texts (attention)
    trust_remote_code: bool
    allow_pickle: bool
    allow_downloads: bool
    model_roots: str | None  # LMSCOPE_MODEL_ROOTS as set: None (any model), "builtin", or folders separated by ":"
    max_model_gb: float  # the largest model, by the float32 size of its parameters, that will be loaded
    compressed_dir: Path  # LMSCOPE_COMPRESSED_DIR: where calibrated compressions are stored (in the model store)
    compressed_store_gb: float  # LMSCOPE_COMPRESSED_STORE_GB: calibrated compressions kept, least recently used go
    scheduler: str | None  # LMSCOPE_SCHEDULER: a Dask scheduler's address; probe computations run on its workers
    workers: int  # LMSCOPE_WORKERS: start a local Dask cluster of this many worker processes (0: none)
    cluster_fallback: bool  # LMSCOPE_CLUSTER_FALLBACK: compute here when the cluster cannot be reached
    worker_models: int  # LMSCOPE_WORKER_MODELS: models a cluster worker keeps loaded at most
    worker_threads: int  # LMSCOPE_WORKER_THREADS: threads of each task on a cluster worker (0: cores / task threads)
    device: str  # LMSCOPE_DEVICE: where this process places models: auto (a GPU when there is one), cpu, cuda, cuda:N
    dtype: str  # LMSCOPE_DTYPE: auto (bfloat16 on a GPU, float32 on the CPU), float32, bfloat16 or float16


def settings() -> Settings:
    """Current settings from the LMSCOPE_* environment variables."""
    home = Path(os.environ.get("LMSCOPE_HOME") or Path.home() / ".cache" / "lmscope").expanduser()
    model_store = Path(os.environ.get("LMSCOPE_MODEL_STORE") or home / "models").expanduser()
    return Settings(
        home=home,
        model_store=model_store,
        cache_dir=Path(os.environ.get("LMSCOPE_CACHE_DIR") or home / "results").expanduser(),
        cache_size_mb=max(1, _int("LMSCOPE_CACHE_SIZE_MB", 2048)),
        max_tokens=max(8, _int("LMSCOPE_MAX_TOKENS", 4096)),
        long_tokens=max(8, _int("LMSCOPE_LONG_TOKENS", 32768)),
        trust_remote_code=_flag("LMSCOPE_TRUST_REMOTE_CODE"),
        allow_pickle=_flag("LMSCOPE_ALLOW_PICKLE"),
        allow_downloads=_flag("LMSCOPE_ALLOW_DOWNLOADS"),
        model_roots=os.environ.get("LMSCOPE_MODEL_ROOTS", "").strip() or None,
        max_model_gb=_float("LMSCOPE_MAX_MODEL_GB", 8.0),
        compressed_dir=Path(os.environ.get("LMSCOPE_COMPRESSED_DIR") or model_store / "compressed").expanduser(),
        compressed_store_gb=max(0.0, _float("LMSCOPE_COMPRESSED_STORE_GB", 4.0)),
        scheduler=os.environ.get("LMSCOPE_SCHEDULER", "").strip() or None,
        workers=max(0, _int("LMSCOPE_WORKERS", 0)),
        cluster_fallback=_flag("LMSCOPE_CLUSTER_FALLBACK"),
        worker_models=max(1, _int("LMSCOPE_WORKER_MODELS", 2)),
        worker_threads=max(0, _int("LMSCOPE_WORKER_THREADS", 0)),
        device=os.environ.get("LMSCOPE_DEVICE", "").strip().lower() or "auto",
        dtype=os.environ.get("LMSCOPE_DTYPE", "").strip().lower() or "auto",
    )
