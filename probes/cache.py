"""The disk cache of probe results (diskcache): bounded, and never a reason for a probe to fail."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import diskcache

from probes.settings import settings

T = TypeVar("T")
log = logging.getLogger(__name__)
# What a broken, full or unwritable cache can raise; any of them means "compute without the cache".
_CACHE_ERRORS = (OSError, sqlite3.Error, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError)


@dataclass(frozen=True)
class Cached(Generic[T]):
    """A probe result, whether it came from the cache, and what went wrong with the cache if anything."""

    value: T
    hit: bool
    warning: str | None = None


def cache_key(fingerprint: str, probe: str, version: int, inputs: dict) -> str:
    """A stable key: model fingerprint + probe name + probe version + inputs and parameters."""
    payload = json.dumps([fingerprint, probe, version, inputs], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class ResultCache:
    """Probe results on disk, evicted least-recently-used beyond a size limit."""

    def __init__(self, directory: Path | None = None, size_limit_mb: int | None = None) -> None:
        conf = settings()
        self.directory = Path(directory or conf.cache_dir)
        self.size_limit = (size_limit_mb or conf.cache_size_mb) * 2**20
        self.problem: str | None = None
        self._store: diskcache.Cache | None = None
        try:
            self._store = diskcache.Cache(
                str(self.directory), size_limit=self.size_limit, eviction_policy="least-recently-used"
            )
        except _CACHE_ERRORS as exc:
            self.problem = f"The result cache at {self.directory} cannot be used ({exc}); results are computed but not saved."
            log.warning(self.problem)

    def fetch(self, key: str, compute: Callable[[], T]) -> Cached[T]:
        """The cached value for key, or compute it and store it; cache trouble only becomes a warning."""
        if self._store is None:
            return Cached(compute(), hit=False, warning=self.problem)
        try:
            value = self._store.get(key, default=None, retry=True)
        except _CACHE_ERRORS as exc:
            self._discard(key)
            return self._compute_and_store(key, compute, f"A cached result was unreadable ({type(exc).__name__}); recomputed.")
        if value is not None:
            return Cached(value, hit=True)
        return self._compute_and_store(key, compute, None)

    def _compute_and_store(self, key: str, compute: Callable[[], T], warning: str | None) -> Cached[T]:
        value = compute()
        try:
            self._store.set(key, value, retry=True)
        except _CACHE_ERRORS as exc:
            warning = f"The result could not be saved to the cache at {self.directory} ({exc})."
            log.warning(warning)
        return Cached(value, hit=False, warning=warning)

    def _discard(self, key: str) -> None:
        try:
            self._store.delete(key, retry=True)
        except _CACHE_ERRORS:
            pass

    def volume_mb(self) -> float:
        """Bytes on disk, in MiB (0 when the cache is unavailable)."""
        return self._store.volume() / 2**20 if self._store is not None else 0.0

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
