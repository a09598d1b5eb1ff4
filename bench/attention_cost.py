"""What full attention costs as the context grows: each built-in decoder's forward pass timed from 512 tokens to
its longest feasible context, with eager, chunked and sliding-window attention (probes.attention_cost); records the
fitted exponents of time and memory against n at the long end (2: quadratic, 1: linear)."""

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
from probes import attention_cost  # noqa: E402
from runtime.cache import ResultCache  # noqa: E402
from runtime.models import load  # noqa: E402

LENGTHS = {
    "smollm2-135m-instruct": [512, 1024, 2048, 4096, 8192],
    "gemma3-270m": [512, 1024, 2048, 4096, 8192],
}


def _cell(value: float, scale: float, digits: int) -> str:
    return "–" if value != value else f"{value * scale:.{digits}f}"


def main() -> None:
    """Measure each decoder and record its table and exponents."""
    rows, where = [], ""
    with tempfile.TemporaryDirectory() as folder:
        cache = ResultCache(Path(folder))
        for name, lengths in LENGTHS.items():
            cost = attention_cost.measure(load(name), lengths, attention_cost.DEFAULT_WINDOW, cache).value
            where = f"{cost.device}, {cost.threads} threads"
            for i, kind in enumerate(cost.kinds):
                cells = " | ".join(
                    f"{_cell(cost.attention_seconds[i, j], 1, 2)} / {_cell(cost.seconds[i, j], 1, 2)} / "
                    f"{_cell(cost.peak_bytes[i, j], 2**-20, 0)}"
                    for j in range(len(cost.lengths))
                )
                slopes = [cost.exponent(kind, values) for values in ("attention_seconds", "seconds", "peak_bytes")]
                rows.append(f"| {name} | {kind} | {cells} | " + " | ".join(f"{s:.2f}" for s in slopes) + " |")
            rows.append("")
        cache.close()
    date = datetime.now(timezone.utc).date()
    lines = []
    for name, lengths in LENGTHS.items():
        header = " | ".join(f"{n:,}" for n in lengths)
        lines += [f"| model | attention | {header} | exponent: attention time | pass time | memory |"]
        lines += ["|---|---|" + "---|" * len(lengths) + "---|---|---|"]
        lines += [row for row in rows if row.startswith(f"| {name} |")]
        lines += [""]
    section = "\n".join(
        [
            f"## Attention cost against context length ({date}, {platform.machine()}, {os.cpu_count()} cores, "
            f"{where}; `python bench/attention_cost.py`)",
            "",
            "One forward pass over n tokens of the corpus (last-token logits), in a child process; each cell: seconds "
            "in the attention layers / seconds of the whole pass / peak MB above the loaded model (– : eager scores "
            f"would not fit in half the free memory). Window: {attention_cost.DEFAULT_WINDOW} tokens; chunks of "
            "512 queries. Exponent: slope of log(value) against log(n) over the three longest lengths measured.",
            "",
            *lines,
        ]
    )
    print(section)
    record(section)


if __name__ == "__main__":
    main()
