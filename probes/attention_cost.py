"""What full attention costs (the lecture: compute quadratic in the context length), measured live.

One forward pass of the model (last-token logits, so the vocabulary projection stays out of it) over n tokens of
the bundled corpus, for each n, with its attention computed three ways (runtime.capture):
- eager: the model's own attention, which forms every head's (n, n) scores: time and memory quadratic in n;
- chunked: the same full attention a chunk of queries at a time (runtime.chunked): the same output, memory linear
  in n, time still quadratic (the idea behind FlashAttention's tiling);
- window: chunked, each query limited to the last w keys (Mistral's sliding window): time and memory linear in n.
Each pass is timed whole and in its attention layers, and its peak memory above what was in use before it is read
(CUDA's allocator statistics on a GPU; on the CPU the kernel's record of the peak resident memory, reset before
each pass, or where Linux keeps none the resident memory sampled every millisecond). The passes run in
a child process of their own (runtime.child), where the server's other work neither shares the memory nor left
freed blocks behind, and the allocator hands its free memory back before each pass (glibc's
malloc_trim), so that what the pass allocates shows in the resident memory. The measurement is taken on the machine that serves the
page, once per machine, and cached: every session sees the same one, which says when and where it was taken. A
length whose eager scores would not fit in half the free memory is not run eagerly (NaN).
"""

from __future__ import annotations

import ctypes
import platform
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
import torch

from probes import corpus
from results.attention_cost import AttentionCost
from runtime import child, limits
from runtime.cache import Cached, ResultCache
from runtime.capture import Chunking, chunking, timing
from runtime.chunked import CHUNK
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.machine import machine_key
from runtime.models import load
from runtime.placement import device_name
from runtime.probe import CachedProbe

NAME = "attention-cost"
VERSION = 3
KINDS = {
    "eager": "full attention, eager (every (n, n) score stored)",
    "chunked": "full attention, chunked queries (memory linear in n)",
    "window": "sliding window, chunked (time and memory linear in n)",
}
DEFAULT_LENGTHS = (256, 512, 1024, 2048, 4096)
DEFAULT_WINDOW = 128
SHORT = 512  # lengths up to this are timed best of REPEATS (a pass takes well under a second)
REPEATS = 3
LONG_REPEATS = 2  # longer ones best of two: one pass slowed by other work would bend the fitted exponents
SAMPLE_SECONDS = 0.001  # how often the CPU's resident memory is read during a pass, where the kernel keeps no peak
CLEAR_REFS, STATUS = Path("/proc/self/clear_refs"), Path("/proc/self/status")
_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc's; elsewhere the memory is read as it is
Progress = Callable[[int, int], None]


def eager_bytes(handle: ModelHandle, n: int) -> int:
    """Memory the eager attention of one layer needs over n tokens: the scores and their softmax per head, and the
    (n, n) mask, in float32."""
    return (2 * handle.n_heads + 1) * n * n * 4


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)


def _resident_peak_reset() -> bool:
    """Reset the kernel's record of this process's peak resident memory (VmHWM) to what it uses now, where Linux
    allows it (writing 5 to /proc/self/clear_refs)."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _resident_peak() -> int:
    """This process's peak resident memory since the last reset, in bytes (VmHWM)."""
    found = re.search(r"VmHWM:\s+(\d+) kB", STATUS.read_text())
    return int(found.group(1)) * 1024 if found else 0


@contextmanager
def peak_memory(device: torch.device) -> Iterator[Callable[[], int]]:
    """Within the block, the memory in use above what was in use when it began; read the peak after it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield lambda: int(torch.cuda.max_memory_allocated(device) - before)
        return
    process = psutil.Process()
    if _TRIM is not None:
        _TRIM(0)
    before = process.memory_info().rss
    if _resident_peak_reset():  # the kernel's own record: no peak is missed, however busy the machine
        yield lambda: _resident_peak() - before
        return
    highest = before
    done = threading.Event()

    def sample() -> None:
        nonlocal highest
        while not done.is_set():
            highest = max(highest, process.memory_info().rss)
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: int(highest - before)
    finally:
        done.set()
        sampler.join()
        highest = max(highest, process.memory_info().rss)


def _pass(handle: ModelHandle, ids: np.ndarray, kind: str, window: int) -> tuple[float, float, int]:
    """One forward pass with attention computed as `kind`: its seconds, its attention's seconds, its peak bytes."""
    layers: list[float] = []
    scope = (
        timing(handle.model, layers)
        if kind == "eager"
        else chunking(handle.model, Chunking(window if kind == "window" else None, CHUNK), layers)
    )
    with peak_memory(handle.device) as peak, scope:
        started = time.perf_counter()
        forward(handle, ids)
        seconds = time.perf_counter() - started
    return seconds, float(sum(layers)), peak()


def measure_here(handle: ModelHandle, lengths: list[int], window: int, on_progress: Progress) -> AttentionCost:
    """Time every length and kind in this process (the child's side of `_measure`)."""
    text = handle.tokenizer(" ".join(corpus.sentences()))["input_ids"]
    ids = np.resize(np.asarray(text, dtype=np.int64), max(lengths))  # the corpus, cycled as far as needed
    kinds = list(KINDS)
    shape = (len(kinds), len(lengths))
    seconds, attention, peaks = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    budget = _free_bytes(handle.device) // 2
    for kind in kinds:  # warm up each kind's kernels, so the first length is not timed with them
        _pass(handle, ids[: lengths[0]], kind, window)
    for j, n in enumerate(lengths):
        for i, kind in enumerate(kinds):
            if kind != "eager" or eager_bytes(handle, n) <= budget:
                runs = [_pass(handle, ids[:n], kind, window) for _ in range(REPEATS if n <= SHORT else LONG_REPEATS)]
                seconds[i, j], attention[i, j] = min(runs)[:2]
                peaks[i, j] = max(r[2] for r in runs)
            on_progress(j * len(kinds) + i + 1, len(lengths) * len(kinds))
    return AttentionCost(
        model=handle.name,
        device=device_name(handle.device),
        threads=torch.get_num_threads(),
        lengths=np.asarray(lengths, dtype=np.int64),
        kinds=kinds,
        labels=[KINDS[k] for k in kinds],
        window=window,
        chunk=CHUNK,
        seconds=seconds,
        attention_seconds=attention,
        peak_bytes=peaks,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=platform.node(),
    )


def _measure(
    handle: ModelHandle, lengths: list[int], window: int, machine: str, on_progress: Progress
) -> AttentionCost:
    """Time every length and kind in a child process (`machine` keys the cache only)."""
    request = {"model": handle.name, "lengths": lengths, "window": window, "threads": torch.get_num_threads()}
    return child.run(__name__, request, on_progress, f"Timing attention on '{handle.name}'")


COST = CachedProbe(NAME, VERSION, _measure)


def measure(
    handle: ModelHandle,
    lengths: list[int],
    window: int,
    cache: ResultCache,
    on_progress: Progress | None = None,
) -> Cached[AttentionCost]:
    """A forward pass timed at each length with eager, chunked and sliding-window attention on this machine, once
    per machine, model and settings."""
    if not handle.is_causal:
        raise LmscopeError(
            f"'{handle.name}' is an encoder: its attention is not causal, so it has no chunked or windowed form "
            "here. Measuring the cost of attention needs a decoder."
        )
    chosen = sorted({int(n) for n in lengths})
    if not chosen:
        raise LmscopeError("Give at least one context length, e.g. 256, 1024, 4096.")
    limits.check_count(chosen, limits.COST_LENGTHS, "context lengths")
    longest = min(handle.context_length or limits.COST_CONTEXT, limits.COST_CONTEXT)
    for n in chosen:
        limits.check_range(n, 16, longest, f"context length (tokens; {handle.name} reads at most {longest:,})")
    limits.check_range(window, 1, limits.COST_CONTEXT, "window")
    return COST.cached(
        handle, cache, on_progress, lengths=chosen, window=int(window), machine=machine_key(handle.device)
    )


def _in_child(request: dict, on_progress: Progress) -> AttentionCost:
    """The child's side of `_measure`: the model loaded with the server's thread count, every pass timed."""
    torch.set_num_threads(request["threads"])
    return measure_here(load(request["model"]), request["lengths"], request["window"], on_progress)


if __name__ == "__main__":
    child.serve(_in_child)
