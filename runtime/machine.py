"""What this machine offers the process."""

from __future__ import annotations

import os
import platform

import torch
from threadpoolctl import threadpool_limits


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system has one (a container's cpuset, `taskset`),
    else every core."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def one_blas_thread() -> None:
    """numpy's and scipy's BLAS (OpenBLAS; torch's own products are MKL's and OpenMP's, untouched) run one thread
    per call in this process and the processes it starts, for good.

    OpenBLAS's thread count is one number for the whole process, and the dashboard's sessions are threads of one
    process: a per-call limit (threadpoolctl) narrows every other session's products while it holds, and two calls
    that overlap restore each other's saved count in the wrong order. A product's sums also depend on the count
    (a dot product at 1 and 2 threads differs in its last bits), so one fixed count keeps an answer the same
    whatever else runs. Threaded, OpenBLAS also slows many fold whenever another process holds a core (eigvalsh
    20-300x on 2 cores); work on many matrices uses the cores by taking several at once (probes.spectra.compute).
    """
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # read by a library when it loads (scipy's, on its first import)
    threadpool_limits(1, user_api="blas")  # the ones loaded already


def machine_key(device: torch.device) -> str:
    """The machine a measurement is taken on, as its cache key names it: host, device and torch's threads."""
    return f"{platform.node()} {device} {torch.get_num_threads()} threads"
