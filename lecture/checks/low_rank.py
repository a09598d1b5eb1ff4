"""Checks of the low-rank section: energy concentrates in the top singular values; truncation costs loss."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from probes import compress
from results.compress import RankSweep
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


CHECKS = {
    "rank_energy": energy,
    "rank_loss": rank_loss,
}
