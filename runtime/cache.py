"""The disk cache of probe results (diskcache): bounded, free of pickle, and never a reason for a probe to fail.

Values are stored as the bytes `runtime.codec` writes (JSON and .npy blocks), under string keys; the cache's own
pickle support is switched off both ways, so a tampered cache folder (a shared Docker volume) can at worst make a
result be computed again. Every miss is computed through `runtime.jobs`: once for all concurrent requests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW, UNKNOWN

from runtime import codec, jobs
from runtime.settings import settings

T = TypeVar("T")
log = logging.getLogger(__name__)
# What a broken, full or unwritable cache can raise; any of them means "compute without the cache".
_CACHE_ERRORS = (OSError, sqlite3.Error, ValueError, TypeError)


@dataclass(frozen=True)
class Cached(Generic[T]):
    """A probe result, whether it came from the cache, and what went wrong with the cache if anything."""

    value: T
    hit: bool
    warning: str | None = None


def cache_key(fingerprint: str, probe: str, version: int, inputs: dict, depends: dict[str, int] | None = None) -> str:
    """A stable key: model fingerprint + probe name + probe version + inputs and parameters (+ the versions of the
    probes whose results it uses, by name)."""
    parts = [fingerprint, probe, version, inputs, *([depends] if depends else [])]
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class BytesOnlyDisk(diskcache.Disk):
    """diskcache's storage with pickle refused: keys are strings, values bytes, and nothing else is read back."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if not isinstance(key, str):
            raise TypeError("result cache keys are strings")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise ValueError("refused: a pickled key in the result cache")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple:
        if not (read or isinstance(value, bytes)):
            raise TypeError("result cache values are bytes")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode not in (MODE_RAW, MODE_BINARY):
            raise ValueError(f"refused: a result cache value stored in mode {mode} (only raw bytes are read)")
        return super().fetch(mode, filename, value, read)


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
                str(self.directory),
                disk=BytesOnlyDisk,
                size_limit=self.size_limit,
                eviction_policy="least-recently-used",
            )
        except _CACHE_ERRORS as exc:
            self.problem = (
                f"The result cache at {self.directory} cannot be used ({exc}); results are computed but not saved."
            )
            log.warning(self.problem)

    def fetch(self, key: str, compute: Callable[[], T]) -> Cached[T]:
        """The cached value for key, or compute it (once for all concurrent requests) and store it; cache trouble
        only becomes a warning."""
        found, warning = self._read(key)
        if found is not None:
            return Cached(found, hit=True)
        return jobs.executor().run(key, compute, lambda dispatched: self._compute_and_store(key, dispatched, warning))

    def _read(self, key: str) -> tuple[Any, str | None]:
        """(the stored value or None, a warning when a stored value could not be read and was discarded)."""
        if self._store is None:
            return None, self.problem
        try:
            data = self._store.get(key, default=None, retry=True)
            if data is None:
                return None, None
            if not isinstance(data, bytes):  # BytesOnlyDisk stores nothing else
                raise codec.Undecodable(f"a {type(data).__name__} in the result cache")
            return codec.decode(data), None
        except (*_CACHE_ERRORS, codec.Undecodable) as exc:
            self._discard(key)
            return None, f"A cached result was unreadable ({type(exc).__name__}); recomputed."

    def _compute_and_store(self, key: str, compute: Callable[[], T], warning: str | None) -> Cached[T]:
        found, _ = self._read(key)  # computed by another process while this request waited
        if found is not None:
            return Cached(found, hit=True)
        value = compute()
        if self._store is None:
            return Cached(value, hit=False, warning=warning)
        try:
            self._store.set(key, codec.encode(value), retry=True)
        except _CACHE_ERRORS as exc:
            warning = f"The result could not be saved to the cache at {self.directory} ({exc})."
            log.warning(warning)
        return Cached(value, hit=False, warning=warning)

    def _discard(self, key: str) -> None:
        if self._store is None:
            return
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
