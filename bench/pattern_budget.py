"""The loss against the attention budget for every structured pattern on the built-in decoders, in one run.

The first N_SENTENCES corpus sentences as paragraphs (bench/window_sinks.py's text); each pattern at each size
imposed on every attention layer, without and with the first SINKS tokens kept visible; the page's other settings
(dilation 2, one global token in the middle, one random block per query block, seed 0). Budget: the share of the
causal n(n+1)/2 query-key pairs a pattern keeps. Records its section in bench/RESULTS.md.
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

from bench.record import record  # noqa: E402
from bench.window_sinks import MODELS, N_SENTENCES, SINKS, paragraphs  # noqa: E402
from probes import structured  # noqa: E402
from runtime.cache import ResultCache  # noqa: E402
from runtime.models import load  # noqa: E402

SIZES = (8, 16, 32, 64, 128)


def main() -> None:
    text = paragraphs()
    lines = [
        f"## Loss against attention budget, every pattern ({datetime.now(timezone.utc):%Y-%m-%d}, "
        f"{platform.machine()}; `python bench/pattern_budget.py`)",
        "",
        f"Mean per-token NLL (nats) of the first {N_SENTENCES} corpus sentences with every layer under the pattern, "
        f"at sizes {', '.join(map(str, SIZES))} (the window; the block of block-sparse); each cell: NLL (budget). "
        f"Dilation 2, one global token in the middle, one random block per query block (seed 0); + {SINKS} sinks: "
        "the first tokens kept visible.",
        "",
        "| model | full | pattern | " + " | ".join(f"size {s}" for s in SIZES) + " | seconds |",
        "|---" * (len(SIZES) + 4) + "|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        cache = ResultCache(Path(folder))
        for name in MODELS:
            handle = load(name)
            n = len(handle.tokenizer(text)["input_ids"])
            started = time.perf_counter()
            sweep = structured.pattern_sweep(
                handle, text, structured.PATTERNS, SIZES, SINKS, structured.Structure(2, (n // 2,), 1, 0), cache
            ).value
            seconds = time.perf_counter() - started
            for i, label in enumerate(sweep.labels):
                for k, sinks in enumerate(("", f" + {SINKS} sinks")):
                    cells = " | ".join(
                        f"{sweep.nll[i, j, k]:.3f} ({sweep.budget[i, j, k]:.1%})" for j in range(len(SIZES))
                    )
                    lines.append(
                        f"| {name} ({sweep.n_tokens} tokens) | {sweep.nll_full:.3f} | {label}{sinks} | "
                        f"{cells} | {seconds:.0f} |"
                    )
                    print(lines[-1], flush=True)
        cache.close()
    record("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
