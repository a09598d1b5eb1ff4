"""Peak memory and time of the attention probe against the plain forward pass, at 512 to 4,096 tokens.

Each measurement runs in a fresh process (peak RSS is per process), the two modes side by side for each
length, on smollm2-135m-instruct. Appends a table to bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probes import attention  # noqa: E402
from probes.corpus import sentences  # noqa: E402
from probes.forward import forward  # noqa: E402
from probes.models import load  # noqa: E402
from probes.text import Encoded, token_strings  # noqa: E402

LENGTHS = (512, 1024, 2048, 4096)
MODEL = "smollm2-135m-instruct"
# The fastest of several runs is reported (least disturbed by the rest of the machine); short inputs, whose
# timings are noisier, get more runs.
def repeats(n_tokens: int) -> int:
    return max(3, 20 * 512 // n_tokens)


def measure(mode: str, n_tokens: int) -> dict[str, float]:
    """In this process: load, build an n-token input, run `mode` once, report seconds and peak memory."""
    handle = load(MODEL)
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids += handle.tokenizer(" ".join(sentences()))["input_ids"]
    encoded = Encoded("", np.array(ids[:n_tokens]), token_strings(handle, ids[:n_tokens]))
    forward(handle, encoded.token_ids[:16])  # warm up kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats(n_tokens)):
        started = time.perf_counter()
        if mode == "plain forward":
            forward(handle, encoded.token_ids)
        else:
            attention.compute(handle, encoded)
        times.append(time.perf_counter() - started)
    seconds = min(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_gb": peak / 2**20, "added_gb": (peak - before) / 2**20}


def main() -> None:
    if len(sys.argv) == 3:
        print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
        return
    rows = []
    for n in LENGTHS:
        pair = {}
        for mode in ("plain forward", "attention probe"):
            done = subprocess.run([sys.executable, __file__, mode, str(n)], capture_output=True, text=True, check=True)
            pair[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((n, pair))
    lines = [
        f"## Attention probe at scale ({datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{MODEL}; `python bench/attention_scale.py`)",
        "",
        f"Time = the fastest of {', '.join(str(repeats(n)) for n in LENGTHS)} runs; peak = the process's peak resident memory (model included); "
        "each cell is a fresh process.",
        "",
        "| tokens | plain forward (s) | probe (s) | time ratio | plain peak (GB) | probe peak (GB) |",
        "|---|---|---|---|---|---|",
    ]
    for n, pair in rows:
        plain, probe = pair["plain forward"], pair["attention probe"]
        lines.append(
            f"| {n} | {plain['seconds']:.2f} | {probe['seconds']:.2f} | {probe['seconds'] / plain['seconds']:.2f}x | "
            f"{plain['peak_gb']:.2f} | {probe['peak_gb']:.2f} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    with (ROOT / "bench" / "RESULTS.md").open("a") as out:
        out.write(report + "\n")


if __name__ == "__main__":
    main()
