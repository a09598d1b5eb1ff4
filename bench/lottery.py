"""Lottery tickets on the digits: the mean test accuracy of the winning ticket, reinit and random-mask lines per
round, with their range over seeds, and the wall time of the whole default experiment. Markdown, for
bench/RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probes import lottery  # noqa: E402


def main() -> None:
    """Run the default experiment (no cache) and print one row per round."""
    started = time.perf_counter()
    result = lottery.compute(lottery.DEFAULT_ROUNDS, lottery.DEFAULT_SEEDS)
    seconds = time.perf_counter() - started
    runs = result.n_seeds * (1 + 3 * result.n_rounds)
    date = datetime.now(timezone.utc).date()
    print(f"## Lottery tickets on the digits ({date}, {platform.machine()}, {os.cpu_count()} cores, ", end="")
    print("`python bench/lottery.py`)\n")
    print(
        f"Iterative magnitude pruning with rewinding of a {'-'.join(map(str, result.layer_sizes))} MLP on "
        f"scikit-learn's digits ({result.n_train} training, {result.n_test} test images): "
        f"{result.prune_rate:.0%} of each hidden layer's remaining weights a round, half that of the output layer; "
        f"Adam at {result.learning_rate:g}, {result.epochs} epochs of batches of {result.batch_size}. Test accuracy "
        f"(%), mean over {result.n_seeds} seeds with the range in brackets. Reinit: the ticket's masks from a fresh "
        "initialisation; random mask: random masks of the same per-layer sparsity from the ticket's initialisation.\n"
    )
    print("| round | weights left (%) | winning ticket | reinit | random mask |")
    print("|---|---|---|---|---|")
    for round_, share in enumerate(result.remaining):
        cells = [
            f"{100 * a[:, round_].mean():.1f} ({100 * a[:, round_].min():.1f}-{100 * a[:, round_].max():.1f})"
            for a in result.lines().values()
        ]
        print(f"| {round_} | {100 * share:.1f} | {' | '.join(cells)} |")
    print(f"\n{runs} trainings in {seconds:.1f} s ({seconds / runs:.2f} s each), one thread per training.")


if __name__ == "__main__":
    main()
