"""Where probe computations run, chosen once per process from the operator's settings.

- Nothing set: in this process (`runtime.jobs`' in-process executor).
- LMSCOPE_SCHEDULER=tcp://host:8786: on the workers of that Dask cluster (`runtime.cluster`).
- LMSCOPE_WORKERS=N: on a Dask cluster of N worker processes started on this machine.

Every entry point (the dashboard, the CLI, the lecture export) calls `start` before its first probe; none of them
knows which engine runs.
"""

from __future__ import annotations

import logging
import threading

from runtime import jobs
from runtime.cluster import Cluster
from runtime.errors import LmscopeError
from runtime.settings import settings

log = logging.getLogger(__name__)
# Threads that wait for cluster tasks: a computation's wait costs this process nothing, so more can be in flight.
CLUSTER_WAITERS = 16

_lock = threading.Lock()
_started: str | None = None
_cluster: Cluster | None = None


def executor_for(cluster: Cluster) -> jobs.Executor:
    """The executor that runs this process's computations on the cluster."""
    return jobs.Executor(CLUSTER_WAITERS, dispatch=cluster.dispatch)


def start() -> str:
    """Install the engine the settings ask for, once per process; returns what runs the computations. A cluster
    that cannot be reached is an LmscopeError, unless LMSCOPE_CLUSTER_FALLBACK lets this process compute."""
    global _started, _cluster
    with _lock:
        if _started is not None:
            return _started
        conf = settings()
        if not (conf.scheduler or conf.workers):
            if conf.device == "meta":
                raise LmscopeError(
                    "LMSCOPE_DEVICE=meta keeps no model weights in this process, so its computations need a Dask "
                    "cluster: set LMSCOPE_SCHEDULER (or LMSCOPE_WORKERS)."
                )
            _started = "in this process"
            return _started
        try:
            if conf.scheduler:
                _cluster = Cluster.connect(conf.scheduler, conf.cluster_fallback)
            else:
                _cluster = Cluster.start_local(conf.workers, conf.cluster_fallback)
        except LmscopeError:
            if not conf.cluster_fallback:
                raise
            log.warning("No compute cluster; computing in this process.", exc_info=True)
            _started = "in this process (the cluster could not be reached)"
            return _started
        jobs.install(executor_for(_cluster))
        _started = f"on the Dask cluster at {_cluster.address}"
        return _started


def stop() -> None:
    """Back to computing in this process; closes a cluster this process started."""
    global _started, _cluster
    with _lock:
        if _cluster is not None:
            _cluster.close()
        _cluster, _started = None, None
        jobs.install(None)
