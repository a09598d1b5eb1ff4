"""LoRA against full fine-tuning at the defaults: the wall time of both runs, their losses, LoRA's ranks, the full
update's energy in its top r directions and the subspace similarity of the two updates. Markdown, for
bench/RESULTS.md.

    python bench/finetune.py [--model NAME]...   (default: SmolLM2, then Gemma 3 270M)

Runs train in a temporary model store, so nothing stored before is read and nothing is left behind.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probes import finetune  # noqa: E402
from results.finetune import FineTuneComparison  # noqa: E402
from runtime.cache import ResultCache  # noqa: E402
from runtime.models import load  # noqa: E402

MODELS = ("smollm2-135m-instruct", "gemma3-270m")


def _spread(values: np.ndarray, form: str) -> str:
    return f"{np.min(values):{form}} / {np.median(values):{form}} / {np.max(values):{form}}"


def section(result: FineTuneComparison, seconds: float, cpu: float) -> None:
    """One model's table: a row per method, then the comparison of the updates."""
    r = result.rank
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"**{result.model}**: both runs in {seconds:.0f} s of wall time and {cpu:.0f} s of CPU (the model loaded; "
        f"SVDs included; load average {load} at the end).\n"
    )
    print("| method | trained params | train seconds | held-out NLL before → after | batch NLL first → last |")
    print("|---|---|---|---|---|")
    for run in result.runs().values():
        held, batch = run.loss_heldout, run.loss_train
        print(
            f"| {run.method} (peak lr {run.learning_rate:g}) | {run.trained_params:,} ({run.trained_share:.2%}) | "
            f"{run.train_seconds:.0f} | {held[0]:.2f} → {held[-1]:.2f} | {batch[0]:.2f} → {batch[-1]:.2f} |"
        )
    full = result.full.matrices
    energy = np.array([m.energy_top_r for m in full])
    flat = np.array([r / min(m.shape) for m in full])
    print(
        f"\nLoRA's numerical ranks over the {len(full)} adapted matrices: "
        f"{sorted({m.numerical_rank for m in result.lora.matrices})}. Full fine-tuning (min / median / max over the "
        f"matrices): numerical rank {_spread(np.array([m.numerical_rank for m in full]), '.0f')}, effective rank "
        f"{_spread(np.array([m.effective_rank for m in full]), '.0f')}, Σσ² in the top {r} "
        f"{_spread(energy, '.0%')} (a flat spectrum: {_spread(flat, '.1%')}). Subspace similarity φ({r}, {r}) of "
        f"the two updates: {_spread(result.similarity[:, -1], '.2f')} (random subspaces: "
        f"{_spread(result.chance, '.3f')}); φ(1, 1): {_spread(result.similarity[:, 0], '.2f')}.\n"
    )


def main() -> None:
    """Train both runs at the defaults on each model, in a throwaway store and cache, and print the results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", action="append", help="a decoder (default: SmolLM2 and Gemma 3 270M)")
    args = parser.parse_args()
    date = datetime.now(timezone.utc).date()
    print(f"## LoRA against full fine-tuning ({date}, {platform.machine()}, {os.cpu_count()} cores, ", end="")
    print("`python bench/finetune.py`)\n")
    print(
        f"Defaults: rank r = {finetune.DEFAULT_RANK} on q_proj and v_proj of every block, {finetune.DEFAULT_STEPS} "
        "steps of 8 sentences of the bundled made-up facts, the same order and schedule for both runs, a fresh "
        "model store (both runs trained).\n"
    )
    handles = [load(name) for name in args.model or MODELS]  # from the real model store, before it is swapped
    for handle in handles:
        with tempfile.TemporaryDirectory() as store:
            os.environ["LMSCOPE_MODEL_STORE"] = store
            started, cpu = time.perf_counter(), time.process_time()
            result = finetune.compare(handle, ResultCache(Path(store) / "cache")).value
            section(result, time.perf_counter() - started, time.process_time() - cpu)


if __name__ == "__main__":
    main()
