"""Sliding-window attention with and without sink tokens on the built-in decoders, side by side in one run.

Joins the first sentences of the bundled corpus into a few paragraphs, imposes each window on every attention
layer, and prints the mean per-token NLL (nats) for full attention, each window alone, and each window with the
first SINKS tokens kept visible (StreamingLLM's comparison), as a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probes import structured  # noqa: E402
from probes.corpus import sentences  # noqa: E402
from runtime.cache import ResultCache  # noqa: E402
from runtime.models import load  # noqa: E402

MODELS = ("smollm2-135m-instruct", "gemma3-270m")
WINDOWS = (8, 16, 32, 64)
SINKS = 4
N_SENTENCES = 30


def paragraphs() -> str:
    """The first N_SENTENCES corpus sentences as paragraphs of five."""
    return "\n\n".join(" ".join(sentences()[i : i + 5]) for i in range(0, N_SENTENCES, 5))


def main() -> None:
    """Print one table row per model."""
    text = paragraphs()
    heads = [f"w={w}" for w in WINDOWS] + [f"w={w} + {SINKS} sinks" for w in WINDOWS]
    date = datetime.now(timezone.utc).date()
    print(
        f"## Sliding-window loss with and without sinks ({date}, {platform.machine()}, `python bench/window_sinks.py`)\n"
    )
    print(
        f"Mean per-token NLL (nats) of the first {N_SENTENCES} corpus sentences (6 paragraphs); every layer masked.\n"
    )
    print("| model | tokens | full | " + " | ".join(heads) + " | seconds |")
    print("|---" * (len(heads) + 4) + "|")
    with tempfile.TemporaryDirectory() as folder:
        cache = ResultCache(Path(folder))
        for name in MODELS:
            started = time.perf_counter()
            sweep = structured.window_sweep(load(name), text, WINDOWS, SINKS, cache).value
            values = [sweep.mean_full, *sweep.mean_window, *sweep.mean_sinks]
            cells = " | ".join(f"{v:.3f}" for v in values)
            print(f"| {name} | {len(sweep.tokens)} | {cells} | {time.perf_counter() - started:.0f} |", flush=True)
        cache.close()


if __name__ == "__main__":
    main()
