"""Files that lmscope computes once and keeps in the model store: written atomically, one lock per file.

An unwritable store costs computing again next time, never a failed request: writing reports failure and logs it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from runtime.errors import LmscopeError

ABANDONED_S = 24 * 3600  # a store build's private folder untouched this long was left by a killed process

log = logging.getLogger(__name__)
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def write_atomically(path: Path, data: bytes, what: str) -> bool:
    """Write `data` to path through a temporary file renamed into place, so that a reader (in any process) sees the
    old file or the new one, never part of one; False (and a warning naming `what`) if the store is unwritable."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's file is private; the store's other files are not
        os.replace(tmp, path)
        return True
    except OSError as exc:
        log.warning("%s could not be stored at %s (%s); it will be computed again next time.", what, path, exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return False


def file_lock(path: Path) -> threading.Lock:
    """The lock that a request holds while it computes and stores the file at `path`, so that sessions asking for
    the same file at once compute it once in this process."""
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def _sweep_abandoned(target: Path) -> None:
    """Remove the private folders of `target`'s builds that were killed before they could clean up (a build that
    has not touched its folder for ABANDONED_S is not running: none takes that long)."""
    now = time.time()
    for partial in target.parent.glob(f".{target.name}.*.partial"):
        try:
            if now - partial.stat().st_mtime > ABANDONED_S:
                shutil.rmtree(partial, ignore_errors=True)
        except OSError:  # removed by another process meanwhile
            continue


def built_folder(target: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """`target`, a folder of the store that `build` writes once: complete when it holds the file `marker` (which
    `build` writes last). Each build writes a private folder renamed into place when complete, so two processes
    building at once each write their own and the first rename wins; the files are made readable to all (a store
    built by root serves other users)."""
    if (target / marker).exists():
        return target
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep_abandoned(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        build(tmp)
        for written in tmp.iterdir():
            written.chmod(0o644)  # safetensors writes 0600
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        if target.exists() and not (target / marker).exists():  # left half-written by an older lmscope
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / marker).exists():
                raise
    except OSError as exc:
        raise LmscopeError(f"Could not write {target.name} to the model store {target.parent}: {exc}") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
