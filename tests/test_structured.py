"""Structured attention on the real built-in models: masks, kept mass, the windowed loss, the CLI and the page."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probes import attention, structured
from probes.nll import token_nll
from probes.structured import Structure
from probes.text import encode
from runtime.cache import ResultCache
from runtime.capture import Chunking, chunking
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, direct_attentions, open_page, plotly_array, texts

TEXT = "When Mary and John went to the store, John gave a drink to Mary. Then they went home together."
PAGE = "app_pages/3_Structured_attention.py"
N = 23  # the size of the masks checked without a model


def _visible(mask: np.ndarray, q: int) -> set[int]:
    return set(np.flatnonzero(mask[q]).tolist())


def _masks(n: int) -> dict[str, np.ndarray]:
    """One of each structure, with parameters that make each differ from the others on a short text."""
    return {
        "full": structured.full_mask(n),
        "sliding": structured.sliding_window_mask(n, 3),
        "dilated": structured.dilated_window_mask(n, 3, 2),
        "global": structured.global_sliding_mask(n, 2, [5]),
        "sliding+sinks": structured.with_sinks(structured.sliding_window_mask(n, 2), 2),
    }


def test_masks_follow_their_definitions() -> None:
    window, dilation, sinks, globals_ = 4, 3, 2, [6, 11]
    sliding = structured.sliding_window_mask(N, window)
    dilated = structured.dilated_window_mask(N, window, dilation)
    glob = structured.global_sliding_mask(N, window, globals_)
    sunk = structured.with_sinks(sliding, sinks)
    for q in range(N):
        assert _visible(structured.full_mask(N), q) == set(range(q + 1))
        assert _visible(sliding, q) == set(range(max(0, q - window + 1), q + 1))
        assert _visible(dilated, q) == {q - i * dilation for i in range(window) if q - i * dilation >= 0}
        seen = set(range(q + 1)) if q in globals_ else _visible(sliding, q) | {g for g in globals_ if g <= q}
        assert _visible(glob, q) == seen
        assert _visible(sunk, q) == _visible(sliding, q) | set(range(min(sinks, q + 1)))
    for mask in (sliding, dilated, glob, sunk):
        assert not np.any(np.triu(mask, k=1)) and np.all(np.diag(mask))


def test_with_sinks_adds_the_first_k_columns() -> None:
    mask = structured.dilated_window_mask(N, 3, 2)
    for k in (0, 1, 4):
        sunk = structured.with_sinks(mask, k)
        np.testing.assert_array_equal(sunk[:, k:], mask[:, k:])
        np.testing.assert_array_equal(sunk[:, :k], structured.full_mask(N)[:, :k])


def test_block_sparse_mask_follows_bigbird() -> None:
    block, random_blocks, globals_ = 3, 2, (10,)
    mask = structured.block_sparse_mask(N, block, random_blocks, globals_, seed=7)
    plain = structured.block_sparse_mask(N, block, random_blocks, (), seed=7)
    for q in range(N):
        b = q // block
        local = {k for k in range(q + 1) if k // block in (b, b - 1)}
        assert local <= _visible(plain, q)
        far = {k // block for k in _visible(plain, q) - local}
        assert len(far) == min(random_blocks, max(0, b - 1)) and all(f <= b - 2 for f in far)
        for f in far:  # random blocks are whole blocks, the same for every query of the block
            assert set(range(f * block, (f + 1) * block)) <= _visible(plain, q)
            assert all(
                set(range(f * block, (f + 1) * block)) <= _visible(plain, p)
                for p in range(b * block, min(N, (b + 1) * block))
            )
        seen = set(range(q + 1)) if q in globals_ else _visible(plain, q) | {g for g in globals_ if g <= q}
        assert _visible(mask, q) == seen
    assert not np.any(np.triu(mask, k=1)) and np.all(np.diag(mask))
    np.testing.assert_array_equal(plain, structured.block_sparse_mask(N, block, random_blocks, (), seed=7))
    assert not np.array_equal(plain, structured.block_sparse_mask(N, block, random_blocks, (), seed=8))
    no_random = structured.block_sparse_mask(N, block, 0, (), seed=7)
    assert all(_visible(no_random, q) == {k for k in range(q + 1) if k // block >= q // block - 1} for q in range(N))


def test_budget_is_the_share_of_causal_pairs_kept() -> None:
    for mask in _masks(N).values():
        kept = sum(1 for q in range(N) for k in range(q + 1) if mask[q, k])
        assert structured.budget(mask) == pytest.approx(kept / (N * (N + 1) / 2))
    assert structured.budget(structured.full_mask(N)) == 1.0
    assert structured.budget(np.ones((N, N), dtype=bool)) == 1.0  # the causal future does not count


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
@pytest.mark.parametrize("pattern", list(structured.PATTERNS))
def test_a_pattern_changes_the_loss_as_an_explicit_additive_mask_does(
    model: str, pattern: str, request: pytest.FixtureRequest
) -> None:
    """The reference: transformers' own forward with the pattern as a 4D additive mask (0 where a query may look,
    the lowest float elsewhere), which the model uses as given, and the cross-entropy of its logits."""
    handle: ModelHandle = request.getfixturevalue(model)
    ids = encode(handle, TEXT, 4096).token_ids
    n = len(ids)
    mask = structured.with_sinks(Structure(2, (9,), 1, 3).mask(pattern, n, 3), 1)
    additive = torch.where(torch.as_tensor(mask), 0.0, torch.finfo(torch.float32).min)[None, None]
    with torch.inference_mode():
        logits = handle.model(input_ids=torch.as_tensor(ids)[None], attention_mask=additive).logits[0, :-1].float()
    reference = torch.nn.functional.cross_entropy(logits, torch.as_tensor(ids[1:]), reduction="none").numpy()
    imposed = structured.masked_nll(handle, ids, mask)
    np.testing.assert_allclose(imposed, reference, rtol=1e-4, atol=1e-4)
    assert np.abs(imposed - token_nll(handle, ids)).max() > 0.05  # the pattern does change the loss


def test_the_pattern_sweep_is_each_patterns_loss_and_budget(smollm2: ModelHandle, cache: ResultCache) -> None:
    structure = Structure(2, (9,), 1, 0)
    calls: list[tuple[int, int]] = []
    first = structured.pattern_sweep(
        smollm2, TEXT, ["block", "dilated", "block"], [8, 3], 2, structure, cache, lambda *c: calls.append(c)
    )
    sweep = first.value
    assert not first.hit and calls[-1] == (9, 9)  # full attention, then 2 patterns x 2 sizes x (without, with sinks)
    assert sweep.patterns == ["block", "dilated"] and sweep.sizes.tolist() == [3, 8] and sweep.nll.shape == (2, 2, 2)
    ids = encode(smollm2, TEXT, 4096).token_ids
    assert sweep.nll_full == pytest.approx(float(token_nll(smollm2, ids).mean()), rel=1e-6)
    for i, j, k in np.ndindex(sweep.nll.shape):
        loss = structured.window_nll(smollm2, TEXT, int(sweep.sizes[j]), (0, 2)[k], sweep.patterns[i], structure)
        assert (loss.nll_window, loss.budget) == pytest.approx((sweep.nll[i, j, k], sweep.budget[i, j, k]), rel=1e-6)
    assert np.all(sweep.budget[:, :, 1] >= sweep.budget[:, :, 0]) and np.all(np.diff(sweep.budget, axis=1) > 0)
    assert len(sweep.rows()) == 8 and sweep.rows()[0]["pattern"] == "block-sparse"
    again = structured.pattern_sweep(smollm2, TEXT, ["block", "dilated"], [3, 8], 2, structure, cache)
    assert again.hit and again.value.nll.tolist() == sweep.nll.tolist()


@pytest.mark.parametrize(
    ("patterns", "sizes", "structure", "message"),
    [
        (["diagonal"], [2], Structure(), "Unknown attention pattern 'diagonal'"),
        ([], [2], Structure(), "at least one pattern"),
        (list(structured.PATTERNS), list(range(2, 11)), Structure(), "needs 73 forward passes; at most 65"),
        (["block"], [2], Structure(random_blocks=17), "random blocks must be from 0 to 16"),
        (["block"], [2], Structure(seed=-1), "seed must be from 0"),
        (["global"], [2], Structure(global_positions=tuple(range(65))), "At most 64 global positions"),
        (["dilated"], [2], Structure(dilation=0), "dilation must be from 1"),
    ],
)
def test_pattern_sweep_limits_are_checked_before_work(
    smollm2: ModelHandle, cache: ResultCache, patterns: list[str], sizes: list[int], structure: Structure, message: str
) -> None:
    calls: list[tuple[int, int]] = []
    with pytest.raises(LmscopeError, match=message):
        structured.pattern_sweep(smollm2, TEXT, patterns, sizes, 1, structure, cache, lambda *c: calls.append(c))
    assert calls == []


@pytest.mark.parametrize("kind", list(_masks(N)))
def test_masked_attention_is_zero_outside_the_mask_and_rows_sum_to_one(any_model: ModelHandle, kind: str) -> None:
    ids = encode(any_model, TEXT, 4096).token_ids
    mask = _masks(len(ids))[kind]
    layers: dict[int, np.ndarray] = {}
    with chunking(  # one chunk: the whole text
        any_model.model,
        Chunking(None, allowed=mask),
        on_chunk=lambda layer, start, first, weights, _: layers.update({layer: weights[0].double().numpy()}),
    ):
        forward(any_model, ids)
    assert sorted(layers) == list(range(any_model.n_layers))
    for weights in layers.values():
        assert np.all(weights[:, ~mask] == 0.0)
        np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_a_window_as_large_as_the_text_is_the_unmasked_model(model: str, request: pytest.FixtureRequest) -> None:
    handle: ModelHandle = request.getfixturevalue(model)
    ids = encode(handle, TEXT, 4096).token_ids
    n = len(ids)
    unmasked = token_nll(handle, ids)
    for window in (n, n + 7):
        np.testing.assert_array_equal(
            structured.masked_nll(handle, ids, structured.sliding_window_mask(n, window)), unmasked
        )
    # The last query predicts nothing inside the text, so n - 2 is the widest window that changes the loss.
    narrower = structured.masked_nll(handle, ids, structured.sliding_window_mask(n, n - 2))
    assert not np.array_equal(narrower, unmasked)


@pytest.mark.parametrize("pattern", list(structured.PATTERNS))
def test_masks_built_a_chunk_of_rows_at_a_time_are_the_rows_of_the_whole_mask(pattern: str) -> None:
    structure = Structure(3, (5, 17), 2, 4)
    whole = structured.with_sinks(structure.mask(pattern, N, 4), 2)
    for start, stop in ((0, 7), (7, 16), (16, N)):
        queries = np.arange(start, stop)
        rows = structured.with_sinks(structure.mask(pattern, N, 4, queries), 2, queries)
        np.testing.assert_array_equal(rows, whole[start:stop])


def test_mask_view_keeps_what_the_direct_attention_puts_inside(any_model: ModelHandle, cache: ResultCache) -> None:
    ids = encode(any_model, TEXT, 4096).token_ids
    view = structured.mask_view(any_model, TEXT, 3, Structure(2, (4,)), 1, cache).value
    masks = structured.structure_masks(len(ids), 3, Structure(2, (4,)), 1)
    assert view.titles == list(masks) and view.pool == 1
    np.testing.assert_array_equal(view.cells, np.stack(list(masks.values())).astype(np.float32))
    with torch.inference_mode():
        direct = any_model.model(input_ids=torch.as_tensor(ids)[None], output_attentions=True).attentions
    for i, mask in enumerate(masks.values()):
        expected = np.stack([(a[0].double().numpy() * mask).sum(-1).mean(-1) for a in direct])
        np.testing.assert_allclose(view.kept[i], expected, atol=1e-5)
    assert (view.kept[0] == pytest.approx(1.0, abs=1e-5)) == any_model.is_causal


def test_mask_view_of_a_long_text_is_pooled_and_summed_over_chunks(gemma3: ModelHandle, cache: ResultCache) -> None:
    """Past one chunk of queries and Gemma's 512-token window: the kept mass still equals the whole maps', and the
    masks are pooled as the attention maps are."""
    text = "A sentence that repeats, so that the text is long. " * 60
    ids = encode(gemma3, text, 4096).token_ids
    n = len(ids)
    structure = Structure(2, (300,), 1, 0)
    view = structured.mask_view(gemma3, text, 16, structure, 1, cache).value
    pool = -(-n // attention.MAX_MAP_SIDE)
    assert n > 600 and view.pool == pool > 1 and view.cells.shape == (5, -(-n // pool), -(-n // pool))
    masks = structured.structure_masks(n, 16, structure, 1)
    padded = np.full((5, view.cells.shape[1] * pool, view.cells.shape[1] * pool), np.nan)
    padded[:, :n, :n] = np.stack(list(masks.values()))
    pooled = np.nanmean(padded.reshape(5, view.cells.shape[1], pool, view.cells.shape[1], pool), axis=(2, 4))
    np.testing.assert_allclose(view.cells, pooled, atol=1e-6)
    direct = direct_attentions(gemma3, ids)
    for i, mask in enumerate(masks.values()):
        expected = np.stack([(a * mask).sum(-1).mean(-1) for a in direct])
        np.testing.assert_allclose(view.kept[i], expected, atol=1e-5)


def test_window_sweep_equals_one_run_per_mask(smollm2: ModelHandle, cache: ResultCache) -> None:
    ids = encode(smollm2, TEXT, 4096).token_ids
    n = len(ids)
    calls: list[tuple[int, int]] = []
    first = structured.window_sweep(smollm2, TEXT, [8, 2, 4, 8], 2, cache, on_progress=lambda *c: calls.append(c))
    sweep = first.value
    assert not first.hit and calls == [(i, 7) for i in range(1, 8)]
    assert sweep.windows.tolist() == [2, 4, 8] and sweep.sinks == 2
    np.testing.assert_array_equal(sweep.nll_full, token_nll(smollm2, ids))
    for i, window in enumerate(sweep.windows):
        for sinks, nll in ((0, sweep.nll_window[i]), (2, sweep.nll_sinks[i])):
            np.testing.assert_array_equal(
                nll, structured.masked_nll(smollm2, ids, structured.windowed_mask(n, int(window), sinks))
            )
        # Queries inside the window still see the whole prefix, so their tokens lose nothing.
        np.testing.assert_allclose(sweep.nll_window[i, :window], sweep.nll_full[:window], atol=1e-4)
    np.testing.assert_allclose(sweep.mean_window, sweep.nll_window.mean(axis=1))
    assert sweep.mean_full == pytest.approx(float(sweep.nll_full.mean()))
    again = structured.window_sweep(smollm2, TEXT, [2, 4, 8], 2, cache)
    assert again.hit and np.array_equal(again.value.nll_sinks, sweep.nll_sinks)
    rows = sweep.rows()
    assert [r["window"] for r in rows] == [2, 4, 8]
    assert rows[0]["perplexity, window + 2 sinks"] == pytest.approx(np.exp(sweep.mean_sinks[0]), rel=1e-6)
    assert rows[2]["mean NLL, full attention"] == sweep.mean_full


def test_window_nll_agrees_with_the_sweep(gemma3: ModelHandle, cache: ResultCache) -> None:
    sweep = structured.window_sweep(gemma3, TEXT, [4], 1, cache).value
    loss = structured.window_nll(gemma3, TEXT, 4, 1)
    assert loss.n_tokens == len(sweep.tokens) and (loss.window, loss.sinks) == (4, 1)
    assert loss.nll_full == pytest.approx(sweep.mean_full, rel=1e-6)
    assert loss.nll_window == pytest.approx(float(sweep.mean_sinks[0]), rel=1e-6)
    assert loss.perplexity_window == pytest.approx(np.exp(loss.nll_window), rel=1e-5)


@pytest.mark.parametrize(
    ("text", "extra", "sinks", "message"),
    [
        (TEXT, None, 0, "window must be at least 1"),
        (TEXT, 0, 0, "larger than the text"),
        (TEXT, 400, 0, "larger than the text"),
        (TEXT, -3, -1, "sink tokens must be from 0 to"),
        ("Hi", 0, 0, "at least two tokens"),
        ("   ", 0, 0, "empty"),
    ],
)
def test_bad_window_input_gets_a_clear_message(
    smollm2: ModelHandle, cache: ResultCache, text: str, extra: int | None, sinks: int, message: str
) -> None:
    """`extra` is the window's size beyond the text's token count (None: a window of 0)."""
    window = 0 if extra is None else len(encode(smollm2, TEXT, 4096).token_ids) + extra
    with pytest.raises(LmscopeError, match=message):
        structured.window_nll(smollm2, text, window, sinks)
    with pytest.raises(LmscopeError, match=message):
        structured.window_sweep(smollm2, text, [window], sinks, cache)


def test_encoders_have_no_windowed_loss(minilm: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="needs a decoder"):
        structured.window_nll(minilm, TEXT, 4)
    with pytest.raises(LmscopeError, match="needs a decoder"):
        structured.window_sweep(minilm, TEXT, [4], 0, cache)


def test_bad_structures_get_clear_messages(smollm2: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="dilation must be at least 1"):
        structured.dilated_window_mask(N, 3, 0)
    with pytest.raises(LmscopeError, match="Global position 40 is outside the text"):
        structured.global_sliding_mask(N, 3, [40])
    with pytest.raises(LmscopeError, match="whole numbers"):
        structured.parse_ints("2, four", "window sizes")
    assert structured.parse_ints(" 2,4  8 ", "window sizes") == [2, 4, 8]
    with pytest.raises(LmscopeError, match="at least one window"):
        structured.window_sweep(smollm2, TEXT, [], 0, cache)
    ids = encode(smollm2, TEXT, 4096).token_ids
    blind = structured.full_mask(len(ids))
    blind[3] = False
    with pytest.raises(LmscopeError, match="query 3 may see no token"):
        structured.masked_nll(smollm2, ids, blind)
    with pytest.raises(LmscopeError, match="but the text has"):
        structured.masked_nll(smollm2, ids, structured.full_mask(len(ids) + 1))


@pytest.mark.slow  # loads a model
def test_cli_window_prints_the_losses(smollm2: ModelHandle) -> None:
    done = cli("window", "--model", "smollm2-135m-instruct", "--text", TEXT, "--window", "5", "--sinks", "2")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = structured.window_nll(smollm2, TEXT, 5, 2)
    assert (out["window"], out["sinks"], out["n_tokens"]) == (5, 2, len(encode(smollm2, TEXT, 4096).token_ids))
    for name in ("nll_full", "nll_window", "perplexity_full", "perplexity_window", "budget"):
        assert out[name] == pytest.approx(getattr(expected, name), rel=1e-5)
    done = cli(
        "window",
        "--model",
        "smollm2-135m-instruct",
        "--text",
        TEXT,
        "--window",
        "4",
        "--pattern",
        "block",
        "--random-blocks",
        "2",
        "--seed",
        "5",
        "--global",
        "3, 9",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = structured.window_nll(
        smollm2, TEXT, 4, 0, "block", Structure(global_positions=(3, 9), random_blocks=2, seed=5)
    )
    assert out["pattern"] == "block" and out["budget"] == pytest.approx(expected.budget)
    assert out["nll_window"] == pytest.approx(expected.nll_window, rel=1e-5)


@pytest.mark.slow  # loads a model
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "99"], "larger than the text"),
        (["--window", "0"], "at least 1"),
        (["--window", "2", "--model", "all-minilm-l6-v2"], "needs a decoder"),
        (["--window", "2", "--pattern", "block", "--random-blocks", "99"], "random blocks must be from 0 to 16"),
    ],
)
def test_cli_window_errors(args: list[str], message: str) -> None:
    done = cli("window", "--model", "smollm2-135m-instruct", "--text", TEXT, *args)
    assert done.returncode == 1 and done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]


def test_page_draws_masks_and_the_loss_sweep(smollm2: ModelHandle, tmp_path) -> None:
    at = open_page(
        PAGE,
        text=TEXT,
        layer="5",
        head="2",
        window="4",
        dilation="3",
        sinks="1",
        windows="2, 8",
        metric="perplexity",
        patterns="sliding,block",
        random_blocks="2",
        **{"global": "7"},
    )
    assert not at.exception and not at.error and not at.warning
    assert [
        at.number_input(key=k).value
        for k in ("structured_layer", "structured_head", "structured_window", "structured_dilation", "structured_sinks")
    ] == [
        5,
        2,
        4,
        3,
        1,
    ]
    assert len(at.get("plotly_chart")) == 5
    view = structured.mask_view(smollm2, TEXT, 4, Structure(3, (7,), 2), 1, ResultCache(tmp_path / "a")).value
    titles = [a["text"] for a in chart(at, 0)["layout"]["annotations"][:6]]
    for title, share in zip(titles[1:], view.kept[:, 5, 2]):
        assert f"keeps {share:.0%}" in title
    sweep = structured.window_sweep(smollm2, TEXT, [2, 8], 1, ResultCache(tmp_path / "b")).value
    loss = chart(at, 2)
    np.testing.assert_allclose(plotly_array(loss["data"][0]["y"]).ravel(), np.exp(sweep.mean_window), rtol=1e-5)
    np.testing.assert_allclose(plotly_array(loss["data"][1]["y"]).ravel(), np.exp(sweep.mean_sinks), rtol=1e-5)
    assert at.query_params["window"] == "4" and at.query_params["windows"] == "2, 8"
    budgets = structured.pattern_sweep(
        smollm2, TEXT, ["sliding", "block"], [2, 8], 1, Structure(3, (7,), 2), ResultCache(tmp_path / "c")
    ).value
    drawn = chart(at, 4)["data"]
    assert [trace["name"] for trace in drawn[:4]] == [
        "sliding window",
        "sliding window + 1 sinks",
        "block-sparse",
        "block-sparse + 1 sinks",
    ]
    for trace, (i, k) in zip(drawn, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        np.testing.assert_allclose(plotly_array(trace["x"]).ravel(), budgets.budget[i, :, k], rtol=1e-6)
        np.testing.assert_allclose(plotly_array(trace["y"]).ravel(), np.exp(budgets.nll[i, :, k]), rtol=1e-5)


def test_page_reads_a_text_past_the_limit(smollm2: ModelHandle, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Nothing on the page holds an (n, n) float array, so it reads what the Attention view reads."""
    monkeypatch.setenv("LMSCOPE_MAX_TOKENS", "40")
    text = " ".join([TEXT] * 3)
    at = open_page(PAGE, text=text, windows="4", patterns="sliding", sinks="1")
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 5
    sweep = structured.window_sweep(smollm2, text, [4], 1, ResultCache(tmp_path)).value
    assert len(sweep.tokens) > 40
    np.testing.assert_allclose(plotly_array(chart(at, 2)["data"][0]["y"]).ravel(), sweep.mean_window, rtol=1e-5)


def test_page_on_an_encoder_draws_masks_and_explains_the_loss(minilm: ModelHandle) -> None:
    at = open_page(PAGE, model="all-minilm-l6-v2", text=TEXT)
    assert not at.exception and not at.error
    assert "all-minilm-l6-v2 is an encoder" in texts(at.info)
    assert len(at.get("plotly_chart")) == 2


@pytest.mark.parametrize(
    ("params", "where", "message"),
    [
        ({"window": "0"}, "warning", "window=0 is out of range"),
        ({"dilation": "x"}, "warning", "not a number"),
        ({"windows": "2, many"}, "error", "whole numbers"),
        ({"windows": "2, 500"}, "error", "larger than the text"),
        ({"global": "300"}, "error", "outside the text"),
        ({"text": "Hi"}, "error", "at least two tokens"),
    ],
)
def test_page_bad_input_gets_messages(smollm2: ModelHandle, params: dict[str, str], where: str, message: str) -> None:
    at = open_page(PAGE, **{"text": TEXT, **params})
    assert not at.exception
    assert message in texts(getattr(at, where))
