"""One computation per question, and a fair share of the machine for every session.

Every probe result that is not in the disk cache is computed here (`runtime.cache.ResultCache.fetch` calls
`run`), keyed by its cache key:

- Single flight: requests with the key of a computation already queued or running wait for it and get its
  result (or its error), in this process, whichever session or thread asked.
- A small pool of worker threads runs the computations in the order they were asked for. Forward passes of one
  model take turns through the model's first-come-first-served lock (`runtime.turns`), one batch at a time, so a
  short request is never stuck behind a whole corpus pass; everything else (summaries, SVDs, clustering) runs in
  parallel up to the pool's size. Torch keeps all the cores for each pass, so one user alone loses nothing.
- A session waits for one computation at a time: a new request from a session detaches it from its older one.
  A computation nobody waits for any more is dropped from the queue, or, when running, stops at its first
  progress report GRACE_SECONDS later (`report` raises `Superseded`).
- A computation asked for from inside another (the ablation needs the corpus activations) runs inline in the
  worker that needs it, so the pool cannot deadlock on itself.
- Whoever waits sees a `Status` every POLL_SECONDS (through `waiting`): how many computations are ahead in the
  queue, whether another session started this one, and its progress.
- Where a computation runs is the executor's `dispatch`: here, in the worker thread (the default), or on a Dask
  cluster (`runtime.cluster`, installed by `runtime.engine.start`). Queue, single flight and waiting stay the same.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any, TypeVar

from runtime.errors import LmscopeError
from runtime.machine import usable_cores

T = TypeVar("T")
POLL_SECONDS = 0.25
# A running computation nobody waits for stops at its next progress report after this long (a page that reruns
# asks again within it, and keeps its computation).
GRACE_SECONDS = 2.0


class Superseded(LmscopeError):
    """A computation stopped because no session waits for it any more."""

    def __init__(self) -> None:
        super().__init__("This computation was stopped: a newer request replaced it.")


@dataclass(frozen=True)
class Status:
    """What a waiting request sees."""

    state: str  # "queued" or "running"
    ahead: int  # computations queued before this one (0 once it runs)
    running: int  # computations running now, in the whole process
    shared: bool  # another session started it: this request joined a computation already asked for
    done: int = 0  # progress the computation reported, as steps done of total (0 of 0: none reported)
    total: int = 0


# (status) -> None: called in the waiting thread, so it may draw on a page; whatever it raises ends the wait.
WaitCallback = Callable[[Status], None]
# (key, compute) -> compute's value: where a job's computation runs.
Dispatch = Callable[[str, Callable[[], Any]], Any]


def run_here(key: str, compute: Callable[[], T]) -> T:
    """The default dispatch: compute in the calling thread."""
    return compute()


def as_is(dispatched: Callable[[], T]) -> T:
    """The default `around` of a job: its dispatched computation's value, as it is."""
    return dispatched()


@dataclass(eq=False)
class _Job:
    key: str
    compute: Callable[[], Any]
    around: Callable[[Callable[[], Any]], Any]
    context: contextvars.Context
    origin: str | None  # the session that asked first
    owner: Executor
    state: str = "queued"
    waiters: int = 0
    abandoned_at: float | None = None  # when the last waiter left, while still unfinished
    done: int = 0
    total: int = 0
    value: Any = None
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class _Waiter:
    session: str | None
    on_wait: WaitCallback | None


@dataclass(eq=False)
class _Ticket:
    """One request's place among a job's waiters; released once, by the request or by a newer one of its session."""

    job: _Job
    attached: bool = True


NOBODY = _Waiter(None, None)
_CURRENT: contextvars.ContextVar[_Job | None] = contextvars.ContextVar("lmscope_job", default=None)
_WAITER: contextvars.ContextVar[_Waiter] = contextvars.ContextVar("lmscope_waiter", default=NOBODY)
# Where progress goes in a computation that runs outside any executor's job (a task on a cluster worker).
_REPORTER: contextvars.ContextVar[Callable[[int, int], None] | None] = contextvars.ContextVar(
    "lmscope_reporter", default=None
)


@contextmanager
def waiting(session: str | None, on_wait: WaitCallback | None) -> Iterator[None]:
    """Within the block, requests made in this thread/context belong to `session` and show their wait with
    on_wait."""
    token = _WAITER.set(_Waiter(session, on_wait))
    try:
        yield
    finally:
        _WAITER.reset(token)


def report(done: int, total: int) -> None:
    """Record the running computation's progress (a no-op outside one); raises Superseded when nobody has waited
    for it for GRACE_SECONDS. A probe's `on_progress`."""
    job = _CURRENT.get()
    if job is not None:
        job.owner.progress(job, done, total)
        return
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter(done, total)


@contextmanager
def reporting(reporter: Callable[[int, int], None]) -> Iterator[None]:
    """Within the block, outside any job, `report(done, total)` calls reporter (which may raise Superseded)."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def default_workers() -> int:
    """Worker threads: LMSCOPE_COMPUTE_WORKERS, else the machine's cores, from 2 (so that a long computation always
    leaves a worker for the others) to 4 (the forward passes of one model take turns anyway, and each computation
    may hold a few GB: a long text's attention, a model's copy for pruning)."""
    raw = os.environ.get("LMSCOPE_COMPUTE_WORKERS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return min(4, max(2, usable_cores()))


class Executor:
    """Single flight by key, a FIFO queue and a pool of worker threads, which run each computation through
    `dispatch` (by default in the worker thread itself)."""

    def __init__(self, workers: int, dispatch: Dispatch = run_here) -> None:
        if workers < 1:
            raise ValueError("an executor needs at least one worker")
        self.workers = workers
        self.dispatch = dispatch
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[_Job] = deque()
        self._sessions: dict[str, _Ticket] = {}
        self._running = 0
        self._threads: list[threading.Thread] = []

    def run(self, key: str, compute: Callable[[], Any], around: Callable[[Callable[[], Any]], T] = as_is) -> T:
        """around(dispatched)'s value, computed once for all concurrent requests with this key, where dispatched()
        is compute() run through the executor's dispatch (so `around` runs here, and compute maybe elsewhere)."""
        inside = _CURRENT.get() is not None or _REPORTER.get() is not None  # in a job, or in a cluster task
        waiter = NOBODY if inside else _WAITER.get()
        ticket, inline = self._attach(key, compute, around, waiter, inside)
        if inline:
            self._execute(ticket.job)
        return self._wait(ticket, waiter)

    def status(self, key: str) -> Status | None:
        """The status of the computation of `key`, if one is queued or running."""
        with self._lock:
            job = self._jobs.get(key)
            return None if job is None else self._status(job, None)

    def progress(self, job: _Job, done: int, total: int) -> None:
        """Record a running job's progress; stop it (Superseded) once nobody has waited for it for GRACE_SECONDS."""
        with self._lock:
            job.done, job.total = done, total
            if job.waiters or job.abandoned_at is None or time.monotonic() - job.abandoned_at < GRACE_SECONDS:
                return
            self._forget(job)
        raise Superseded()

    def _attach(
        self, key: str, compute: Callable[[], Any], around: Callable, waiter: _Waiter, inside: bool
    ) -> tuple[_Ticket, bool]:
        with self._lock:
            job = self._jobs.get(key)
            inline = False
            if job is None:
                job = _Job(key, compute, around, contextvars.copy_context(), waiter.session, self)
                self._jobs[key] = job
                if not inside:
                    self._enqueue(job)
            if inside and job.state == "queued":
                # A worker waiting for a queued job could leave the pool waiting on itself: run it here.
                if job in self._queue:
                    self._queue.remove(job)
                self._start(job)
                inline = True
            job.waiters += 1
            job.abandoned_at = None
            ticket = _Ticket(job)
            if waiter.session is not None:
                older = self._sessions.get(waiter.session)
                self._sessions[waiter.session] = ticket
                if older is not None:
                    self._release(older)
            return ticket, inline

    def _enqueue(self, job: _Job) -> None:
        self._queue.append(job)
        if len(self._threads) < self.workers:
            thread = threading.Thread(target=self._work, name=f"lmscope-worker-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._wake.notify()

    def _start(self, job: _Job) -> None:
        job.state = "running"
        self._running += 1

    def _release(self, ticket: _Ticket) -> None:
        if not ticket.attached:
            return
        ticket.attached = False
        job = ticket.job
        job.waiters -= 1
        if job.waiters == 0 and not job.finished.is_set():
            job.abandoned_at = time.monotonic()

    def _forget(self, job: _Job) -> None:
        if self._jobs.get(job.key) is job:
            del self._jobs[job.key]

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._wake.wait()
                job = self._queue.popleft()
                if job.waiters == 0:  # everyone who asked has gone: drop it
                    self._forget(job)
                    job.error = Superseded()
                    job.finished.set()
                    continue
                self._start(job)
            self._execute(job)

    def _execute(self, job: _Job) -> None:
        def body() -> None:
            _CURRENT.set(job)
            _WAITER.set(NOBODY)  # nested requests never draw on the page of the session that asked first
            try:
                job.value = job.around(lambda: self.dispatch(job.key, job.compute))
            except BaseException as exc:  # handed to every waiter, who re-raises it
                job.error = exc

        job.context.run(body)
        with self._lock:
            self._running -= 1
            job.state = "done"
            self._forget(job)
            job.finished.set()

    def _status(self, job: _Job, session: str | None) -> Status:
        ahead = 0
        if job.state == "queued":
            ahead = sum(1 for queued in takewhile(lambda queued: queued is not job, self._queue) if queued.waiters)
        shared = job.origin is not None and job.origin != session
        return Status(job.state, ahead, self._running, shared, job.done, job.total)

    def _wait(self, ticket: _Ticket, waiter: _Waiter) -> Any:
        job = ticket.job
        try:
            while not job.finished.is_set():
                if waiter.on_wait is not None:
                    with self._lock:
                        status = self._status(job, waiter.session)
                    waiter.on_wait(status)
                job.finished.wait(POLL_SECONDS)
        finally:
            with self._lock:
                self._release(ticket)
                if waiter.session is not None and self._sessions.get(waiter.session) is ticket:
                    del self._sessions[waiter.session]
        if job.error is not None:
            raise job.error
        return job.value


_executor: Executor | None = None
_executor_lock = threading.Lock()


def executor() -> Executor:
    """The process's executor: the one installed, else an in-process one created on first use with
    `default_workers()` threads."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = Executor(default_workers())
        return _executor


def install(chosen: Executor | None) -> Executor | None:
    """Make `chosen` the process's executor (None: an in-process one on next use); returns the one it replaces."""
    global _executor
    with _executor_lock:
        replaced, _executor = _executor, chosen
        return replaced
