"""Peak memory and time of the attention probe against the plain forward pass, at 512 to 4,096 tokens.

On smollm2-135m-instruct. Time: for each length one process alternates plain and probe passes (plain,
probe, plain, probe, ...), so both see the same machine state; the ratio is the median of the pairs' ratios.
Peak memory: one fresh process per mode and length (peak RSS is per process). Records its section in
bench/RESULTS.md (replacing the previous run's).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from probes import attention  # noqa: E402
from probes.corpus import sentences  # noqa: E402
from probes.text import Encoded, token_strings  # noqa: E402
from runtime.forward import forward  # noqa: E402
from runtime.models import load  # noqa: E402

LENGTHS = (512, 1024, 2048, 4096)
MODEL = "smollm2-135m-instruct"
MODES = ("plain forward", "attention probe")


def pairs(n_tokens: int) -> int:
    """Plain/probe pairs timed at this length: more for short inputs, whose timings are noisier."""
    return max(3, 20 * 512 // n_tokens)


def run_mode(mode: str, n_tokens: int) -> Callable[[], object]:
    """Load the model, build an n-token input from the corpus, and return one pass of `mode` (warmed up)."""
    handle = load(MODEL)
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids += handle.tokenizer(" ".join(sentences()))["input_ids"]
    encoded = Encoded("", np.array(ids[:n_tokens]), token_strings(handle, ids[:n_tokens]))
    forward(handle, encoded.token_ids[:16])  # warm up kernels
    if mode == MODES[0]:
        return lambda: forward(handle, encoded.token_ids)
    return lambda: attention.compute(handle, encoded)


def peak_gb(mode: str, n_tokens: int) -> float:
    """In this process: one pass of `mode`; the process's peak resident memory in GB."""
    run_mode(mode, n_tokens)()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed_pairs(n_tokens: int) -> dict[str, list[float]]:
    """In this process: seconds of alternating plain and probe passes."""
    passes = {mode: run_mode(mode, n_tokens) for mode in MODES}
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(pairs(n_tokens)):
        for mode in MODES:
            started = time.perf_counter()
            passes[mode]()
            seconds[mode].append(time.perf_counter() - started)
    return seconds


def in_subprocess(*args: str) -> object:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1:
        n = int(sys.argv[-1])
        print(json.dumps(timed_pairs(n) if sys.argv[1] == "time" else peak_gb(sys.argv[1], n)))
        return
    lines = [
        f"## Attention probe at scale ({datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{MODEL}; `python bench/attention_scale.py`)",
        "",
        f"Time: {', '.join(str(pairs(n)) for n in LENGTHS)} alternating plain/probe pairs in one process per length; "
        "seconds are medians, the ratio is the median of the pairs' ratios (min-max in brackets). "
        "Peak = a fresh process's peak resident memory after one pass (model included).",
        "",
        "| tokens | plain forward (s) | probe (s) | time ratio | plain peak (GB) | probe peak (GB) |",
        "|---|---|---|---|---|---|",
    ]
    for n in LENGTHS:
        seconds = in_subprocess("time", str(n))
        plain, probe = (np.array(seconds[mode]) for mode in MODES)
        ratios = probe / plain
        peaks = [in_subprocess(mode, str(n)) for mode in MODES]
        lines.append(
            f"| {n} | {np.median(plain):.2f} | {np.median(probe):.2f} | {np.median(ratios):.2f}x "
            f"({ratios.min():.2f}-{ratios.max():.2f}) | {peaks[0]:.2f} | {peaks[1]:.2f} |"
        )
        print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    print(report)
    record(report)


if __name__ == "__main__":
    main()
