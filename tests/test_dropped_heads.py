"""Dropped attention heads: the per-call hook against a private copy of the model with the heads' columns of the
attention output projection zeroed, the probe's deltas and curves recomputed that way, its limits, the CLI, the
figures and the page."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch

from probes import dropped_heads
from probes.nll import token_nll
from probes.text import encode
from results.dropped_heads import DroppedHeads
from runtime import limits
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, direct, open_page, plotly_array, texts
from viz.dropped_heads import delta_grid, removal_curve

# The compression page's own test text and settings (tests/test_weights.py): its first chart comes from the cache.
TEXT = "The cat sat on the mat. Then the cat slept, and the dog watched."
SEEDS = 2
PAGE = "app_pages/9_Pruning.py"


@pytest.fixture(scope="module")
def result(smollm2: ModelHandle, shared_cache: ResultCache) -> DroppedHeads:
    return dropped_heads.run(smollm2, TEXT, shared_cache, SEEDS).value


@pytest.fixture(scope="module")
def twin(smollm2: ModelHandle) -> Iterator[ModelHandle]:
    """A private deep copy of SmolLM2 whose weights the tests edit."""
    model = copy.deepcopy(smollm2.model)
    yield ModelHandle(smollm2.name, smollm2.source, model, smollm2.tokenizer, "test-twin", 0.0)
    model.to("meta")  # pyright: ignore[reportArgumentType]


def _ids(handle: ModelHandle) -> np.ndarray:
    return encode(handle, TEXT, 4096).token_ids


def _loss(handle: ModelHandle, ids: np.ndarray) -> float:
    """Mean next-token NLL from the model's own logits, called directly."""
    logits = direct(handle, ids).logits[0, :-1].double()
    return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(ids[1:])).item())


def _zeroed_loss(original: ModelHandle, twin: ModelHandle, ids: np.ndarray, heads: Sequence[tuple[int, int]]) -> float:
    """The loss of the twin with the input columns of each (layer, head)'s slice of o_proj set to zero, through the
    same forward pass as the probe's (Gemma's direct call differs from it by 2e-4 nats, hooks or not)."""
    originals = dropped_heads.out_projections(original)
    copies = dropped_heads.out_projections(twin)
    with torch.no_grad():
        for source, target in zip(originals, copies):
            target.get_parameter("weight").copy_(source.get_parameter("weight"))
        for layer, head in heads:
            weight = copies[layer].get_parameter("weight")  # (hidden, n_heads * head_dim)
            width = weight.shape[1] // original.n_heads
            weight[:, head * width : (head + 1) * width] = 0
    return float(token_nll(twin, ids).mean())


@pytest.mark.slow  # a deep copy of Gemma 3
def test_dropping_heads_equals_zeroing_their_output_columns(gemma3: ModelHandle) -> None:
    """On Gemma 3: head_dim (256) is not hidden / heads (160), and its 4 query heads share one key/value head."""
    handle = gemma3
    ids = _ids(handle)
    layer = handle.n_layers // 2
    head = handle.n_heads - 1  # the last query head of a grouped key/value head
    masks = np.zeros((2, handle.n_layers, handle.n_heads), dtype=bool)
    masks[0, layer] = True  # the whole layer's attention
    masks[1, layer, head] = True
    before = token_nll(handle, ids)
    hooked = dropped_heads.masked_nll(handle, ids, masks)  # both rows in one batch
    model = copy.deepcopy(handle.model)
    copied = ModelHandle(handle.name, handle.source, model, handle.tokenizer, "test-copy", 0.0)
    try:
        whole = _zeroed_loss(handle, copied, ids, [(layer, h) for h in range(handle.n_heads)])
        single = _zeroed_loss(handle, copied, ids, [(layer, head)])
    finally:
        model.to("meta")  # pyright: ignore[reportArgumentType]
    np.testing.assert_allclose(hooked, [whole, single], atol=2e-4)
    assert abs(whole - before.mean()) > 1e-3
    np.testing.assert_array_equal(token_nll(handle, ids), before)  # the shared model is as it was


@pytest.mark.slow  # about 330 passes of a short text
def test_deltas_and_curves_match_zeroed_weights(smollm2: ModelHandle, twin: ModelHandle, result: DroppedHeads) -> None:
    ids = _ids(smollm2)
    n = smollm2.n_layers * smollm2.n_heads
    base = float(token_nll(smollm2, ids).mean())
    assert result.nll_base == pytest.approx(base, abs=1e-6)
    assert result.nll_base == pytest.approx(_loss(smollm2, ids), abs=5e-4)  # the model's own logits, called directly
    assert result.delta.shape == (smollm2.n_layers, smollm2.n_heads) and result.n_tokens == len(ids)
    np.testing.assert_array_equal(result.removed, np.unique(np.round(np.linspace(0, n, 21)).astype(int)))
    # The most important head and an ordinary one, recomputed by hand.
    top = np.unravel_index(int(result.delta.argmax()), result.delta.shape)
    for layer, head in (top, (3, 4)):
        expected = _zeroed_loss(smollm2, twin, ids, [(int(layer), int(head))]) - base
        assert result.delta[layer, head] == pytest.approx(expected, abs=2e-4)
    # A point of each curve: the first k heads of the order by delta, and of seed 1's random permutation.
    k_at = 4
    k = int(result.removed[k_at])
    for order, curve in (
        (np.argsort(result.delta.ravel(), kind="stable"), result.nll_by_importance),
        (np.random.default_rng(1).permutation(n), result.nll_random[1]),
    ):
        heads = [divmod(int(i), smollm2.n_heads) for i in order[:k]]
        assert curve[k_at] == pytest.approx(_zeroed_loss(smollm2, twin, ids, heads), abs=5e-4)
    # No head removed is the model itself; every head removed is one model whatever the order.
    assert result.nll_by_importance[0] == result.nll_base and np.all(result.nll_random[:, 0] == result.nll_base)
    np.testing.assert_array_equal(result.nll_random[:, -1], result.nll_by_importance[-1])
    heads = [(layer, head) for layer in range(smollm2.n_layers) for head in range(smollm2.n_heads)]
    assert result.nll_by_importance[-1] == pytest.approx(_zeroed_loss(smollm2, twin, ids, heads), abs=5e-4)


def test_refusals_come_before_any_work(
    smollm2: ModelHandle, minilm: ModelHandle, cache: ResultCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("a forward pass ran before the request was checked")

    monkeypatch.setattr("probes.nll.forward", no_pass)
    for seeds in (0, limits.HEAD_DROP_SEEDS + 1):
        with pytest.raises(LmscopeError, match=f"random orders must be from 1 to {limits.HEAD_DROP_SEEDS}"):
            dropped_heads.run(smollm2, TEXT, cache, seeds)
    with pytest.raises(LmscopeError, match="is an encoder"):
        dropped_heads.run(minilm, TEXT, cache)


def test_figures_draw_the_result() -> None:
    rng = np.random.default_rng(0)
    result = DroppedHeads(
        model="toy",
        fingerprint="toy",
        n_tokens=9,
        nll_base=3.0,
        delta=rng.normal(0.0, 0.1, (2, 3)),
        removed=np.array([0, 3, 6]),
        nll_by_importance=np.array([3.0, 3.1, 9.0]),
        nll_random=np.array([[3.0, 4.0, 9.0], [3.0, 5.0, 9.0]]),
    )
    heatmap = delta_grid(result).data[0]
    np.testing.assert_allclose(np.asarray(heatmap.z), result.delta, rtol=1e-6)
    assert heatmap.zmid == 0 and heatmap.colorbar.title.text == "NLL increase (nats)"
    curve = removal_curve(result)
    band, random, importance = curve.data
    np.testing.assert_allclose(random.y, result.nll_random.mean(axis=0))
    np.testing.assert_allclose(band.y, np.concatenate([result.nll_random.max(0), result.nll_random.min(0)[::-1]]))
    np.testing.assert_array_equal(importance.x, result.removed)
    np.testing.assert_allclose(importance.y, result.nll_by_importance)
    base = curve.layout.shapes[0]
    assert base.line.dash == "dash" and base.y0 == base.y1 == pytest.approx(result.nll_base)


@pytest.mark.slow  # loads a model
def test_cli_prints_the_cached_result(result: DroppedHeads) -> None:
    done = cli("drop-heads", "--model", "smollm2-135m-instruct", "--text", TEXT, "--seeds", str(SEEDS))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["model"] == "smollm2-135m-instruct" and out["fingerprint"] == result.fingerprint
    assert out["nll_base"] == pytest.approx(result.nll_base)
    np.testing.assert_allclose(out["delta"], result.delta)
    np.testing.assert_array_equal(out["removed"], result.removed)
    np.testing.assert_allclose(out["nll_by_importance"], result.nll_by_importance)
    np.testing.assert_allclose(out["nll_random"], result.nll_random)
    assert np.shape(out["nll_random"]) == (SEEDS, len(result.removed))


@pytest.mark.slow  # the whole page, and the probe's result to compare with
def test_page_shows_both_figures(result: DroppedHeads) -> None:
    at = open_page(
        PAGE,
        text=TEXT,
        methods="prune,quantize",
        sparsities="50",
        bits="8, 4",
        sentences="3",
        seeds=str(SEEDS),
        drop_heads="1",
    )
    assert not at.exception and not at.error, texts(at.error)
    assert len(at.get("plotly_chart")) == 4  # the trade-off and robustness charts come first
    np.testing.assert_allclose(plotly_array(chart(at, 2)["data"][0]["z"]), result.delta, rtol=1e-6)
    curve = chart(at, 3)
    assert "least important first" in curve["data"][2]["name"]
    assert at.query_params["drop_heads"] == "1" and at.query_params["seeds"] == str(SEEDS)
