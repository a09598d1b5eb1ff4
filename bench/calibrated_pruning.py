"""Magnitude, Wanda and SparseGPT pruning; round-to-nearest and GPTQ quantization; on the built-in decoders.

Every block matrix (q, k, v, o, gate, up, down) compressed at once on a copy of the model, each method at 50%
unstructured and 2:4, or at 4 and 3 bits (one scale per row). Wanda, SparseGPT and GPTQ read calibration sequences
of corpus text (`probes.calibrated`, the page's default size) that share no sentence with the held-out sentences
scored here. Prints the held-out NLL and perplexity and the seconds each setting took to compress, side by side,
and records the section in bench/RESULTS.md.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from probes import calibrated, pruning  # noqa: E402
from probes.batches import by_length  # noqa: E402
from probes.corpus import sentences  # noqa: E402
from results.pruning import CALIBRATED, METHOD_NAMES, Compression  # noqa: E402
from runtime.models import load  # noqa: E402

MODELS = ("smollm2-135m-instruct", "gemma3-270m")
HELD_OUT = 64
SETTINGS = (
    *(Compression(m, 0.5) for m in ("prune", "wanda", "sparsegpt")),
    *(Compression(m, 0.5, pattern="2:4") for m in ("prune", "wanda", "sparsegpt")),
    *(Compression(m, b) for b in (4, 3) for m in ("quantize", "gptq")),
)


def main() -> None:
    """Measure every setting on every model and record the table."""
    held_out = sentences()[:HELD_OUT]
    rows, totals = [], []
    for name in MODELS:
        handle = load(name)
        groups = by_length(handle, held_out)
        calibration = calibrated.calibration_ids(
            handle, held_out, calibrated.DEFAULT_SEQUENCES, calibrated.DEFAULT_LENGTH
        )
        shapes = [m.shape for m in pruning.linear_weights(handle)]
        dense = pruning.sentences_nll(handle, groups)
        rows.append(f"| {name} | dense (as loaded) | 2.000 | {dense:.3f} | {math.exp(dense):.1f} | |")
        started = time.perf_counter()
        for setting in SETTINGS:
            began = time.perf_counter()
            with pruning.compressed(handle, setting, calibration if setting.method in CALIBRATED else None) as small:
                seconds = time.perf_counter() - began
                nll = pruning.sentences_nll(small, groups)
            cost = pruning.bytes_per_weight(setting, shapes)
            rows.append(
                f"| {name} | {METHOD_NAMES[setting.method]} {setting.label} | {cost:.3f} | {nll:.3f} | "
                f"{math.exp(nll):.1f} | {seconds:.1f} |"
            )
        totals.append(f"{name} {time.perf_counter() - started:.0f} s")
        del handle
    date = datetime.now(timezone.utc).date()
    section = "\n".join(
        [
            f"## Calibrated pruning and quantization ({date}, {platform.machine()}, {os.cpu_count()} cores, "
            "`python bench/calibrated_pruning.py`)",
            "",
            f"Every block matrix compressed at once on a copy of the model; mean per-token NLL and perplexity of the "
            f"first {HELD_OUT} corpus sentences one by one (held out). Wanda, SparseGPT and GPTQ calibrated on "
            f"{calibrated.DEFAULT_SEQUENCES} sequences of {calibrated.DEFAULT_LENGTH} tokens of the other corpus "
            "sentences; seconds = compressing the copy (calibration passes included), not scoring it. For scale, "
            "the SparseGPT paper's OPT-125M at 50%: dense perplexity 27.7, magnitude 193, SparseGPT 37.",
            "",
            "| model | setting | bytes/weight | NLL | perplexity | seconds |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"All settings: {'; '.join(totals)}.",
        ]
    )
    print(section)
    record(section)


if __name__ == "__main__":
    main()
