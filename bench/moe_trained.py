"""The trained MoE (probes.moe_trained): what each recipe's build measured, side by side.

Each recipe (`E:k:steps[:balance[:shared]]`, default: the built-in model's recipe) is read from the model store,
or trained into it first; its training record holds the build time, the distillation curve, the held-out loss
against build time and at every k (trained, and with the router untrained), the experts' load before and after, and
the parameter, FLOP and MLP-time table. Then the first recipe against the MoEfication baseline (ridge router,
unweighted sum) on the MoEfication bench's text, through the routing page's probes, and how much each MoE's experts
specialise in kinds of tokens. Prints Markdown and records it in bench/RESULTS.md (replacing the previous run's
section).

    python bench/moe_trained.py [16:4:150 16:4:150:0.01:1 16:4:150:0.01:2 32:8:150 ...]
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.moefication import N_SENTENCES  # noqa: E402
from bench.record import record  # noqa: E402
from probes import corpus, moe_loss, moe_trained, moe_trained_store, moe_update, routing  # noqa: E402
from probes.moe_state import dense, routed  # noqa: E402
from probes.moefication import DERIVED_NAME  # noqa: E402
from probes.nll import token_nll  # noqa: E402
from probes.text import encode  # noqa: E402
from results.moe_trained import Recipe, TrainingLog, tenths  # noqa: E402
from results.moefication import Setting  # noqa: E402
from runtime.builtin import TRAINED_MOE  # noqa: E402
from runtime.cache import ResultCache  # noqa: E402
from runtime.handle import ModelHandle  # noqa: E402
from runtime.models import load, load_built  # noqa: E402
from runtime.settings import settings  # noqa: E402


def recipe_of(spec: str) -> Recipe:
    """`E:k:steps[:balance[:shared]]` as a recipe, the rest as the default's."""
    experts, top_k, steps, *more = spec.split(":")
    chosen = dataclasses.replace(Recipe(), experts=int(experts), top_k=int(top_k), steps=int(steps))
    if more:
        chosen = dataclasses.replace(chosen, balance=float(more[0]))
    return dataclasses.replace(chosen, shared=int(more[1])) if len(more) > 1 else chosen


def label(recipe: Recipe) -> str:
    """The recipe as a table's row names it."""
    shared = f" ({recipe.shared} shared)" if recipe.shared else ""
    return f"E = {recipe.experts}, k = {recipe.top_k}{shared}, {recipe.steps} steps, balance weight {recipe.balance:g}"


def rows(log: TrainingLog) -> list[str]:
    """Markdown rows: dense, then the MoE at each k."""
    costs, recipe = log.costs, log.recipe
    name = label(recipe)
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


def curve_rows(log: TrainingLog) -> list[str]:
    """Markdown rows: the held-out loss at each measurement of the build."""
    name = label(log.recipe)
    return [
        f"| {name} | {seconds / 60:.1f} | {stage} | {nll:.3f} | {nll - log.dense_nll:+.3f} |"
        for seconds, stage, nll in zip(log.curve_seconds, log.curve_stages(), log.curve_nll, strict=True)
    ]


def against_moefication(folder: Path, recipe: Recipe) -> list[str]:
    """Markdown: loss at each k and load balance of the trained MoE and of the MoEfied model (its fitted router) on
    one text, through the page's probes."""
    trained, moefied = load_built(TRAINED_MOE.name, folder, "bench"), load(DERIVED_NAME)
    text = " ".join(corpus.sentences()[:N_SENTENCES])
    with tempfile.TemporaryDirectory() as scratch:
        cache = ResultCache(Path(scratch))
        ours = moe_loss.trained_loss_by_k(trained, text, cache).value
        cv_ours = [routing.balance(layer).cv for layer in routing.run(trained, text, cache).value.layers]
        fitted = Setting(recipe.experts, recipe.top_k, "fitted")
        cv_theirs = [routing.balance(layer).cv for layer in routing.run(moefied, text, cache, fitted).value.layers]
        cache.close()
    ks = list(ours.ks[recipe.experts])
    trained_nll = ours.nll[moe_loss.TRAINED_ROUTER][recipe.experts]
    with dense():
        dense_nll = float(token_nll(moefied, ours.token_ids).mean())
    fitted_nll = []  # the MoEfication at the trained MoE's own k values
    for k in ks:
        with routed(dataclasses.replace(fitted, top_k=int(k))):
            fitted_nll.append(float(token_nll(moefied, ours.token_ids).mean()))
    lines = [
        f"\nOn the MoEfication bench's text (the first {N_SENTENCES} corpus sentences, {len(ours.token_ids)} tokens; "
        f"dense **{dense_nll:.3f}**), E = {recipe.experts}: the trained MoE ({recipe.routing()}, gates "
        "renormalised over the chosen) against the MoEfied model with its fitted ridge router (unweighted "
        f"sum). Load balance at k = {recipe.top_k}, coefficient of variation of the experts' load, median over the "
        f"layers: trained {np.median(cv_ours):.2f}, MoEfication's fitted router {np.median(cv_theirs):.2f}.\n",
        "| k | MLP neurons used | trained MoE | MoEfication, fitted router | trained - fitted | trained - dense |",
        "|---|---|---|---|---|---|",
    ]
    for i, k in enumerate(ks):
        lines.append(
            f"| {k} | {k / recipe.experts:.0%} | {trained_nll[i]:.3f} | {fitted_nll[i]:.3f} | "
            f"{trained_nll[i] - fitted_nll[i]:+.3f} | {trained_nll[i] - dense_nll:+.3f} |"
        )
    return lines


def at_their_k(folders: list[Path], recipes: list[Recipe]) -> list[str]:
    """Markdown: each MoE at the k it was trained for (its own config's) against the MoEfication (its fitted router,
    the same E and k) on the MoEfication bench's text."""
    moefied = load(DERIVED_NAME)
    ids = encode(moefied, " ".join(corpus.sentences()[:N_SENTENCES]), settings().max_tokens).token_ids
    lines = [
        "\nEach recipe at the k it was trained for, on the same text, against the MoEfication at that k:\n",
        "| recipe | MLP neurons used | trained MoE | MoEfication, fitted router | trained - fitted |",
        "|---|---|---|---|---|",
    ]
    for folder, recipe in zip(folders, recipes, strict=True):
        trained_nll = float(token_nll(load_built(TRAINED_MOE.name, folder, "bench"), ids).mean())
        with routed(Setting(recipe.experts, recipe.top_k, "fitted")):
            fitted_nll = float(token_nll(moefied, ids).mean())
        lines.append(
            f"| {label(recipe)} | {recipe.top_k / recipe.experts:.0%} | {trained_nll:.3f} | {fitted_nll:.3f} | "
            f"{trained_nll - fitted_nll:+.3f} |"
        )
    return lines


CATEGORIES = ("punctuation", "number", "capitalised", "lower-case word")


def category(token: str) -> int:
    """The token's kind, an index into CATEGORIES: punctuation (or space), a number, a capitalised word, another."""
    text = token.strip()
    if not any(c.isalnum() for c in text):
        return 0
    if any(c.isdigit() for c in text):
        return 1
    return 2 if text[0].isupper() else 3


def explained(experts: np.ndarray, kinds: np.ndarray) -> float:
    """The share of the tokens' kind entropy that their top-1 expert explains: I(expert; kind) / H(kind)."""
    joint = np.zeros((int(experts.max()) + 1, len(CATEGORIES)))
    np.add.at(joint, (experts, kinds), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    seen = joint > 0
    kind = joint.sum(0)[joint.sum(0) > 0]
    return float((joint[seen] * np.log(joint[seen] / outer[seen])).sum() / -(kind * np.log(kind)).sum())


def untrained(base: ModelHandle, folder: Path, scratch: Path) -> ModelHandle:
    """The MoE of the build in `folder` as converted, its routers as the family initialises them, saved under scratch
    and loaded."""
    converted = moe_trained_store.converted(base, moe_update.read(folder))
    converted.save_pretrained(scratch / "untrained")
    base.tokenizer.save_pretrained(scratch / "untrained")
    return load_built(TRAINED_MOE.name, scratch / "untrained", "bench")


def specialisation(folders: list[Path], recipes: list[Recipe]) -> list[str]:
    """Markdown: how much of the corpus tokens' kind (punctuation, number, capitalised, other word) their top-1
    expert tells, per layer, for each trained MoE, the first recipe's MoE before training and the MoEfication's fitted
    router, against chance (the same choices given to shuffled tokens)."""
    base = load(TRAINED_MOE.base)
    sentences = corpus.sentences()
    handles: list[tuple[str, ModelHandle, Setting | None]] = [
        (label(r), load_built(TRAINED_MOE.name, f, "bench"), None) for f, r in zip(folders, recipes, strict=True)
    ]
    handles.append(("MoEfication, fitted router, E = 16, k = 4", load(DERIVED_NAME), Setting(16, 4, "fitted")))
    rng = np.random.default_rng(0)
    lines = [
        f"\nExpert specialisation over the bundled corpus ({len(sentences)} sentences): the share of the entropy of "
        "each token's kind (punctuation, number, capitalised word, other word) that its top-1 expert explains, "
        "I(expert; kind) / H(kind), per layer; chance: the same experts given to shuffled tokens.\n",
        "| model | tokens | median of layers | highest layer | chance (median) |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        handles.insert(1, (f"{label(recipes[0])}, router untrained", untrained(base, folders[0], Path(scratch)), None))
        cache = ResultCache(Path(scratch) / "cache")
        for name, handle, setting in handles:
            routed = routing.corpus_run(handle, sentences, cache, setting).value
            vocabulary, inverse = np.unique(routed.token_ids, return_inverse=True)
            kinds = np.asarray([category(str(base.tokenizer.decode([int(t)]))) for t in vocabulary])[inverse]
            shares = np.asarray([explained(e[:, 0].astype(np.int64), kinds) for e in routed.experts])
            chance = [explained(rng.permutation(e[:, 0].astype(np.int64)), kinds) for e in routed.experts]
            lines.append(
                f"| {name} | {len(kinds):,} | {np.median(shares):.1%} | {shares.max():.1%} (layer "
                f"{int(shares.argmax())}) | {np.median(chance):.1%} |"
            )
        cache.close()
    return lines


def report(recipes: list[Recipe]) -> str:
    """Build or read each recipe's MoE and return the Markdown section."""
    base = load(TRAINED_MOE.base)
    folders = [moe_trained_store.stored_or_trained(base, r) for r in recipes]
    logs = [moe_trained_store.training_log(folder) for folder in folders]
    ids = moe_trained.training_ids(base, Recipe().tokens)
    for log, folder in zip(logs, folders, strict=True):  # timed again here, side by side, on an otherwise idle machine
        log.costs = moe_trained.costs(base, load_built(TRAINED_MOE.name, folder, "bench").model, ids, log.costs.ks)
    lines = [
        f"## Trained MoE from SmolLM2 ({date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        "`python bench/moe_trained.py`)\n",
        "Each build: the MoEfication split (with S shared experts: the S x 96 neurons of largest output energy "
        "shared, the others split again into E - S experts), 60 layer-wise fitting steps per layer, then the "
        f"distillation steps; held-out NLL on the first 40 corpus sentences ({logs[0].eval_tokens} tokens). Active "
        "parameters: attention, norms, router, k experts per block (the shared ones counted) and the output head; "
        "FLOPs = 2 x active; MLP time: the middle block on 512 real tokens, the family's own forward (Mixtral or "
        "Qwen2-MoE: only the chosen experts run), timed in this run (the build's own timing shares the machine with "
        "the training).\n",
        "| recipe | build (min) | train tokens | KL first 10% -> last 10% | balance loss, last 10% | layer error median "
        "| load CV untrained -> trained (median of layers) |",
        "|---|---|---|---|---|---|---|",
    ]
    for log in logs:
        (kl_first, kl_last), (_, balance_last) = tenths(log.kl), tenths(log.balance)
        lines.append(
            f"| {label(log.recipe)} | {log.seconds / 60:.1f} | "
            f"{log.train_tokens:,} | {kl_first:.2f} -> {kl_last:.2f} | "
            f"{balance_last:.2f} | {np.median(log.layer_error):.2f} | "
            f"{np.median(log.untrained_cv):.2f} -> {np.median(log.trained_cv):.2f} |"
        )
    lines += [
        "",
        "| recipe | model | active params (M) | FLOPs/token (M) | MLP us/token | MLP time vs dense | NLL trained "
        "| NLL untrained router |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for log in logs:
        lines += rows(log)
    lines += [
        f"\nHeld-out NLL at the trained k against build time (dense {logs[0].dense_nll:.3f}):\n",
        "| recipe | minutes | stage | NLL | NLL - dense |",
        "|---|---|---|---|---|",
    ]
    for log in logs:
        lines += curve_rows(log)
    lines += against_moefication(folders[0], recipes[0])
    lines += at_their_k(folders, recipes)
    lines += specialisation(folders, recipes)
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the section and record it in bench/RESULTS.md."""
    recipes = [recipe_of(spec) for spec in sys.argv[1:]] or [Recipe()]
    section = report(recipes)
    print(section)
    record(section)


if __name__ == "__main__":
    main()
