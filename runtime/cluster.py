"""The client side of the Dask engine: probe computations run as tasks on a Dask cluster whose workers hold the
models (`runtime.cluster_worker`).

A computation is shipped as a pickle in which every model handle is replaced by its name and fingerprint and the
result cache by the worker's own (`ship`): a task names the model, it never carries weights. What cannot be
shipped (a private copy of a model, a lock) runs here instead. The task's key is made from the result cache key,
so identical requests from any session of any dashboard replica connected to the scheduler run once. Progress
comes back as scheduler events; a request nobody waits for any more is cancelled on the cluster. A worker that
dies mid-task is replaced by the scheduler, which runs the task again elsewhere (up to its allowed failures).
"""

from __future__ import annotations

import io
import logging
import pickle
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any, TypeVar

import cloudpickle
import dask.config
from distributed import Client, Future, LocalCluster
from distributed.client import ClosedClientError
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from runtime import codec, jobs
from runtime.cache import ResultCache
from runtime.cluster_worker import (
    PROGRESS_TOPIC,
    Mismatch,
    Setup,
    held,
    nested_cache,
    ready,
    run_shipped,
    share_of_cores,
)
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.placement import dtype_name
from runtime.settings import settings

T = TypeVar("T")
log = logging.getLogger(__name__)
KEY_PREFIX = "lmscope-"
MAX_PAYLOAD_BYTES = 64 * 2**20  # a bigger pickle carries data that should not travel (weights): computed here
CONNECT_TIMEOUT_S = 5
UNSET_POOLS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # torch's (OpenBLAS stays at one: runtime.machine)
# How long a local worker that died gets to come back (a new process imports torch and reloads its models) before
# Dask closes its nanny for good: Dask's 15 s default is shorter than a restart on a busy 2-core machine, and the
# local cluster would then shrink by one worker for the rest of the server's life.
LOST_WORKER_GRACE = "300s"
_GONE = (OSError, CommClosedError, ClosedClientError, CancelledError, TimeoutError)


class Unshippable(Exception):
    """A computation that holds something that cannot or should not travel to a worker."""


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with models and result caches sent by reference."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, ModelHandle):
            return held, (obj.name, dtype_name(obj.dtype), obj.fingerprint)
        if isinstance(obj, ResultCache):
            return nested_cache, ()
        return super().reducer_override(obj)


def ship(compute: Callable[[], Any]) -> bytes:
    """The computation as bytes a worker can run; raises Unshippable."""
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(compute)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError) as exc:
        raise Unshippable(f"{type(exc).__name__}: {exc}") from exc
    if buffer.tell() > MAX_PAYLOAD_BYTES:
        raise Unshippable(f"{buffer.tell() / 2**20:.0f} MiB to ship")
    return buffer.getvalue()


def task_key(key: str) -> str:
    """The Dask key of the computation of a result cache key."""
    return KEY_PREFIX + key


class Cluster:
    """A connection to a Dask scheduler, whose `dispatch` runs a computation on the cluster's workers."""

    def __init__(self, client: Client, address: str, fallback: bool, local: LocalCluster | None = None) -> None:
        self.client = client
        self.address = address
        self.fallback = fallback
        self.local = local
        self._progress: dict[str, tuple[int, int]] = {}
        self._progress_lock = threading.Lock()
        client.subscribe_topic(PROGRESS_TOPIC, self._on_progress)

    @classmethod
    def connect(cls, address: str, fallback: bool = False) -> Cluster:
        """Connect to the scheduler at `address` (tcp://host:8786); its workers get lmscope's worker setup."""
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except _GONE as exc:
            raise LmscopeError(f"The compute cluster at {address} cannot be reached ({type(exc).__name__}).") from exc
        try:  # the scheduler unpickles each task's reference to lmscope's code: it must be able to import it
            client.run_on_scheduler(ready)
        except Exception as exc:  # whatever failed there comes back as its own type
            client.close()
            raise LmscopeError(
                f"The scheduler at {address} cannot run lmscope's tasks ({type(exc).__name__}: {exc}); start it "
                "from lmscope's checkout with PYTHONPATH set to it (README: More than one machine)."
            ) from exc
        client.register_plugin(Setup(None), name="lmscope")
        return cls(client, address, fallback)

    @classmethod
    def start_local(cls, workers: int, fallback: bool = False, threads: int | None = None) -> Cluster:
        """Start a cluster of `workers` processes on this machine, one task at a time each, with `threads` threads
        for torch (OpenMP) in each task (default: the cores shared among the workers)."""
        threads = threads or share_of_cores(workers)
        # Read when a worker is lost, not at start: set for this process (the local cluster's owner) for good.
        dask.config.set({"distributed.deploy.lost-worker-timeout": LOST_WORKER_GRACE})
        # Dask's nanny would start each worker with OMP_NUM_THREADS=1 (and MKL's): that fixes torch's global thread
        # count, which per-thread limits (`threadpoolctl`, used by the worker and by probes) then cannot narrow.
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{name}": None for name in UNSET_POOLS}):
            local = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,  # pyright: ignore[reportArgumentType]  (None: no dashboard, as documented)
                silence_logs=logging.WARNING,
                # The workers hold the weights, also for a dashboard that holds none (LMSCOPE_DEVICE=meta).
                env={"LMSCOPE_DEVICE": "auto"} if settings().device == "meta" else {},
            )
        client = Client(local, set_as_default=False)
        client.register_plugin(Setup(threads), name="lmscope")
        return cls(client, local.scheduler_address, fallback, local)

    def close(self) -> None:
        self.client.close()
        if self.local is not None:
            self.local.close()

    def _on_progress(self, event: tuple[float, dict]) -> None:
        _, message = event
        with self._progress_lock:
            self._progress[message["key"]] = (message["done"], message["total"])

    def dispatch(self, key: str, compute: Callable[[], T]) -> T:
        """compute()'s value, computed on the cluster under the task key of `key` (here when it cannot travel)."""
        try:
            payload = ship(compute)
        except Unshippable as exc:
            log.info("Computed here, not on the cluster: %s", exc)
            return compute()
        try:
            future = self.client.submit(run_shipped, key, payload, key=task_key(key))
            data = self._wait(key, future)
        except Mismatch as exc:
            log.warning("Computed here: %s", exc)
            return compute()
        except KilledWorker as exc:
            raise LmscopeError(
                "The computation stopped the cluster's workers again and again (out of memory?); it was given up."
            ) from exc
        except _GONE as exc:
            if not self.fallback:
                raise LmscopeError(
                    f"The compute cluster at {self.address} is not reachable any more ({type(exc).__name__}); "
                    "ask the operator, or try again in a moment."
                ) from exc
            log.warning("The cluster at %s is gone (%s); computing here.", self.address, exc)
            return compute()
        finally:
            with self._progress_lock:
                self._progress.pop(key, None)
        return codec.decode(data)

    def _wait(self, key: str, future: Future) -> bytes:
        """The task's bytes; meanwhile its progress goes to the local job (`jobs.report`), which raises Superseded
        once nobody waits for it: the task is then cancelled on the cluster.

        The wait is on an event that the future's completion sets, and the result is asked for once it is there:
        distributed's `Future.result(timeout=...)` can end in an UnboundLocalError when its timeout races the
        result (dask/distributed#8514; seen here under a loaded test run)."""
        finished = threading.Event()
        future.add_done_callback(lambda _: finished.set())
        connected = time.monotonic()
        try:
            while not finished.wait(jobs.POLL_SECONDS):
                with self._progress_lock:
                    done, total = self._progress.get(key, (0, 0))
                jobs.report(done, total)
                if self.client.status == "running":
                    connected = time.monotonic()
                elif time.monotonic() - connected > CONNECT_TIMEOUT_S:  # the scheduler is gone and stays gone
                    raise CommClosedError(f"no scheduler for {CONNECT_TIMEOUT_S} s (client {self.client.status})")
            return future.result()
        except jobs.Superseded:
            future.cancel()
            raise
