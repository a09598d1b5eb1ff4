"""Checks of the model-weights section: Gaussian-looking weights, outlier activations, power-law spectra."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lecture.render import Rendered
from probes import spectra
from results.distribution import Distribution
from results.spectra import ModelSpectra


def share_above(matrices: Sequence[spectra.MatrixSpectrum], alpha: float = 6.0) -> dict[str, float]:
    """For each kind of block matrix (q, k, v, ...), the share of its layers whose alpha is above `alpha`."""
    kinds = dict.fromkeys(m.kind for m in matrices if m.layer >= 0)
    return {k: float(np.mean([m.alpha > alpha for m in matrices if m.kind == k and m.layer >= 0])) for k in kinds}


def weight_histogram(rendered: Rendered) -> str:
    dist = rendered.result("distribution", Distribution)
    inside = 1 - (dist.below + dist.above) / dist.n
    area = float(np.sum(dist.density * np.diff(dist.edges)))
    heavier = 0.0027 < dist.beyond_3_std < 0.02  # a Gaussian has 0.27% beyond 3 std
    if abs(area - inside) > 1e-6 or abs(dist.excess_kurtosis) > 10 or not heavier or dist.beyond_6_std > 1e-3:
        raise rendered.fail(
            f"kurtosis {dist.excess_kurtosis:.2f}, beyond 6 std {dist.beyond_6_std:.2%}: not near-Gaussian"
        )
    return (
        f"{dist.n:,} weights: excess kurtosis {dist.excess_kurtosis:.2f}, {dist.beyond_3_std:.2%} beyond 3 std "
        f"(Gaussian 0.27%), {dist.beyond_6_std:.4%} beyond 6"
    )


def activation_histogram(rendered: Rendered) -> str:
    dist = rendered.result("distribution", Distribution)
    outliers = np.abs(np.array([dist.minimum, dist.maximum]) - dist.center) / dist.scale
    if dist.beyond_6_std == 0 or outliers.max() < 20:
        raise rendered.fail("no value lies far outside the Gaussian bulk")
    return (
        f"{dist.n:,} values: {dist.beyond_6_std:.3%} beyond 6 std (a Gaussian: 2e-7 %), the largest "
        f"{outliers.max():,.0f} robust sigmas out; excess kurtosis {dist.excess_kurtosis:,.0f}"
    )


def esd(rendered: Rendered) -> str:
    chosen = rendered.result("spectra", ModelSpectra).get(rendered.settings["options"]["matrix"])
    mp_x, mp_density = spectra.marchenko_pastur(chosen.shape, chosen.std**2)
    edge = float(mp_x[mp_density > 0].max())
    largest = float(chosen.eigenvalues.max())
    if not np.isfinite(chosen.alpha) or largest <= edge:
        raise rendered.fail("the spectrum has no fitted tail beyond the Marchenko-Pastur bulk")
    return (
        f"{chosen.name}: alpha {chosen.alpha:.2f} over the top {chosen.n_tail} eigenvalues (D = {chosen.ks_distance:.3f}); "
        f"the largest eigenvalue is {largest / edge:.1f}x the bulk's edge"
    )


MOSTLY = 2 / 3  # "most layers": more than this share of a kind's layers above the band


def alpha(rendered: Rendered) -> str:
    matrices = rendered.result("spectra", ModelSpectra).matrices
    alphas = np.array([m.alpha for m in matrices if m.layer >= 0])
    good = float(np.mean((alphas >= 2) & (alphas <= 6)))
    shares = share_above(matrices)
    above = {kind: share for kind, share in shares.items() if share > MOSTLY}
    found = f"{good:.0%} of {len(alphas)} block matrices have alpha from 2 to 6; above 6 in most layers: " + (
        ", ".join(f"{kind} ({share:.0%})" for kind, share in above.items()) or "no kind"
    )
    if good <= 0.5:
        raise rendered.fail(f"only {good:.0%} of the matrices have alpha from 2 to 6")
    if rendered.own_model and not {"v", "up"} <= above.keys():  # the caption: v and up mostly above 6
        raise rendered.fail(found)
    return found


CHECKS = {
    "weight_histogram": weight_histogram,
    "activation_histogram": activation_histogram,
    "esd": esd,
    "alpha_by_layer": alpha,
}
