"""Load, forward and cache timings of the built-in models, side by side in one run; recorded in bench/RESULTS.md.

Measures per model: the first GGUF conversion (into a fresh store), a later load from the store, transformers'
own GGUF load for comparison, a plain forward pass, the attention probe (computed), and a cache hit.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from probes import attention  # noqa: E402
from probes.text import encode  # noqa: E402
from runtime.builtin import BUILTINS  # noqa: E402
from runtime.cache import ResultCache  # noqa: E402
from runtime.forward import forward  # noqa: E402
from runtime.gguf_store import converted_folder, load_gguf  # noqa: E402
from runtime.models import load  # noqa: E402
from runtime.settings import settings  # noqa: E402

TEXT = (
    "The lecture shows that attention is sparse in structured ways: a few heads look at the previous token, "
    "others at delimiters, and beyond the first layers most heads park their weight on the first token. "
) * 2
REPEATS = 5


def seconds(action: Callable[[], object], repeats: int = 1) -> float:
    """Median wall time of an action over repeats."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_model(name: str, cache: ResultCache) -> dict[str, float]:
    spec = BUILTINS[name]
    row: dict[str, float] = {}
    if spec.is_gguf:
        gguf = spec.locate(settings().model_store)
        with tempfile.TemporaryDirectory() as fresh_store:
            row["first conversion (s)"] = seconds(lambda: converted_folder(gguf, Path(fresh_store)))
        row["transformers GGUF load (s)"] = seconds(lambda: load_gguf(gguf))
    load(name)  # warm the file-digest memo and the OS page cache, as a second start of the app would
    row["load from store (s)"] = seconds(lambda: load(name), repeats=3)
    handle = load(name)
    ids = encode(handle, TEXT, settings().max_tokens).token_ids
    row["tokens"] = len(ids)
    row["plain forward (s)"] = seconds(lambda: forward(handle, ids), REPEATS)
    row["attention probe, computed (s)"] = seconds(
        lambda: attention.compute(handle, encode(handle, TEXT, 512)), REPEATS
    )
    attention.run(handle, TEXT, cache)
    row["attention probe, cache hit (s)"] = seconds(lambda: attention.run(handle, TEXT, cache), REPEATS)
    return row


def main() -> None:
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = ResultCache(Path(cache_dir))
        rows = {name: bench_model(name, cache) for name in BUILTINS}
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    lines = [
        f"## Load, forward and cache ({datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; `make bench`)",
        "",
        "| model | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3g}" if c in row else "–" for c in columns) + " |")
    lines.append("")
    for name, row in rows.items():
        ratios = [
            f"attention probe / plain forward = {row['attention probe, computed (s)'] / row['plain forward (s)']:.2f}x",
            f"cache hit / computed = {row['attention probe, cache hit (s)'] / row['attention probe, computed (s)']:.3f}x",
        ]
        if "transformers GGUF load (s)" in row:
            ratios.insert(
                0, f"store load / GGUF load = {row['load from store (s)'] / row['transformers GGUF load (s)']:.3f}x"
            )
        lines.append(f"- {name}: " + "; ".join(ratios))
    report = "\n".join(lines) + "\n"
    print(report)
    record(report)


if __name__ == "__main__":
    main()
