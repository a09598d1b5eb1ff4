"""The trained MoE (probes.moe_trained): what each recipe's build measured, side by side.

Each recipe (`E:k:steps`, default: the built-in model's recipe) is read from the model store, or trained into it
first; its training record holds the build time, the distillation curve, the held-out loss at every k (trained,
and with the router untrained) and the parameter, FLOP and MLP-time table. Prints Markdown and records it in
bench/RESULTS.md (replacing the previous run's section).

    python bench/moe_trained.py [16:4:150 8:2:150 ...]
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from probes import moe_trained_store  # noqa: E402
from results.moe_trained import Recipe, TrainingLog  # noqa: E402
from runtime.builtin import TRAINED_MOE  # noqa: E402
from runtime.models import load  # noqa: E402


def recipe_of(spec: str) -> Recipe:
    """`E:k:steps` as a recipe, the rest as the default's."""
    experts, top_k, steps = (int(part) for part in spec.split(":"))
    return dataclasses.replace(Recipe(), experts=experts, top_k=top_k, steps=steps)


def rows(log: TrainingLog) -> list[str]:
    """Markdown rows: dense, then the MoE at each k."""
    costs, recipe = log.costs, log.recipe
    name = f"E = {recipe.experts}, trained at k = {recipe.top_k}, {recipe.steps} steps"
    found = [
        f"| {name} | dense | {costs.dense_active / 1e6:.1f} | {costs.dense_flops / 1e6:.0f} | "
        f"{costs.dense_mlp_seconds * 1e6:.1f} | 1.00 | {log.dense_nll:.3f} | |"
    ]
    for i, k in enumerate(costs.ks):
        found.append(
            f"| {name} | k = {k} | {costs.moe_active[i] / 1e6:.1f} | {costs.moe_flops[i] / 1e6:.0f} | "
            f"{costs.moe_mlp_seconds[i] * 1e6:.1f} | {costs.moe_mlp_seconds[i] / costs.dense_mlp_seconds:.2f} | "
            f"{log.trained_nll[i]:.3f} | {log.untrained_nll[i]:.3f} |"
        )
    return found


def report(recipes: list[Recipe]) -> str:
    """Build or read each recipe's MoE and return the Markdown section."""
    base = load(TRAINED_MOE.base)
    logs = [moe_trained_store.training_log(moe_trained_store.stored_or_trained(base, r)) for r in recipes]
    lines = [
        f"## Trained MoE from SmolLM2 ({date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        "`python bench/moe_trained.py`)\n",
        "Each build: the MoEfication split, 60 layer-wise fitting steps per layer, then the distillation "
        f"steps; held-out NLL on the first 40 corpus sentences ({logs[0].eval_tokens} tokens). Active parameters: "
        "attention, norms, router, k experts per block and the output head; FLOPs = 2 x active; MLP time: the "
        "middle block on 512 real tokens, Mixtral's own forward (only the chosen experts run).\n",
        "| recipe | build (min) | train tokens | KL first 10% -> last 10% | balance loss, last 10% | layer error median |",
        "|---|---|---|---|---|---|",
    ]
    for log in logs:
        tenth = max(1, len(log.kl) // 10)
        lines.append(
            f"| E = {log.recipe.experts}, k = {log.recipe.top_k}, {log.recipe.steps} steps | {log.seconds / 60:.1f} | "
            f"{log.train_tokens:,} | {log.kl[:tenth].mean():.2f} -> {log.kl[-tenth:].mean():.2f} | "
            f"{log.balance[-tenth:].mean():.2f} | {np.median(log.layer_error):.2f} |"
        )
    lines += [
        "",
        "| recipe | model | active params (M) | FLOPs/token (M) | MLP us/token | MLP time vs dense | NLL trained "
        "| NLL untrained router |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for log in logs:
        lines += rows(log)
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the section and record it in bench/RESULTS.md."""
    recipes = [recipe_of(spec) for spec in sys.argv[1:]] or [Recipe()]
    section = report(recipes)
    print(section)
    record(section)


if __name__ == "__main__":
    main()
