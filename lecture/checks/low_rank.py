"""Checks of the low-rank section: energy concentrates in the top singular values; truncation costs loss; a few
concept atoms carry a word."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from probes import compress, concepts
from results.compress import RankSweep
from results.concepts import ConceptDictionary, WordConcepts
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
    below = sweep.nll[sweep.ranks < compress.full_rank(rendered.handle)]
    if not np.all(below > sweep.base_nll + 0.5):
        raise rendered.fail("some rank below full keeps the full model's loss (within half a nat)")
    return f"rank {int(sweep.ranks[0])}: NLL {sweep.nll[0]:.2f}; rank {full}: {at_full:.2f}; full model {sweep.base_nll:.2f}"


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
}
