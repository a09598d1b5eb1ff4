"""The cost of sparse products (probes.sparse_cost) on SmolLM2's shapes: what is timed and stored, the memory each
format takes against a direct count, the crossover, the limits, the command line and the page's section. No
assertion on the seconds themselves: those belong to bench/ (a timing test is a red CI on a busy machine)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probes import pruning, reconstruction, sparse_cost
from results.sparse_cost import SparseCost
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, open_page, texts

PAGE = "app_pages/9_Pruning.py"
SPARSITIES = (0.0, 0.9)
TOKENS = (1, 8)


def test_one_blocks_products_timed_and_their_memory_counted(smollm2: ModelHandle, cache: ResultCache) -> None:
    done = sparse_cost.measure(smollm2, 3, cache, SPARSITIES, TOKENS)
    cost = done.value
    weights = [m.weight.detach().float() for m in pruning.linear_weights(smollm2) if m.layer == 3]
    assert cost.shapes.tolist() == [list(w.shape) for w in weights]
    assert cost.tokens.tolist() == list(TOKENS) and cost.sparsities.tolist() == list(SPARSITIES)
    assert cost.dense_seconds.shape == (2,) and cost.csr_seconds.shape == (2, 2)
    assert bool((cost.dense_seconds > 0).all() and (cost.csr_seconds > 0).all())
    assert np.isnan(cost.semi_seconds).all() and cost.device == "cpu"  # 2:4 runs on a CUDA GPU only
    assert bool((cost.int8_seconds > 0).all() and (cost.int4_seconds > 0).all())  # torch's CPU kernels
    assert cost.int8_bytes == sum(w.numel() + 4 * w.shape[0] for w in weights)
    assert cost.int4_bytes == sum(w.numel() // 2 + 8 * w.numel() // 64 for w in weights) < cost.int8_bytes
    assert cost.dense_bytes == sum(w.numel() for w in weights) * 4
    for s, measured in zip(SPARSITIES, cost.csr_bytes):
        nonzero = sum(int(torch.count_nonzero(reconstruction.magnitude(w, s))) for w in weights)
        rows = sum(w.shape[0] + 1 for w in weights)
        assert measured == nonzero * 4 + (nonzero + rows) * 8  # float32 values, int64 column indices and row pointers
    assert cost.csr_bytes[1] < cost.dense_bytes < cost.csr_bytes[0]
    np.testing.assert_allclose(cost.speedup(), cost.dense_seconds[:, None] / cost.csr_seconds)
    assert sparse_cost.measure(smollm2, 3, cache, SPARSITIES, TOKENS).hit  # every session sees one measurement


def _cost(speedups: list[list[float]]) -> SparseCost:
    times = np.asarray(speedups, dtype=np.float64)
    return SparseCost(
        model="m",
        layer=0,
        device="cpu",
        threads=1,
        shapes=np.zeros((1, 2), dtype=np.int64),
        tokens=np.arange(1, len(times) + 1),
        sparsities=np.linspace(0, 0.9, times.shape[1]),
        dense_seconds=np.ones(len(times)),
        csr_seconds=1 / times,
        semi_seconds=np.full(len(times), np.nan),
        int8_seconds=np.full(len(times), np.nan),
        int4_seconds=np.full(len(times), np.nan),
        dense_bytes=1,
        csr_bytes=np.ones(times.shape[1], dtype=np.int64),
        int8_bytes=1,
        int4_bytes=1,
        dtype="float32",
        measured_at="",
        host="",
    )


@pytest.mark.parametrize(
    ("pack", "product", "levels"),
    [
        (sparse_cost.int8_weights, sparse_cost.int8_product, 127),
        (sparse_cost.int4_weights, sparse_cost.int4_product, 7),
    ],
    ids=["int8", "int4"],
)
def test_the_quantized_kernels_multiply_by_the_rounded_weights(
    smollm2: ModelHandle, pack: object, product: object, levels: int
) -> None:
    """What is timed is the real product: the kernel's output is x times the weights rounded to the format's grid,
    within the rounding of the weights (each off by half a step at most)."""
    w = pruning.linear_weights(smollm2)[4].weight.detach().float()  # layer 0's gate_proj, 1536 x 576
    x = torch.randn(8, w.shape[1], generator=torch.Generator().manual_seed(0))
    y = product(x, pack(w))  # pyright: ignore[reportCallIssue]
    exact = x @ w.T
    step = w.abs().amax(dim=1) / levels  # per row; int4's groups have smaller steps
    bound = 0.5 * step[None, :] * x.abs().sum(dim=1, keepdim=True)
    assert y.shape == exact.shape and bool(((y - exact).abs() <= bound * 1.001 + 1e-4).all())
    assert float((y - exact).abs().mean()) > 0  # rounded: not the float product itself


def test_the_crossover_is_where_sparse_stays_faster() -> None:
    cost = _cost([[0.5, 1.2, 0.8, 2.0], [1.5, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.9]])
    found = cost.crossover()
    assert found[0] == pytest.approx(0.9) and found[1] == 0.0 and np.isnan(found[2])


@pytest.mark.parametrize(
    ("layer", "sparsities", "tokens", "words"),
    [
        (30, SPARSITIES, TOKENS, "no layer 30"),
        (0, (1.0,), TOKENS, "below 1"),
        (0, SPARSITIES, (0,), "token count"),
        (0, SPARSITIES, (1, 2, 3, 4, 5), "At most 4 token counts"),
    ],
)
def test_limits_are_checked_before_timing(
    smollm2: ModelHandle, cache: ResultCache, layer: int, sparsities: tuple, tokens: tuple, words: str
) -> None:
    with pytest.raises(LmscopeError, match=words):
        sparse_cost.measure(smollm2, layer, cache, sparsities, tokens)


def test_cli_prints_the_timing_table() -> None:
    done = cli("sparse-cost", "--model", "smollm2-135m-instruct", "--layer", "2")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["layer"], out["device"]) == (2, "cpu")
    assert len(out["csr_seconds"]) == len(sparse_cost.DEFAULT_TOKENS)
    assert len(out["csr_seconds"][0]) == len(out["sparsities"]) == len(sparse_cost.DEFAULT_SPARSITIES)
    assert out["semi_structured_seconds"] == [None, None]  # NaN: not on a CPU
    assert all(t > 0 for t in out["int8_seconds"] + out["int4_seconds"]) and out["int4_bytes"] < out["int8_bytes"]
    assert len(out["crossover"]) == 2 and out["dense_bytes"] > 0


@pytest.mark.slow  # times sparse products
def test_the_page_times_the_products_when_asked() -> None:
    quick = {"methods": "prune,quantize", "sparsities": "50", "bits": "8", "sentences": "2"}
    at = open_page(PAGE, text="The cat sat on the mat.", cost="1", cost_layer="4", **quick)
    assert not at.exception and not at.error, texts(at.error)
    fig = chart(at, 2)  # after the trade-off and robustness charts
    assert (
        "What sparsity costs" in fig["layout"]["title"]["text"]
        and "layer 4" in fig["layout"]["title"]["subtitle"]["text"]
    )
    assert "Measured on" in texts(at.caption)
    at = open_page(PAGE, text="The cat sat on the mat.", cost="1", cost_layer="99", **quick)
    assert not at.exception and "cost_layer" in texts(at.warning) + texts(at.error)
