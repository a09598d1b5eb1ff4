"""The worker side of the Dask engine: what a cluster worker does with a probe computation shipped to it.

A task carries a pickled computation whose model handles and result cache were replaced, when it was shipped
(`runtime.cluster.ship`), by calls to `held` and `nested_cache`: the worker loads each model once (by its name,
under its own operator settings: model roots, size limits) and keeps at most LMSCOPE_WORKER_MODELS of them; it
checks that the model it holds is the one the dashboard asked about (same fingerprint). Results go back as the
bytes `runtime.codec` writes, never as pickles, and are stored only by the dashboard that asked.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from distributed import WorkerPlugin, get_worker
from threadpoolctl import threadpool_limits

from runtime import codec, jobs
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.machine import usable_cores
from runtime.models import load
from runtime.settings import settings

log = logging.getLogger(__name__)
PROGRESS_TOPIC = "lmscope-progress"  # one event topic for every task's progress: {"key", "done", "total"}
PROGRESS_EVERY_S = 0.2  # at most this often per task (the last step is always sent)

_held: OrderedDict[tuple[str, str], ModelHandle] = OrderedDict()  # (name, float type) -> the loaded model
_held_lock = threading.Lock()
_computed: Counter[str] = Counter()  # cache key -> times computed on this worker
_threads = 1  # torch's (OpenMP) threads for each task, set by `Setup`


class Mismatch(LmscopeError):
    """The worker's copy of a model is not the dashboard's (another version of its files, or a private copy)."""


def held(name: str, dtype: str, fingerprint: str) -> ModelHandle:
    """The model `name` in the float type the dashboard holds it in, loaded on this worker's device (its own
    LMSCOPE_DEVICE) once and kept (least recently used dropped beyond the limit); raises Mismatch when what loads
    under that name has another fingerprint."""
    if settings().device == "meta":
        raise LmscopeError("This cluster worker was started with LMSCOPE_DEVICE=meta: a worker must hold the weights.")
    with _held_lock:
        handle = _held.get((name, dtype))
        if handle is None:
            handle = load(name, dtype)
            _held[(name, dtype)] = handle
            while len(_held) > settings().worker_models:
                _held.popitem(last=False)
        _held.move_to_end((name, dtype))
    if handle.fingerprint != fingerprint:
        raise Mismatch(
            f"The worker's '{name}' ({handle.fingerprint[:12]}) is not the one asked about ({fingerprint[:12]})."
        )
    return handle


def nested_cache() -> ResultCache:
    """The result cache for computations nested in a shipped one: the worker's own, beside its settings' cache."""
    return ResultCache(settings().cache_dir / "worker")


def ready() -> bool:
    """True where lmscope's code can be imported (a scheduler or worker that can run its tasks)."""
    return True


def computed() -> dict[str, int]:
    """How many times this worker computed each cache key (for tests and benchmarks)."""
    return dict(_computed)


def _reporter(key: str) -> Callable[[int, int], None]:
    """Progress of task `key` as events to the scheduler; raises Superseded once the cluster cancelled the task."""
    worker = get_worker()
    task = worker.get_current_task()
    last = [0.0]

    def report(done: int, total: int) -> None:
        state = worker.state.tasks.get(task)
        if state is None or state.state == "cancelled":
            raise jobs.Superseded()
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or done >= total:
            last[0] = now
            worker.log_event(PROGRESS_TOPIC, {"key": key, "done": done, "total": total})

    return report


def run_shipped(key: str, payload: bytes) -> bytes:
    """Run the computation shipped for cache key `key`; its result as codec bytes. A user-facing error comes back
    as a plain LmscopeError (its message kept), so that any client can unpickle it."""
    try:
        compute = pickle.loads(payload)
        # The worker's share of the cores for this task thread's OpenMP (torch's products), set the way a probe may
        # narrow it again (threadpoolctl, per thread): torch's own global count is never set, as in a dashboard
        # process, so a computation takes the path it takes there and gives the same numbers. The BLAS stays at
        # one thread, as in every lmscope process (runtime.machine.one_blas_thread).
        with jobs.reporting(_reporter(key)), threadpool_limits(limits=_threads, user_api="openmp"):
            value = compute()
    except Mismatch:
        raise
    except LmscopeError as exc:
        raise LmscopeError(str(exc)) from None
    _computed[key] += 1
    return codec.encode(value)


def share_of_cores(tasks: int) -> int:
    """Threads for each of `tasks` computations running at once on this machine's cores."""
    return max(1, usable_cores() // max(1, tasks))


class Setup(WorkerPlugin):
    """Set up each worker process: the threads each task's torch (OpenMP) uses (None: LMSCOPE_WORKER_THREADS,
    else the machine's cores shared among the worker's task threads)."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        global _threads
        _threads = self.threads or settings().worker_threads or share_of_cores(worker.state.nthreads)
        log.info("lmscope worker ready: %d threads per task", _threads)
