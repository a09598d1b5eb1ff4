"""The opening slide: DCT and SVD error curves against direct numpy computations (an explicit DCT-II matrix, a full
SVD), the contrast on the real models, bad choices, the page, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probes import sparse_low_rank
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, open_page, plotly_array, texts

PAGE = "app_pages/15_Sparse_and_low_rank.py"
SHARES = np.array([0.01, 0.05, 0.3, 1.0])


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: row k is sqrt(2/n) cos(pi (2j + 1) k / 2n), row 0 scaled by 1/sqrt(2)."""
    k, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    d = np.sqrt(2 / n) * np.cos(np.pi * (2 * j + 1) * k / (2 * n))
    d[0] /= np.sqrt(2)
    return d


def _direct_dct_error(x: np.ndarray, share: float) -> float:
    """Keep the largest coefficients of D_m (X - mean) D_n^T, invert with the transposes, measure."""
    centred = x - x.mean()
    dm, dn = _dct_matrix(x.shape[0]), _dct_matrix(x.shape[1])
    c = dm @ centred @ dn.T
    keep = max(1, round(share * c.size))
    kept = np.where(np.abs(c) >= np.sort(np.abs(c).ravel())[::-1][keep - 1], c, 0.0)
    return float(np.linalg.norm(centred - dm.T @ kept @ dn) / np.linalg.norm(centred))


def _direct_svd_error(x: np.ndarray, share: float) -> float:
    centred = x - x.mean()
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    r = max(1, round(share * len(s)))
    return float(np.linalg.norm(centred - (u[:, :r] * s[:r]) @ vt[:r]) / np.linalg.norm(centred))


@pytest.mark.parametrize("name", ["image", "data", "random"])
def test_the_curves_equal_a_direct_computation(name: str) -> None:
    x = {
        "image": sparse_low_rank.sample_image()[::4, ::4],  # a quarter of each side: the explicit DCT stays small
        "data": sparse_low_rank.data_matrix()[:300],
        "random": np.random.default_rng(3).standard_normal((40, 70)) + 2.0,
    }[name]
    np.testing.assert_allclose(
        sparse_low_rank.dct_error(x, SHARES), [_direct_dct_error(x, s) for s in SHARES], rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        sparse_low_rank.svd_error(x, SHARES), [_direct_svd_error(x, s) for s in SHARES], rtol=1e-9, atol=1e-12
    )
    sparse = sparse_low_rank.sparse_approximation(x, 0.05)
    assert np.linalg.norm(x - sparse) / np.linalg.norm(x - x.mean()) == pytest.approx(_direct_dct_error(x, 0.05))


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_an_image_is_sparse_and_a_weight_matrix_is_not(
    model: str, request: pytest.FixtureRequest, cache: ResultCache
) -> None:
    handle: ModelHandle = request.getfixturevalue(model)
    result = sparse_low_rank.run(handle, handle.n_layers // 2, "q", cache).value
    assert result.names == ["image", "data", "weight", "gaussian"]
    assert result.shapes[2] == result.shapes[3] == tuple(result.weight.shape)
    weight = sparse_low_rank.model_matrix(handle, handle.n_layers // 2, "q")
    np.testing.assert_allclose(result.svd_error[2], sparse_low_rank.svd_error(weight, result.shares), rtol=1e-9)
    dct, svd = (dict(zip(result.names, errors[:, 3], strict=True)) for errors in (result.dct_error, result.svd_error))
    assert result.shares[3] == 0.05
    assert dct["image"] < 0.3 and svd["image"] < 0.35
    assert dct["weight"] > 0.7 and abs(dct["weight"] - dct["gaussian"]) < 0.05  # no sparsity in a Fourier basis
    assert svd["image"] + 0.3 < svd["weight"] < svd["gaussian"]  # heavier-tailed than noise, far from low rank
    assert (result.dct_error[:, -1] < 1e-7).all() and (result.svd_error[:, -1] < 1e-7).all()  # all kept: exact


def test_bad_choices_get_messages(smollm2: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="Layer 30 is out of range"):
        sparse_low_rank.run(smollm2, 30, "q", cache)
    with pytest.raises(LmscopeError, match="Unknown matrix kind 'attn'"):
        sparse_low_rank.run(smollm2, 3, "attn", cache)
    result = sparse_low_rank.run(smollm2, 3, "down", cache).value
    with pytest.raises(LmscopeError, match="above 0%"):
        sparse_low_rank.reconstructions(result, 0.0, 0.1)


def test_the_page_draws_the_curves_and_the_pictures(smollm2: ModelHandle) -> None:
    at = open_page(PAGE, layer="4", matrix="gate", keep="10", rank="2")
    assert not at.exception and not at.error
    result = sparse_low_rank.run(smollm2, 4, "gate", ResultCache()).value
    curves = chart(at, 0)
    lines = [trace for trace in curves["data"] if trace["xaxis"] == "x"]
    assert [trace["name"].split(" (")[0] for trace in lines][2] == "smollm2-135m-instruct: layer 4 gate"
    for trace, errors in zip(lines, result.dct_error, strict=True):
        np.testing.assert_allclose(plotly_array(trace["y"]), errors, rtol=1e-6)
    pictures = chart(at, 1)
    titles = [a["text"] for a in pictures["layout"]["annotations"]]
    image, weight = sparse_low_rank.reconstructions(result, 0.10, 0.02)
    assert f"10% of the DCT coefficients: error {image.dct_error:.2f}" in titles
    assert f"rank {weight.rank}: error {weight.svd_error:.2f}" in titles and weight.rank == 12  # 2% of 576, rounded
    bad = open_page(PAGE, layer="99", keep="0")
    assert "layer=99 is out of range" in texts(bad.warning) and "keep=0" in texts(bad.warning)


def test_the_cli_prints_the_curves(smollm2: ModelHandle) -> None:
    done = cli("sparse-low-rank", "--model", smollm2.name, "--matrix", "down")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    result = sparse_low_rank.run(smollm2, smollm2.n_layers // 2, "down", ResultCache()).value
    assert out["layer"] == 15 and out["matrices"] == result.names and out["shapes"] == [list(s) for s in result.shapes]
    np.testing.assert_allclose(out["dct_error"], result.dct_error, rtol=1e-9)
    np.testing.assert_allclose(out["svd_error"], result.svd_error, rtol=1e-9)
