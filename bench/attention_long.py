"""The attention probe on long texts: its time and peak memory up to each model's context, its overhead over a bare
forward pass, and its summaries against the exact (n, n) maps of the model's eager attention.

Text: the first n tokens of the bundled long text (probes.long_text). One child process per model and length, so
that every peak is the process's own. In it, up to EXACT_UP_TO tokens, the bare eager forward (the model as lmscope
loads it, last-token logits), the bare chunked forward (the same pass with attention a chunk of queries at a time,
no summaries) and the probe (chunked, every chunk summarised, maps pooled) are alternated, so all see the same
machine state; the ratios are medians of the rounds' ratios. Longer texts run the chunked pass and the probe once
each (the eager scores would take gigabytes per layer). Peak = resident memory above the loaded model during the
pass (the kernel's VmHWM). At EXACT_LENGTH tokens the probe's summaries and pooled maps are compared with the same
statistics of every layer's whole map from the model's eager attention (runtime.capture, a layer at a time).
Records its section in bench/RESULTS.md (replacing the previous run's).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from probes import attention  # noqa: E402
from probes.attention_cost import peak_memory  # noqa: E402
from probes.long_text import long_text  # noqa: E402
from probes.text import from_ids  # noqa: E402
from results.attention import AttentionResult  # noqa: E402
from runtime.capture import Chunking, capturing, chunking  # noqa: E402
from runtime.forward import forward  # noqa: E402
from runtime.handle import ModelHandle  # noqa: E402
from runtime.models import load  # noqa: E402

CASES = {"smollm2-135m-instruct": (512, 1024, 4096, 8192), "gemma3-270m": (512, 1024, 4096, 16384, 32768)}
EXACT_UP_TO = 4096  # the eager pass (and so the ratios) up to this length
EXACT_LENGTH = 4096  # the length at which the summaries are checked against the whole maps
CHUNKED_UP_TO = 16384  # the bare chunked pass beside the probe up to this length
COMPARED = ("sink_share", "previous_token", "mean_distance", "entropy")


def rounds(n: int) -> int:
    """Rounds of the alternated passes: more for short texts, whose timings are noisier."""
    return max(2, 4096 // n)


def exact_summaries(handle: ModelHandle, ids: np.ndarray, pool: int) -> dict[str, np.ndarray]:
    """COMPARED and the pooled maps of every layer, from the whole (heads, n, n) maps of the model's eager
    attention, one layer at a time, in float64."""
    n = len(ids)
    q = torch.arange(n, dtype=torch.float64)
    cells = -(-n // pool)
    found: dict[str, list[np.ndarray]] = {name: [] for name in (*COMPARED, "maps")}

    def on_layer(layer: int, weights: torch.Tensor, _logits: Callable[[], torch.Tensor]) -> None:
        a = weights[0].double()
        found["sink_share"].append(a[:, 1:, 0].mean(-1).numpy())
        found["previous_token"].append(a[:, q[1:].long(), q[1:].long() - 1].mean(-1).numpy())
        found["mean_distance"].append((q * a.sum(-1) - a @ q).mean(-1).numpy())  # causal: sum_k a (q - k)
        found["entropy"].append((-torch.xlogy(a, a).sum(-1)).mean(-1).numpy())
        padded = torch.zeros(a.shape[0], cells * pool, cells * pool, dtype=torch.float64)
        padded[:, :n, :n] = a
        pooled = padded.reshape(a.shape[0], cells, pool, cells, pool).sum(-1).sum(-2) / pool
        pooled[:, -1] *= pool / (n - (cells - 1) * pool)
        found["maps"].append(pooled.numpy())

    with capturing(handle.model, on_layer):
        forward(handle, ids)
    return {name: np.stack(values) for name, values in found.items()}


def measure(model: str, n: int) -> dict:
    """In this process: the passes at n tokens, their seconds and peaks, and the exact comparison at EXACT_LENGTH."""
    handle = load(model)
    ids = np.asarray(handle.tokenizer(long_text())["input_ids"][:n])
    assert len(ids) == n, f"the long text has {len(ids)} tokens, fewer than {n}"
    encoded = from_ids(handle, ids.tolist())
    chunk = attention.query_chunk(-(-n // attention.MAX_MAP_SIDE))
    passes: dict[str, Callable[[], object]] = {}
    if n <= EXACT_UP_TO:
        passes["eager"] = lambda: forward(handle, ids)
    if n <= CHUNKED_UP_TO:

        def bare_chunked() -> None:
            with chunking(handle.model, Chunking(None, chunk)):
                forward(handle, ids)

        passes["chunked"] = bare_chunked
    result: list[AttentionResult] = []
    passes["probe"] = lambda: result.append(attention.compute(handle, encoded))
    forward(handle, ids[:16])  # warm up the kernels
    seconds: dict[str, list[float]] = {name: [] for name in passes}
    peaks: dict[str, int] = {}
    for _ in range(rounds(n) if n <= EXACT_UP_TO else 1):
        for name, run in passes.items():
            with peak_memory(handle.device) as peak:
                started = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - started)
            peaks[name] = max(peaks.get(name, 0), peak())
    done = {"model": model, "n": n, "seconds": seconds, "peak_mb": {k: v / 2**20 for k, v in peaks.items()}}
    if n == EXACT_LENGTH:
        probe = result[-1]
        exact = exact_summaries(handle, ids, probe.pool)
        done["difference"] = {name: float(np.abs(getattr(probe, name) - exact[name]).max()) for name in COMPARED}
        done["difference"]["maps"] = float(np.abs(probe.maps.astype(np.float64) - exact["maps"]).max())
    return done


def in_subprocess(model: str, n: int) -> dict:
    done = subprocess.run([sys.executable, __file__, model, str(n)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(done: dict) -> str:
    seconds = {name: float(np.median(values)) for name, values in done["seconds"].items()}
    probe = np.array(done["seconds"]["probe"])

    def ratio(name: str) -> str:
        if name not in done["seconds"]:
            return "–"
        ratios = probe / np.array(done["seconds"][name])
        spread = f" ({ratios.min():.2f}-{ratios.max():.2f})" if len(ratios) > 1 else ""
        return f"{np.median(ratios):.2f}x{spread}"

    cells = [f"{seconds[m]:.2f} / {done['peak_mb'][m]:,.0f}" if m in seconds else "–" for m in ("eager", "chunked")]
    difference = done.get("difference")
    exact = " · ".join(f"{k} {v:.0e}" for k, v in difference.items()) if difference else ""
    return (
        f"| {done['model']} | {done['n']:,} | {cells[0]} | {cells[1]} | {seconds['probe']:.2f} / "
        f"{done['peak_mb']['probe']:,.0f} | {ratio('chunked')} | {ratio('eager')} | {exact} |"
    )


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
        return
    lines = [
        f"## Attention probe on long texts ({datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()}, "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} threads; `python bench/attention_long.py`)",
        "",
        f"The first n tokens of the bundled long text (Python's documentation); a child process per row. Cells: "
        f"median seconds / peak MB above the loaded model. Up to {EXACT_UP_TO:,} tokens the three passes are "
        "alternated (rounds: 4,096 / n, at least 2) and the ratios are medians of the rounds' ratios (min-max); "
        "longer texts run once. *eager*: the bare forward as lmscope loads the model (last-token logits); "
        "*chunked*: the same pass with attention 512 queries at a time (runtime.chunked), nothing summarised; "
        "*probe*: `attention.compute` (chunked, every chunk summarised, maps pooled to at most 256 cells a side). "
        f"Last column, at {EXACT_LENGTH:,} tokens: the largest difference of the probe's numbers from the same "
        "statistics of the eager attention's whole maps (a layer at a time, float64).",
        "",
        "| model | tokens | eager | chunked | probe | probe / chunked | probe / eager | probe vs whole maps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, lengths in CASES.items():
        for n in lengths:
            lines.append(row(in_subprocess(model, n)))
            print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    print(report)
    record(report)


if __name__ == "__main__":
    main()
