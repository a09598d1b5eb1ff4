"""Checks of the low-rank section: energy concentrates in the top singular values; truncation costs loss; LoRA and
full fine-tuning both learn the task, LoRA's update has rank exactly r and the full one is dominated by a few
directions that overlap LoRA's; a few concept atoms carry a word."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from probes import concepts, pruning
from results.concepts import ConceptDictionary, WordConcepts
from results.finetune import FineTuneComparison
from results.pruning import RankSweep
from results.spectra import ModelSpectra


def energy_at(singular_values: np.ndarray, share: float) -> float:
    """The share of Σσ² in the top `share` of the singular values."""
    energy = np.cumsum(np.asarray(singular_values, dtype=np.float64) ** 2)
    return float(energy[max(1, int(np.ceil(share * len(energy)))) - 1] / energy[-1])


def energy(rendered: Rendered) -> str:
    held = [
        energy_at(m.singular_values, 0.1) for m in rendered.result("spectra", ModelSpectra).matrices if m.layer >= 0
    ]
    if not min(held) > 0.1:
        raise rendered.fail("some matrix has a flat spectrum: its top 10% hold no more than 10% of the energy")
    return f"the top 10% of the rank hold {min(held):.0%} to {max(held):.0%} of Σσ² (median {np.median(held):.0%}; flat: 10%)"


def rank_loss(rendered: Rendered) -> str:
    sweep = rendered.result("sweep", RankSweep)
    full = max(int(r) for r in sweep.ranks)
    at_full = float(sweep.nll[np.argmax(sweep.ranks)])
    below = sweep.nll[sweep.ranks < pruning.full_rank(rendered.handle)]
    if not np.all(below > sweep.base_nll + 0.5):
        raise rendered.fail("some rank below full keeps the full model's loss (within half a nat)")
    return f"rank {int(sweep.ranks[0])}: NLL {sweep.nll[0]:.2f}; rank {full}: {at_full:.2f}; full model {sweep.base_nll:.2f}"


MIN_FALL = 1.0  # nats: how far both held-out losses must fall for the caption's "both fall"
MIN_OVER_CHANCE = 5  # how many times a flat spectrum's energy (random subspaces' φ) the full update must show


def finetune_loss(rendered: Rendered) -> str:
    done = rendered.result("finetune", FineTuneComparison)
    lora, full = done.lora, done.full
    first, ends = lora.loss_heldout[0], {run.method: run.loss_heldout[-1] for run in (lora, full)}
    found = (
        f"held-out NLL {first:.2f} before, {ends['lora']:.2f} after LoRA (r = {done.rank}, {lora.trained_share:.2%} of "
        f"the parameters), {ends['full']:.2f} after full fine-tuning ({done.steps} steps each)"
    )
    fell = all(run.loss_heldout[0] - run.loss_heldout[-1] >= MIN_FALL for run in (lora, full))
    if not fell or lora.trained_share >= 0.01 or ends["full"] >= ends["lora"]:
        raise rendered.fail(found)
    return found


def finetune_spectrum(rendered: Rendered) -> str:
    done = rendered.result("finetune", FineTuneComparison)
    ranks = {m.numerical_rank for m in done.lora.matrices}
    full = done.full.matrices[done.matrix_index(str(rendered.settings["options"]["matrix"]))]
    flat = done.rank / min(full.shape)
    found = (
        f"LoRA's numerical ranks: {sorted(ranks)}; {full.name} fully fine-tuned: rank {full.numerical_rank} of "
        f"{min(full.shape)}, {full.energy_top_r:.0%} of Σσ² in its top {done.rank} (flat: {flat:.1%})"
    )
    if ranks != {done.rank} or full.numerical_rank < min(full.shape) - 8 or full.energy_top_r < MIN_OVER_CHANCE * flat:
        raise rendered.fail(found)
    return found


def finetune_energy(rendered: Rendered) -> str:
    done = rendered.result("finetune", FineTuneComparison)
    energy = np.array([m.energy_top_r for m in done.full.matrices])
    flat = np.array([done.rank / min(m.shape) for m in done.full.matrices])
    similarity = done.similarity[:, -1]
    found = (
        f"top {done.rank} of the full update: {energy.min():.0%} to {energy.max():.0%} of Σσ² (flat: {flat.min():.1%} "
        f"to {flat.max():.1%}); φ({done.rank}, {done.rank}) with LoRA: {similarity.min():.2f} to {similarity.max():.2f} "
        f"(random: {done.chance.min():.3f} to {done.chance.max():.3f})"
    )
    if np.any(energy < MIN_OVER_CHANCE * flat) or np.any(similarity < MIN_OVER_CHANCE * done.chance):
        raise rendered.fail(found)
    return found


def random_share(vector: np.ndarray, n_atoms: int, k: int, seed: int = 0) -> float:
    """The part of a unit vector's |x|^2 that OMP's best k of n_atoms random unit directions carry."""
    directions = np.random.default_rng(seed).standard_normal((n_atoms, len(vector)))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    code = concepts.sparse_codes(vector[None], directions, k)[0]
    return float(1 - np.linalg.norm(vector - code @ directions) ** 2)


def concept_code(rendered: Rendered) -> str:
    found = rendered.result("dictionary", ConceptDictionary)
    word = rendered.result("word", WordConcepts)
    k = int(rendered.settings["options"]["atoms"])
    x = word.vector.astype(np.float64)
    error = float(np.linalg.norm(x - word.coefficients.astype(np.float64) @ found.atoms[word.atoms].astype(np.float64)))
    if len(word.atoms) > k or abs(error - word.reconstruction_error) > 1e-4:
        raise rendered.fail(
            f"the code has {len(word.atoms)} atoms and error {word.reconstruction_error:.4f}, not {error:.4f}"
        )
    share, chance = 1 - error**2, random_share(x, found.n_atoms, k)
    if not (0.15 <= share <= 0.4 and share >= 2 * chance):
        raise rendered.fail(f"{k} atoms carry {share:.0%} of |x|², the best {k} random directions {chance:.0%}")
    return (
        f"{k} atoms carry {share:.0%} of “{word.word}”'s |x|² (error {error:.2f}); the best {k} of {found.n_atoms} "
        f"random directions {chance:.0%}"
    )


CHECKS = {
    "rank_energy": energy,
    "rank_loss": rank_loss,
    "concept_decomposition": concept_code,
    "finetune_loss": finetune_loss,
    "finetune_spectrum": finetune_spectrum,
    "finetune_energy": finetune_energy,
}
