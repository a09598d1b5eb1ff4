"""LoRA against full fine-tuning (Hu et al. 2021): is a fine-tuning update W − W0 low-rank?

The chosen decoder is fine-tuned twice on the bundled task (`probes.finetune_train`), on private copies: LoRA at
rank r on the q and v projections of every block, and full fine-tuning of every parameter. Runs are stored in the
model store (`probes.finetune_store`) and trained only when missing. For each adapted matrix and run this module
reports the singular values of ΔW, its numerical rank (numpy's matrix_rank tolerance: σ > σ₁ · max(out, in) ·
ε(float32)), its effective rank (Roy and Vetterli 2007: exp of the entropy of σ / Σσ, over the values above that
tolerance), the share of Σσ² in its top r singular values, and, between the two runs, the LoRA paper's subspace
similarity of the top-i left singular vectors: φ(i, i) = ‖U_LoRA,iᵀ U_full,i‖²_F / i (their eq. 4), for i = 1..r.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from probes.batches import Progress
from probes.finetune_store import load_run, save_run, training_lock
from probes.finetune_task import DESCRIPTION, task
from probes.finetune_train import BATCH_SIZE, KINDS, LEARNING_RATES, Recipe, Trained, train
from probes.pruning import Matrix, linear_weights
from probes.spectra import effective_rank, worker_count
from results.finetune import METHODS, FineTuneComparison, FineTuneRun, MatrixUpdate
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.placement import as_numpy
from runtime.probe import CachedProbe

NAME = "finetune"
VERSION = 1
DEFAULT_RANK = 8
DEFAULT_STEPS = 30
DEFAULT_SEED = 0
_EPSILON = float(np.finfo(np.float32).eps)  # the updates are float32


def check(handle: ModelHandle, rank: int, steps: int, seed: int, method: str = "lora") -> list[Matrix]:
    """The matrices both methods adapt; a plain error, before any work, for an encoder or a setting out of range."""
    if not handle.is_causal:
        raise LmscopeError(
            f"'{handle.name}' is an encoder: fine-tuning here trains next-token prediction, which it does not do. "
            "Pick a decoder."
        )
    if method not in METHODS:
        raise LmscopeError(f"Unknown fine-tuning method '{method}': choose {' or '.join(METHODS)}.")
    if handle.n_parameters > limits.FINETUNE_PARAMETERS:
        raise LmscopeError(
            f"'{handle.name}' has {handle.n_parameters:,} parameters: fine-tuning all of them holds about 16 bytes "
            f"each (weights, gradients, Adam's moments), so lmscope fine-tunes models of up to "
            f"{limits.FINETUNE_PARAMETERS:,}."
        )
    limits.check_range(steps, 1, limits.FINETUNE_STEPS, "number of fine-tuning steps")
    limits.check_range(seed, 0, limits.SEED, "seed")
    matrices = linear_weights(handle, KINDS)
    smallest = min(min(m.shape) for m in matrices)
    limits.check_range(rank, 1, min(limits.FINETUNE_RANK, smallest), "LoRA rank")
    return matrices


def matrix_names(handle: ModelHandle) -> list[str]:
    """The module names of the matrices both methods adapt, in model order."""
    return [m.name for m in linear_weights(handle, KINDS)]


def adapted(result: FineTuneComparison, name: str) -> str:
    """`name` if both runs adapted that matrix; a plain error naming the first and last of them otherwise."""
    names = [m.name for m in result.lora.matrices]
    if name not in names:
        raise LmscopeError(f"'{name}' is not one of the matrices both runs adapt ({names[0]} ... {names[-1]}).")
    return name


def _trained(
    handle: ModelHandle, recipes: list[Recipe], matrices: list[Matrix], on_progress: Progress | None
) -> list[Trained]:
    """Each recipe's run, read from the model store or trained and stored; progress counts the steps trained."""
    shapes = {m.name: m.shape for m in matrices}
    found = [load_run(handle, recipe, shapes) for recipe in recipes]
    total = sum(recipe.steps for recipe, run in zip(recipes, found) if run is None)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    runs = []
    for recipe, stored in zip(recipes, found):
        if stored is None:
            with training_lock(handle, recipe):  # another request may have trained it meanwhile (e.g. at another r)
                stored = load_run(handle, recipe, shapes)
                if stored is None:
                    stored = train(handle, recipe, step)
                    save_run(handle, recipe, stored)
        runs.append(stored)
    return runs


def subspace_similarity(u_a: np.ndarray, u_b: np.ndarray, r: int) -> np.ndarray:
    """φ(i, i) = ‖U_A,iᵀ U_B,i‖²_F / i for i = 1..r, from two matrices of orthonormal columns (best first)."""
    overlap = (u_a[:, :r].T @ u_b[:, :r]) ** 2
    return np.array([overlap[:i, :i].sum() / i for i in range(1, r + 1)])


def _update(matrix: Matrix, delta: np.ndarray, singular_values: np.ndarray, rank: int) -> MatrixUpdate:
    """One matrix's update as the result reports it, from its singular values."""
    s = singular_values
    kept = s[s > s[0] * max(delta.shape) * _EPSILON] if s[0] > 0 else s[:0]
    energy = s.astype(np.float64) ** 2
    original = float(np.linalg.norm(as_numpy(matrix.weight)))
    return MatrixUpdate(
        name=matrix.name,
        layer=matrix.layer,
        kind=matrix.kind,
        shape=matrix.shape,
        singular_values=s,
        numerical_rank=len(kept),
        effective_rank=effective_rank(kept),
        energy_top_r=float(energy[:rank].sum() / energy.sum()) if energy.sum() > 0 else 0.0,
        relative_norm=float(np.linalg.norm(delta)) / original,
    )


def _run(recipe: Recipe, rank: int, trained: Trained, matrices: list[Matrix]) -> tuple[FineTuneRun, list[np.ndarray]]:
    """The run as reported at rank r, and each matrix's top-r left singular vectors."""

    def spectrum(matrix: Matrix) -> tuple[MatrixUpdate, np.ndarray]:
        delta = trained.deltas[matrix.name].astype(np.float64)
        u, s, _ = np.linalg.svd(delta, full_matrices=False)
        return _update(matrix, delta, s, rank), u[:, :rank]

    # As the weight spectra do: one SVD per core at a time, each on the one BLAS thread of every lmscope process.
    with ThreadPoolExecutor(worker_count()) as pool:
        done = list(pool.map(spectrum, matrices))
    updates, tops = [update for update, _ in done], [top for _, top in done]
    found = FineTuneRun(
        method=recipe.method,
        rank=rank,
        steps=recipe.steps,
        seed=recipe.seed,
        learning_rate=LEARNING_RATES[recipe.method],
        trained_params=trained.trained_params,
        total_params=trained.total_params,
        loss_train=trained.loss_train,
        eval_steps=trained.eval_steps,
        loss_heldout=trained.loss_heldout,
        matrices=updates,
        train_seconds=trained.seconds,
    )
    return found, tops


def _run_at(handle: ModelHandle, rank: int, runs: list[dict[str, Any]], on_progress: Progress) -> FineTuneRun:
    """The run of the recipe `runs[0]` (its settings), reported at rank r."""
    recipe = Recipe.read(runs[0])
    matrices = linear_weights(handle, KINDS)  # found here: a computation may be shipped, its modules may not
    trained = _trained(handle, [recipe], matrices, on_progress)[0]
    return _run(recipe, rank, trained, matrices)[0]


def _compared(handle: ModelHandle, rank: int, runs: list[dict[str, Any]], on_progress: Progress) -> FineTuneComparison:
    """The runs of both methods' recipes (their settings) at rank r, and the similarity of their updates."""
    recipes = [Recipe.read(run) for run in runs]
    matrices = linear_weights(handle, KINDS)
    (lora, lora_tops), (full, full_tops) = (
        _run(recipe, rank, trained, matrices)
        for recipe, trained in zip(recipes, _trained(handle, recipes, matrices, on_progress))
    )
    sentences = task()
    return FineTuneComparison(
        model=handle.name,
        fingerprint=handle.fingerprint,
        task=DESCRIPTION,
        n_train=len(sentences.train),
        n_heldout=len(sentences.heldout),
        batch_size=BATCH_SIZE,
        lora=lora,
        full=full,
        similarity=np.stack([subspace_similarity(a, b, rank) for a, b in zip(lora_tops, full_tops)]),
        chance=np.array([rank / m.shape[0] for m in matrices]),
    )


# The runs' settings are inputs: they name the stored runs too, with the training code's version and the task's data.
PROBE = CachedProbe(NAME, VERSION, _run_at)
COMPARE = CachedProbe(f"{NAME}-compare", VERSION, _compared)


def run(
    handle: ModelHandle,
    method: str,
    cache: ResultCache,
    rank: int = DEFAULT_RANK,
    steps: int = DEFAULT_STEPS,
    seed: int = DEFAULT_SEED,
    on_progress: Progress | None = None,
) -> Cached[FineTuneRun]:
    """One method's run, reported at rank r (full fine-tuning is trained once for every r); cached."""
    check(handle, rank, steps, seed, method)
    runs = [Recipe.of(method, rank, steps, seed).settings()]
    return PROBE.cached(handle, cache, on_progress, rank=rank, runs=runs)


def compare(
    handle: ModelHandle,
    cache: ResultCache,
    rank: int = DEFAULT_RANK,
    steps: int = DEFAULT_STEPS,
    seed: int = DEFAULT_SEED,
    on_progress: Progress | None = None,
) -> Cached[FineTuneComparison]:
    """Both runs on the same data, order, steps and schedule, and the similarity of their updates; cached."""
    check(handle, rank, steps, seed)
    runs = [Recipe.of(method, rank, steps, seed).settings() for method in METHODS]
    return COMPARE.cached(handle, cache, on_progress, rank=rank, runs=runs)
