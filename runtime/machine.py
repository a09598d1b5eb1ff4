"""What this machine offers the process."""

from __future__ import annotations

import os
import platform

import torch


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system has one (a container's cpuset, `taskset`),
    else every core."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def machine_key(device: torch.device) -> str:
    """The machine a measurement is taken on, as its cache key names it: host, device and torch's threads."""
    return f"{platform.node()} {device} {torch.get_num_threads()} threads"
