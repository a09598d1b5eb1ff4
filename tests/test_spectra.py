"""Weight spectra: eigenvalues against numpy's SVD, the power-law fit against its definition and known exponents,
the Marchenko-Pastur law against a random matrix, and the matrices found in the built-in models."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from torch import nn

from probes import spectra
from probes.residual import blocks
from results.spectra import KINDS, ModelSpectra, PowerLawFit, WeightRef
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle


def _random(shape: tuple[int, int], seed: int = 0, scale: float = 0.02) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, size=shape).astype(np.float32)


def _pareto(alpha: float, n: int, seed: int, xmin: float = 1.0) -> np.ndarray:
    """Samples of the density (alpha - 1) / xmin * (x / xmin)^-alpha on x >= xmin (inverse-CDF sampling)."""
    u = np.random.default_rng(seed).random(n)
    return xmin * (1.0 - u) ** (-1.0 / (alpha - 1.0))


def _direct_fit(evals: np.ndarray) -> PowerLawFit:
    """WeightWatcher's default fit written as its definition reads: one candidate xmin at a time."""
    x = np.sort(np.asarray(evals, dtype=np.float64))
    x = x[x > 1e-5]
    n = len(x)
    best = None
    for i in range(n - 1):
        k = n - i
        alpha = 1.0 + k / np.sum(np.log(x[i:] / x[i]))
        d = 1.0
        if alpha > 1.0:
            d = np.max(np.abs(1.0 - (x[i:] / x[i]) ** (1.0 - alpha) - np.arange(k) / k))
        if best is None or d < best[0]:
            best = (d, alpha, x[i], k)
    d, alpha, xmin, k = best
    return PowerLawFit(alpha, xmin, d, k, (alpha - 1.0) / np.sqrt(k))


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (40, 40), (1, 7)])
def test_eigenvalues_are_squared_singular_values(shape: tuple[int, int]) -> None:
    weight = _random(shape, seed=sum(shape), scale=0.5)
    singular = np.linalg.svd(weight.astype(np.float64), compute_uv=False)
    evals = spectra.eigenvalues(weight)
    assert evals.dtype == np.float64 and len(evals) == min(shape)
    assert np.all(np.diff(evals) >= 0)
    np.testing.assert_allclose(evals, np.sort(singular**2), rtol=1e-9, atol=1e-12 * singular.max() ** 2)
    ref = WeightRef("w", "other", 0, shape)
    result = spectra.spectrum(ref, weight)
    np.testing.assert_allclose(result.singular_values, singular, rtol=1e-9, atol=1e-9 * singular.max())
    assert result.spectral_norm == pytest.approx(singular[0], rel=1e-9)
    assert result.stable_rank == pytest.approx(np.sum(singular**2) / singular[0] ** 2, rel=1e-9)
    entries = weight.astype(np.float64).ravel()
    assert result.std == pytest.approx(entries.std(), rel=1e-9)
    z = (entries - entries.mean()) / entries.std()
    assert result.kurtosis == pytest.approx(np.mean(z**4) - 3.0, rel=1e-7, abs=1e-9)


def test_gram_blocks_equal_one_product(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tall matrices (big embeddings) go through the Gram matrix block by block; the result must not change."""
    weight = _random((3000, 40), seed=3)
    whole = spectra.eigenvalues(weight)
    monkeypatch.setattr(spectra, "_CHUNK_ELEMENTS", 4096)
    np.testing.assert_allclose(spectra.eigenvalues(weight), whole, rtol=1e-10)
    np.testing.assert_allclose(spectra.eigenvalues(weight.T), whole, rtol=1e-10)


@pytest.mark.parametrize("alpha", [2.5, 4.0])
def test_fit_recovers_a_known_exponent(alpha: float) -> None:
    fit = spectra.fit_power_law(_pareto(alpha, 2000, seed=int(alpha * 10)))
    # The MLE's standard error is sigma = (alpha - 1) / sqrt(n_tail) (0.03-0.1 here); the xmin scan adds a little
    # selection noise, so allow 4 sigma: a correct fit passes, a wrong formula (e.g. alpha - 1, or a 1/N scale
    # effect on alpha) is off by far more.
    assert abs(fit.alpha - alpha) < 4 * fit.sigma
    assert fit.sigma == pytest.approx((fit.alpha - 1) / np.sqrt(fit.n_tail))
    assert fit.n_tail >= 200 and fit.xmin >= 1.0
    assert 0 < fit.ks_distance < 0.05


@pytest.mark.parametrize("case", ["pareto", "random matrix with spikes", "chunked"])
def test_fit_equals_the_direct_definition(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if case == "pareto":
        evals = _pareto(3.0, 1500, seed=7)
    else:
        weight = _random((300, 500), seed=11).astype(np.float64)
        rng = np.random.default_rng(12)
        for strength in (0.5, 1.0, 2.0, 4.0):  # a few rank-one spikes above the bulk, as trained layers have
            weight += strength * np.outer(rng.normal(size=300), rng.normal(size=500)) / np.sqrt(300 * 500)
        evals = spectra.eigenvalues(weight)
        if case == "chunked":
            monkeypatch.setattr(spectra, "_CHUNK_ELEMENTS", 1000)
    fast, slow = spectra.fit_power_law(evals), _direct_fit(evals)
    assert fast.n_tail == slow.n_tail and fast.xmin == slow.xmin
    for field in ("alpha", "ks_distance", "sigma"):
        assert getattr(fast, field) == pytest.approx(getattr(slow, field), rel=1e-9)


def test_fit_ignores_tiny_eigenvalues_and_handles_too_few() -> None:
    evals = _pareto(3.0, 500, seed=5)
    padded = np.concatenate([np.zeros(100), np.full(50, 1e-6), evals])
    assert spectra.fit_power_law(padded) == spectra.fit_power_law(evals)
    assert np.isnan(spectra.fit_power_law(np.array([0.0, 1.0])).alpha)


@pytest.mark.parametrize("shape", [(400, 1000), (1000, 400)])
def test_marchenko_pastur_matches_a_random_matrix(shape: tuple[int, int]) -> None:
    variance = 0.02**2
    evals = spectra.eigenvalues(_random(shape, seed=1, scale=0.02))
    x, density = spectra.marchenko_pastur(shape, variance)
    assert len(x) == len(density) == 400 and np.all(np.diff(x) > 0) and np.all(density >= 0)
    # Bulk edges: variance * (sqrt(N) -+ sqrt(M))^2. The extreme eigenvalues follow Tracy-Widom laws around them,
    # on the scale variance * (sqrt(N) +- sqrt(M)) * (1/sqrt(M) +- 1/sqrt(N))^(1/3) (Johnstone 2001; Ma 2012):
    # mean about -1.2 and standard deviation about 1.3 of those scales, so 4 scales is a safe margin.
    big, small = np.sqrt(max(shape)), np.sqrt(min(shape))
    upper = variance * (big + small) * (1 / small + 1 / big) ** (1 / 3)
    lower = variance * (big - small) * (1 / small - 1 / big) ** (1 / 3)
    assert x[-1] == pytest.approx(variance * (big + small) ** 2) and x[0] == pytest.approx(
        variance * (big - small) ** 2
    )
    assert abs(evals[-1] - x[-1]) < 4 * upper and abs(evals[0] - x[0]) < 4 * lower
    # KS distance between the eigenvalues' empirical CDF and the law's CDF (trapezoid integral of the density).
    cdf = np.concatenate([[0.0], np.cumsum(np.diff(x) * (density[1:] + density[:-1]) / 2)])
    assert cdf[-1] == pytest.approx(1.0, abs=1e-3)
    empirical = np.searchsorted(evals, x, side="right") / len(evals)
    assert np.max(np.abs(empirical - cdf)) < 0.02


def test_marchenko_pastur_square_matrix_starts_at_zero() -> None:
    x, density = spectra.marchenko_pastur((300, 300), 1.0, points=2000)
    assert 0 < x[0] < 1e-3 and x[-1] == pytest.approx(4 * 300, rel=1e-4)
    cdf = np.sum(np.diff(x) * (density[1:] + density[:-1]) / 2)
    assert cdf == pytest.approx(1.0, abs=0.02)  # the 1/sqrt(x) singularity at 0 is integrable


def test_ranks() -> None:
    assert spectra.effective_rank(np.ones(10)) == pytest.approx(10)
    assert spectra.effective_rank(np.array([3.0, 0.0, 0.0])) == pytest.approx(1)
    assert spectra.stable_rank(np.array([1.0, 1.0, 2.0])) == pytest.approx(2)


def _block_parameters(handle: ModelHandle) -> dict[str, tuple[int, ...]]:
    """Module name -> shape of every 2-D `.weight` parameter under the model's block list, from named_parameters."""
    listing = blocks(handle)
    prefix = next(name for name, module in handle.model.named_modules() if module is listing) + "."
    return {
        name.removesuffix(".weight"): tuple(p.shape)
        for name, p in handle.model.named_parameters()
        if name.startswith(prefix) and name.endswith(".weight") and p.ndim == 2
    }


@pytest.mark.parametrize(
    "model, layers, kinds",
    [
        ("smollm2", 30, ("q", "k", "v", "o", "gate", "up", "down")),
        ("gemma3", 18, ("q", "k", "v", "o", "gate", "up", "down")),
        ("minilm", 6, ("q", "k", "v", "o", "up", "down")),
    ],
)
def test_block_weights_of_the_builtins(model: str, layers: int, kinds: tuple[str, ...], request) -> None:
    handle = request.getfixturevalue(model)
    refs = spectra.block_weights(handle)
    modules = dict(handle.model.named_modules())
    embed = [r for r in refs if r.layer == -1]
    assert len(embed) == 1 and embed[0].kind == "embed"
    assert modules[embed[0].name] is handle.model.get_input_embeddings()
    in_blocks = {r.name: r.shape for r in refs if r.layer >= 0}
    assert in_blocks == _block_parameters(handle)
    assert len(refs) == len(in_blocks) + 1 == layers * len(kinds) + 1
    assert Counter(r.kind for r in refs if r.layer >= 0) == {kind: layers for kind in kinds}
    for ref in refs:
        assert isinstance(modules[ref.name], (nn.Linear, nn.Embedding)) and ref.kind in KINDS
        assert ref.shape == tuple(modules[ref.name].weight.shape)
        assert ref.layer == -1 or ref.name.split(".").count(str(ref.layer)) >= 1


def test_kinds_of_llama_modules(smollm2: ModelHandle) -> None:
    kinds = {r.name: r.kind for r in spectra.block_weights(smollm2)}
    assert kinds["model.layers.0.self_attn.q_proj"] == "q"
    assert kinds["model.layers.29.self_attn.o_proj"] == "o"
    assert kinds["model.layers.3.mlp.down_proj"] == "down"
    assert kinds["model.embed_tokens"] == "embed"


def test_run_is_cached_and_equals_spectrum(smollm2: ModelHandle, cache) -> None:
    progress: list[tuple[int, int]] = []
    first = spectra.run(smollm2, cache, on_progress=lambda done, total: progress.append((done, total)))
    second = spectra.run(smollm2, cache)
    assert not first.hit and second.hit
    assert progress[-1] == (211, 211) and len(progress) == 211
    result = second.value
    assert result.fingerprint == smollm2.fingerprint and len(result.matrices) == 211
    refs = {r.name: r for r in spectra.block_weights(smollm2)}
    for name in ("model.embed_tokens", "model.layers.0.self_attn.k_proj", "model.layers.29.mlp.down_proj"):
        direct = spectra.spectrum(refs[name], spectra.weight_matrix(smollm2, name))
        cached = result.get(name)
        np.testing.assert_array_equal(cached.singular_values, direct.singular_values)
        for field in ("alpha", "xmin", "ks_distance", "n_tail", "sigma", "stable_rank", "kurtosis", "std"):
            assert getattr(cached, field) == getattr(direct, field)
    alphas = np.array([m.alpha for m in result.matrices])
    assert np.all(np.isfinite(alphas)) and np.all(alphas > 1)


def test_unknown_matrix_is_a_clear_error(smollm2: ModelHandle) -> None:
    with pytest.raises(LmscopeError, match="Unknown matrix 'model.layers.99.nope'.*block_weights"):
        spectra.weight_matrix(smollm2, "model.layers.99.nope")
    with pytest.raises(LmscopeError, match="Unknown matrix"):
        spectra.weight_matrix(smollm2, "model.norm")  # a module, but its weight is 1-D
    with pytest.raises(LmscopeError, match="Unknown matrix 'lm_head.bias'"):
        ModelSpectra("m", "f", []).get("lm_head.bias")


def test_weight_matrix_is_a_float32_copy(smollm2: ModelHandle) -> None:
    name = "model.layers.0.mlp.up_proj"
    weight = spectra.weight_matrix(smollm2, name)
    assert weight.dtype == np.float32 and weight.shape == (1536, 576)
    weight[:] = 0
    assert float(smollm2.model.get_submodule(name).weight.detach().abs().sum()) > 0
