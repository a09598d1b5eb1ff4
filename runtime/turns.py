"""A lock that serves its waiters in the order they came (threading.Lock makes no such promise)."""

from __future__ import annotations

import threading


class Turns:
    """First come, first served: forward passes of a shared model take turns, so a short request waits for the
    batch in progress, not for a whole corpus pass that keeps taking the lock again."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._issued = 0
        self._serving = 0

    def __enter__(self) -> Turns:
        with self._changed:
            ticket = self._issued
            self._issued += 1
            self._changed.wait_for(lambda: self._serving == ticket)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._serving += 1
            self._changed.notify_all()
