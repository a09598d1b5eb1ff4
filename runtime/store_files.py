"""Files that lmscope computes once and keeps in the model store: written atomically, one lock per file.

An unwritable store costs computing again next time, never a failed request: writing reports failure and logs it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

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
