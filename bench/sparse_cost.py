"""The cost of sparse products on this machine: one middle block of each built-in decoder, dense against CSR at
0-99% sparsity (and 2:4 where a CUDA GPU runs it), for 1 and 128 token vectors; records the crossover."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from probes import sparse_cost  # noqa: E402
from runtime.cache import ResultCache  # noqa: E402
from runtime.models import load  # noqa: E402

MODELS = ("smollm2-135m-instruct", "gemma3-270m")


def main() -> None:
    """Time every model's middle block and record the speed-ups and crossovers."""
    rows, where = [], ""
    with tempfile.TemporaryDirectory() as folder:
        cache = ResultCache(Path(folder))
        for name in MODELS:
            handle = load(name)
            cost = sparse_cost.measure(handle, handle.n_layers // 2, cache).value
            where = f"{cost.device}, {cost.threads} threads, {cost.dtype}"
            for row, n in enumerate(cost.tokens):
                speedups = " | ".join(f"{x:.2f}" for x in cost.speedup()[row])
                crossover = cost.crossover()[row]
                shown = "none" if crossover != crossover else f"{100 * crossover:.0f}%"
                semi = cost.semi_seconds[row]
                two_four = "n/a" if semi != semi else f"{cost.dense_seconds[row] / semi:.2f}"
                rows.append(
                    f"| {name} (layer {cost.layer}) | {n} | {1e3 * cost.dense_seconds[row]:.2f} | {speedups} | "
                    f"{shown} | {two_four} |"
                )
            del handle
        cache.close()
    header = " | ".join(f"{100 * s:.0f}%" for s in sparse_cost.DEFAULT_SPARSITIES)
    date = datetime.now(timezone.utc).date()
    section = "\n".join(
        [
            f"## Sparse products against dense ({date}, {platform.machine()}, {os.cpu_count()} cores, {where}; "
            "`python bench/sparse_cost.py`)",
            "",
            "One block's seven products at the model's shapes, weights pruned by magnitude; speed-up = dense time / "
            "CSR time (`torch.sparse_csr`), median of repeats (torch.utils.benchmark). Crossover: the sparsity from "
            "which CSR stays faster. 2:4 needs a CUDA GPU with sparse tensor cores.",
            "",
            f"| model | tokens | dense ms | {header} | crossover | 2:4 |",
            "|---|---|---|" + "---|" * len(sparse_cost.DEFAULT_SPARSITIES) + "---|---|",
            *rows,
        ]
    )
    print(section)
    record(section)


if __name__ == "__main__":
    main()
