"""Attention sinks on the real built-in models: statistics, corpus averages and the massive-activation link,
each checked against transformers' own output_attentions / output_hidden_states; the page in AppTest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from probes import attention, corpus, sink_effect, sinks, structured
from probes.nll import token_nll
from results.sinks import SINK_HEAD, SinkNorms
from runtime.cache import ResultCache
from runtime.capture import Chunking, chunking
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, direct, open_page, plotly_array, texts
from viz.sinks import corpus_maps, massive_link_chart, sink_table_rows, softmax_toy
from viz.theme import visible

TEXT = "When Mary and John went to the store, John gave a drink to Mary. Then they went home."
LONG_TEXT = "A sentence that repeats, so that the text is long. " * 24
SINKS = "app_pages/4_Attention_sinks.py"


def _head_mean_attention(handle: ModelHandle, token_ids: np.ndarray) -> list[np.ndarray]:
    """Per layer, the (n, n) attention of output_attentions averaged over heads, in float64."""
    return [a[0].double().mean(0).numpy() for a in direct(handle, token_ids, output_attentions=True).attentions]


def _senders(key: int, n: int, is_causal: bool) -> list[int]:
    """The queries that can look back at a key: the later ones in a decoder, every other one in an encoder."""
    return [q for q in range(n) if (q > key if is_causal else q != key)]


def _received(a: np.ndarray, is_causal: bool) -> np.ndarray:
    """Mean weight each key gets from its senders (NaN when it has none)."""
    senders = [_senders(k, len(a), is_causal) for k in range(len(a))]
    return np.array([np.mean([a[q, k] for q in qs]) if qs else np.nan for k, qs in enumerate(senders)])


def _values(trace_values: object) -> np.ndarray:
    """A Plotly JSON 1-D array: a plain list or base64."""
    return plotly_array(trace_values) if isinstance(trace_values, dict) else np.asarray(trace_values, dtype=float)


def _first_k(a: np.ndarray, k: int) -> float:
    """Mean over queries q >= k of the weight on keys < k."""
    return float(np.mean([a[q, :k].sum() for q in range(k, len(a))]))


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return list(corpus.sentences()[:6])


def test_sink_statistics_equal_a_direct_computation(any_model: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(any_model, TEXT, cache).value
    profile = sinks.sink_profile(result)
    direct = _head_mean_attention(any_model, result.token_ids)
    n = len(result.tokens)
    assert profile.sink_position.shape == (any_model.n_layers,)
    for layer, a in enumerate(direct):
        received = _received(a, any_model.is_causal)
        assert profile.layer_share[layer] == pytest.approx(np.mean([a[q, 0] for q in range(1, n)]), abs=1e-5)
        np.testing.assert_allclose(profile.received[layer], received, atol=2e-3)
        # float16 maps can swap near-ties, so the chosen sink must receive the most, within that precision.
        assert received[profile.sink_position[layer]] == pytest.approx(np.nanmax(received), abs=2e-3)
        for k in (1, 3, n - 1):
            assert sinks.first_k_share(result, k)[layer] == pytest.approx(_first_k(a, k), abs=2e-3)


def test_uniform_baseline_is_an_even_spread(any_model: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(any_model, TEXT, cache).value
    n = len(result.tokens)
    even = np.tril(np.ones((n, n))) if any_model.is_causal else np.ones((n, n))
    even /= even.sum(-1, keepdims=True)
    assert sinks.sink_profile(result).uniform_share == pytest.approx(np.mean(even[1:, 0]))


def test_pooled_long_text_keeps_exact_first_k_shares(smollm2: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(smollm2, LONG_TEXT, cache).value
    pool = result.pool
    assert pool > 1
    direct = _head_mean_attention(smollm2, result.token_ids)
    shares = sinks.first_k_share(result, 2 * pool)
    for layer in (0, 5, 20):
        assert shares[layer] == pytest.approx(_first_k(direct[layer], 2 * pool), abs=2e-3)
    with pytest.raises(LmscopeError, match=f"multiple of {pool}"):
        sinks.first_k_share(result, pool + 1)


@pytest.mark.parametrize("k", [0, -2, 999])
def test_k_out_of_range_gets_a_message(smollm2: ModelHandle, cache: ResultCache, k: int) -> None:
    result = attention.run(smollm2, TEXT, cache).value
    with pytest.raises(LmscopeError, match=f"k = {k} is out of range.*1 to {len(result.tokens) - 1}"):
        sinks.first_k_share(result, k)


def test_corpus_average_equals_the_mean_of_direct_computations(
    any_model: ModelHandle, cache: ResultCache, sentences: list[str]
) -> None:
    n_tokens = 8
    averaged = sinks.corpus_attention(any_model, sentences, cache, n_tokens=n_tokens, batch_size=4).value
    ids = [any_model.tokenizer(s)["input_ids"][:n_tokens] for s in sentences]
    assert averaged.token_ids.tolist() == ids and averaged.n_skipped == 0
    per_sentence = [
        np.stack([a[0].double().numpy() for a in direct(any_model, np.array(i), output_attentions=True).attentions])
        for i in ids
    ]
    np.testing.assert_allclose(averaged.probabilities, np.mean(per_sentence, axis=0), atol=1e-5)
    np.testing.assert_allclose(averaged.layer_probabilities, np.mean(per_sentence, axis=(0, 2)), atol=1e-5)
    # Logits are softmax's inputs: within a row, differences of logits are differences of log-probabilities,
    # so the row-centred mean logits equal the mean row-centred log-probabilities over the sentences.
    future = np.triu(np.ones((n_tokens, n_tokens), dtype=bool), k=1) & any_model.is_causal
    assert np.array_equal(np.isnan(averaged.logits), np.broadcast_to(future, averaged.logits.shape))
    logs = np.where(future, np.nan, np.log(np.maximum(per_sentence, 1e-30)))
    expected = np.mean(logs - np.nanmean(logs, axis=-1, keepdims=True), axis=0)
    got = averaged.logits.astype(np.float64)
    np.testing.assert_allclose(got - np.nanmean(got, axis=-1, keepdims=True), expected, atol=2e-3)


def test_batching_does_not_change_results(smollm2: ModelHandle, sentences: list[str], tmp_path: Path) -> None:
    progress: list[tuple[int, int]] = []
    one = sinks.corpus_attention(smollm2, sentences, ResultCache(tmp_path / "a"), n_tokens=12, batch_size=1).value
    four = sinks.corpus_attention(
        smollm2,
        sentences,
        ResultCache(tmp_path / "b"),
        n_tokens=12,
        batch_size=4,
        on_progress=lambda *done: progress.append(done),
    ).value
    np.testing.assert_allclose(one.probabilities, four.probabilities, atol=1e-5)
    np.testing.assert_allclose(one.logits, four.logits, atol=1e-4)
    assert progress == [(4, 6), (6, 6)]


def test_corpus_is_cached_and_skips_short_sentences(smollm2: ModelHandle, cache: ResultCache) -> None:
    pasted = "Too short.\n\n" + "\n".join(corpus.sentences()[:3])
    first = sinks.corpus_attention(smollm2, sinks.split_sentences(pasted), cache, n_tokens=10, limit=2)
    assert not first.hit and first.value.n_sentences == 2 and first.value.n_skipped == 1
    again = sinks.corpus_attention(smollm2, sinks.split_sentences(pasted), cache, n_tokens=10, limit=2)
    assert again.hit
    np.testing.assert_array_equal(again.value.probabilities, first.value.probabilities)


def test_first_token_dominates_beyond_the_first_two_layers(smollm2: ModelHandle, cache: ResultCache) -> None:
    """StreamingLLM's Figure 2 on smollm2-135m-instruct: past layers 0 and 1, position 0 takes the most attention."""
    averaged = sinks.corpus_attention(smollm2, corpus.sentences(), cache, n_tokens=16, limit=32).value
    maps = averaged.layer_probabilities.astype(np.float64)
    received = np.stack([_received(a, is_causal=True) for a in maps])
    dominant = [layer for layer in range(2, averaged.n_layers) if np.nanargmax(received[layer]) == 0]
    assert len(dominant) >= 0.75 * (averaged.n_layers - 2), dominant
    first_column = maps[:, 1:, 0].mean(axis=1)
    assert first_column[2:].mean() > 2 * first_column[:2].mean()


@pytest.mark.parametrize(
    ("pasted", "n_tokens", "message"),
    [
        ("", 16, "no sentences"),
        ("Too short.\nAlso short.", 16, "None of the 2 sentences has 16 tokens"),
        ("Fine here.", 1, "tokens per sentence must be from 2 to"),
    ],
)
def test_bad_sentences_get_a_message(
    smollm2: ModelHandle, cache: ResultCache, pasted: str, n_tokens: int, message: str
) -> None:
    with pytest.raises(LmscopeError, match=message):
        sinks.corpus_attention(smollm2, sinks.split_sentences(pasted), cache, n_tokens=n_tokens)


def test_massive_link_equals_output_hidden_states(any_model: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(any_model, TEXT, cache).value
    link = sinks.massive_link(any_model, result, cache).value
    states = direct(any_model, result.token_ids, output_hidden_states=True).hidden_states
    for layer in range(any_model.n_layers):
        magnitude = states[layer][0].abs().double().numpy()  # the hidden state entering this layer
        peaks = magnitude.max(axis=-1)
        sink = sinks.sink_profile(result).sink_position[layer]
        others = np.delete(np.arange(len(peaks)), sink)
        assert link.sink_position[layer] == sink
        assert link.sink_magnitude[layer] == pytest.approx(peaks[sink], rel=1e-5)
        assert link.other_magnitude[layer] == pytest.approx(peaks[others].max(), rel=1e-5)
        assert link.median_magnitude[layer] == pytest.approx(np.median(magnitude), rel=1e-5)
        # Whether the sink holds the layer's largest peak is only decided where the two peaks lie further apart than
        # the magnitudes agree (rel 1e-5): a token repeated in the text ties exactly in layer 0 (one embedding row).
        if abs(peaks[sink] - peaks[others].max()) > 1e-5 * peaks.max():
            assert link.sink_is_massive[layer] == (peaks[sink] > peaks[others].max())


def test_figures_draw_the_probe_numbers(smollm2: ModelHandle, cache: ResultCache, sentences: list[str]) -> None:
    averaged = sinks.corpus_attention(smollm2, sentences, cache, n_tokens=10).value
    fig = corpus_maps(averaged, [1, 4], logits=True)
    future = np.triu(np.ones((10, 10), dtype=bool), k=1)
    for trace, layer in zip(fig.data, [1, 4]):
        z = np.asarray(trace.z, dtype=float)
        assert np.isnan(z[future]).all()
        np.testing.assert_allclose(z[~future], averaged.layer_logits[layer][~future], rtol=1e-6)
    result = attention.run(smollm2, TEXT, cache).value
    link = sinks.massive_link(smollm2, result, cache).value
    chart = massive_link_chart(link)
    np.testing.assert_allclose(chart.data[0].y, link.sink_magnitude)
    np.testing.assert_allclose(chart.data[1].y, link.other_magnitude)
    assert list(chart.data[2].x) == list(np.flatnonzero(~link.sink_is_massive))
    rows = sink_table_rows(sinks.sink_profile(result))
    assert [r["sink token"] for r in rows] == [visible(result.tokens[p]) for p in link.sink_position]
    pooled = sink_table_rows(sinks.sink_profile(attention.run(smollm2, LONG_TEXT, cache).value))
    assert "–" in pooled[0]["sink positions"] and "sink token" not in pooled[0]


def test_sinks_page_draws_its_charts(smollm2: ModelHandle, tmp_path: Path) -> None:
    at = open_page(SINKS, text=TEXT, k="3", sentences="4", tokens="12", layers="0,5")
    assert not at.exception and not at.error and not at.warning
    assert len(at.get("plotly_chart")) == 8
    result = attention.run(smollm2, TEXT, ResultCache(tmp_path)).value
    lines = chart(at, 0)["data"]
    np.testing.assert_allclose(_values(lines[0]["y"]), sinks.sink_profile(result).layer_share, rtol=1e-6)
    np.testing.assert_allclose(_values(lines[1]["y"]), sinks.first_k_share(result, 3), rtol=1e-6)
    maps = chart(at, 7)
    assert [a["text"].split("<br>")[0] for a in maps["layout"]["annotations"]] == ["Layer 0", "Layer 5"]
    assert "logits" in maps["layout"]["title"]["text"] and "4 sentences of 12 tokens" in maps["layout"]["title"]["text"]
    assert at.query_params["k"] == "3" and at.query_params["layers"] == "0,5"
    at.toggle(key="sinks_logits").set_value(False).run()
    assert "weights" in chart(at, 7)["layout"]["title"]["text"] and at.query_params["logits"] == "0"


@pytest.mark.parametrize("model", ["gemma3-270m", "all-minilm-l6-v2"])
def test_sinks_page_on_other_builtins(model: str) -> None:
    at = open_page(SINKS, model=model, text="Sinks and delimiters, again.", sentences="3")
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == (8 if model.startswith("gemma3") else 7)  # an encoder has no loss to mask
    lines, grid = chart(at, 0)["layout"], chart(at, 1)["layout"]
    if model.startswith("gemma3"):  # five of every six layers see only the last 512 tokens
        starred = [f"{i}*" if (i + 1) % 6 else str(i) for i in range(18)]
        assert lines["xaxis"]["ticktext"] == starred and grid["yaxis"]["ticktext"] == starred
        assert "sliding window: sees only the last 512 tokens (15 of 18 layers)" in (lines["title"]["subtitle"]["text"])
    else:
        assert "ticktext" not in lines["xaxis"] and "sliding window" not in json.dumps(lines)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": "0"}, "k = 0 is out of range"),
        ({"k": "999"}, "k=999 is out of range"),
        ({"tokens": "1"}, "tokens=1 is out of range"),
        ({"layers": "2,77"}, "not all layers"),
    ],
)
def test_bad_url_options_fall_back_with_a_message(smollm2: ModelHandle, params: dict[str, str], message: str) -> None:
    at = open_page(SINKS, text=TEXT, sentences="2", **params)
    assert not at.exception and not at.error
    assert message in texts(at.warning)
    assert at.slider(key="sinks_k").value == sinks.DEFAULT_K


@pytest.mark.parametrize(
    ("pasted", "message"), [("", "no sentences"), ("Too short.\nAlso short.", "None of the 2 sentences has 16 tokens")]
)
def test_pasted_sentences_that_cannot_be_used(smollm2: ModelHandle, pasted: str, message: str) -> None:
    at = open_page(SINKS, text=TEXT, sentences="2")
    at.toggle(key="sinks_own").set_value(True).run()
    at.text_area(key="sinks_pasted").input(pasted).run()
    assert not at.exception
    assert message in texts(at.error)
    assert len(at.get("plotly_chart")) == 7  # the charts of the text are still shown


def test_the_logit_lead_is_read_from_the_attention_weights(any_model: ModelHandle, cache: ResultCache) -> None:
    """log p_q0 - log max_k p_qk = x_q0 - max_k x_qk: softmax's normaliser cancels, so the weights of transformers'
    own output_attentions give the lead independently of the probe's logits."""
    result = attention.run(any_model, TEXT, cache, with_logits=True).value
    lead = sinks.logit_lead(result)
    for layer, weights in enumerate(direct(any_model, result.token_ids, output_attentions=True).attentions):
        p = weights[0].double().numpy()  # (heads, n, n)
        others = (
            p[:, 1:, 1:]
            if not any_model.is_causal
            else np.where(np.tril(np.ones_like(p[0, 1:, 1:])) > 0, p[:, 1:, 1:], 0)
        )
        expected = (np.log(p[:, 1:, 0]) - np.log(others.max(axis=-1))).mean(axis=-1)
        np.testing.assert_allclose(lead[layer], expected, atol=0.05)  # the probe keeps logits in float16


def test_sinking_heads_lead_with_the_first_token(smollm2: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(smollm2, TEXT, cache, with_logits=True).value
    lead, share = sinks.logit_lead(result), result.sink_share
    assert (share >= 0.7).sum() >= 20 and (lead[share >= 0.7] > 1).all() and np.median(lead[share < 0.2]) < 0


def test_the_softmax_toy_draws_the_equation() -> None:
    others = sinks.toy_logits(64, 1.5)
    assert others.shape == (63,) and np.array_equal(others, sinks.toy_logits(64, 1.5))  # seeded
    drawn = softmax_toy(3.0, others).to_plotly_json()
    logits = np.concatenate([[3.0], others])
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(plotly_array(drawn["data"][0]["y"]), expected, rtol=1e-12)
    curve_x, curve_y = plotly_array(drawn["data"][1]["x"]), plotly_array(drawn["data"][1]["y"])
    np.testing.assert_allclose(curve_y, np.exp(curve_x) / (np.exp(curve_x) + np.exp(others).sum()), rtol=1e-12)
    assert f"takes {expected[0]:.1%} of 64" in drawn["layout"]["title"]["text"]
    with pytest.raises(LmscopeError, match="number of keys must be from 2 to 1024"):
        sinks.toy_logits(5000, 1.0)
    with pytest.raises(LmscopeError, match="spread of the other logits must be from 0 to 5"):
        sinks.toy_logits(8, -1.0)


def test_the_page_draws_the_mechanism_and_the_toy(smollm2: ModelHandle) -> None:
    at = open_page(SINKS, text=TEXT, sentences="2", toy_x1="8", toy_keys="128", toy_spread="0")
    assert not at.exception and not at.error
    mechanism, toy = chart(at, 2), chart(at, 3)
    result = attention.run(smollm2, TEXT, ResultCache(), with_logits=True).value
    heads = mechanism["data"][-1]
    np.testing.assert_allclose(plotly_array(heads["x"]), sinks.logit_lead(result).ravel(), rtol=1e-9)
    np.testing.assert_allclose(plotly_array(heads["y"]), result.sink_share.ravel(), rtol=1e-6)
    assert f"takes {np.exp(8) / (np.exp(8) + 127):.1%} of 128" in toy["layout"]["title"]["text"]  # the others at 0
    bad = open_page(SINKS, text=TEXT, sentences="2", toy_keys="5000")
    assert "toy_keys=5000 is out of range" in texts(bad.warning)


def test_the_sink_norms_equal_a_direct_computation(smollm2: ModelHandle, cache: ResultCache) -> None:
    """Values from the layer's own norm and v_proj on the residual stream transformers returns, weights from its
    output_attentions, W_O split by head: every measure of `sink_effect.norms` in float64."""
    found = sink_effect.norms(smollm2, TEXT, cache).value
    ids = attention.run(smollm2, TEXT, cache).value.token_ids
    out = direct(smollm2, ids, output_attentions=True, output_hidden_states=True)
    layers = smollm2.model.model.layers
    heads, kv = smollm2.n_heads, smollm2.model.config.num_key_value_heads
    with torch.inference_mode():
        for layer, block in enumerate(layers):
            a = out.attentions[layer][0].double().numpy()[:, 1:]  # (heads, queries after the first, keys)
            v = block.self_attn.v_proj(block.input_layernorm(out.hidden_states[layer]))[0].double().numpy()
            v = v.reshape(len(ids), kv, -1).transpose(1, 0, 2).repeat(heads // kv, axis=0)  # (heads, n, head dim)
            w = block.self_attn.o_proj.weight.double().numpy()
            f = np.stack([v[h] @ w[:, h * v.shape[2] : (h + 1) * v.shape[2]].T for h in range(heads)])
            size = np.linalg.norm(f, axis=-1)  # (heads, n)
            weighted = a * size[:, None, :]
            expected = {
                "attention_share": a[..., 0].mean(-1),
                "norm_share": (weighted[..., 0] / weighted.sum(-1)).mean(-1),
                "first_value_norm": size[:, 0],
                "other_value_norm": size[:, 1:].mean(-1),
                "sink_norm": weighted[..., 0].mean(-1),
                "output_norm": np.linalg.norm(np.einsum("hij,hjo->hio", a, f), axis=-1).mean(-1),
            }
            for name, values in expected.items():
                np.testing.assert_allclose(getattr(found, name)[layer], values, rtol=2e-4, atol=1e-6, err_msg=name)


def test_sink_heads_bring_less_of_the_norms_than_of_the_weight(any_model: ModelHandle, cache: ResultCache) -> None:
    """Kobayashi et al.'s finding on every built-in model: the first token's values are short, so a head that puts
    most of its weight there adds less of it to its output."""
    found = sink_effect.norms(any_model, TEXT, cache).value
    strong = found.attention_share >= SINK_HEAD
    assert strong.sum() >= 5
    assert (found.norm_share[strong] < found.attention_share[strong]).all()
    assert np.median(found.first_value_norm[strong] / found.other_value_norm[strong]) < 0.5


@pytest.mark.slow  # Gemma 3 over eight corpus sentences, four masks and their references: tens of seconds
def test_masking_the_first_key_hides_it_and_costs_loss(gemma3: ModelHandle, cache: ResultCache) -> None:
    text = " ".join(corpus.sentences()[:8])
    masked = sink_effect.first_key_masked(gemma3, text, cache, window=8, sinks=2).value
    ids = attention.run(gemma3, text, cache).value.token_ids
    n = len(ids)
    assert masked.full == pytest.approx(float(np.mean(token_nll(gemma3, ids))), rel=1e-6)
    hidden = structured.full_mask(n)
    hidden[1:, 0] = False
    seen: list[float] = []

    def on_chunk(layer: int, start: int, first: int, weights: torch.Tensor, _scores: torch.Tensor) -> None:
        seen.append(float(weights[0, :, 1:, 0].max()))

    with chunking(gemma3.model, Chunking(None, allowed=hidden), on_chunk=on_chunk):
        assert float(np.mean(token_nll(gemma3, ids))) == pytest.approx(masked.masked, rel=1e-6)
    assert len(seen) == gemma3.n_layers and max(seen) == 0.0  # no later query sees token 0
    window = structured.windowed_mask(n, 8, 0)
    assert masked.window_alone == pytest.approx(float(np.mean(structured.masked_nll(gemma3, ids, window))), rel=1e-6)
    assert masked.masked > masked.full + 0.5 and masked.window_sinks < masked.window_alone
    assert list(masked.losses) == ["full attention", "first key masked", "window 8", "window 8 + first 2"]


def test_the_sink_effect_refuses_what_it_cannot_measure(minilm: ModelHandle, smollm2: ModelHandle, cache) -> None:
    with pytest.raises(LmscopeError, match="encoder"):
        sink_effect.first_key_masked(minilm, TEXT, cache)
    with pytest.raises(LmscopeError, match="window"):
        sink_effect.first_key_masked(smollm2, "Two words.", cache, window=50)
    with pytest.raises(LmscopeError, match="read 2 to 1,024 tokens"):
        sink_effect.norms(smollm2, "word " * 3000, cache)


def test_the_page_draws_the_norms_and_the_masked_loss(smollm2: ModelHandle) -> None:
    at = open_page(SINKS, text=TEXT, sentences="2", mask_window="4", mask_sinks="1")
    assert not at.exception and not at.error
    cache = ResultCache()
    norms, masked = sink_effect.norms(smollm2, TEXT, cache).value, chart(at, 5)
    points = chart(at, 4)["data"][-1]
    np.testing.assert_allclose(plotly_array(points["x"]), norms.attention_share.ravel(), rtol=1e-6)
    np.testing.assert_allclose(plotly_array(points["y"]), norms.norm_share.ravel(), rtol=1e-6)
    expected = sink_effect.first_key_masked(smollm2, TEXT, cache, 4, 1).value
    np.testing.assert_allclose(plotly_array(masked["data"][0]["y"]), list(expected.losses.values()), rtol=1e-6)
    assert list(masked["data"][0]["x"]) == ["full attention", "first key masked", "window 4", "window 4 + first 1"]
    bad = open_page(SINKS, text=TEXT, sentences="2", mask_window="0")
    assert "mask_window=0 is out of range" in texts(bad.warning)


def test_the_cli_prints_the_sink_effect(smollm2: ModelHandle, minilm: ModelHandle, cache: ResultCache) -> None:
    done = cli("sink-why", "--model", smollm2.name, "--text", TEXT, "--window", "4", "--sinks", "1")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    norms = sink_effect.norms(smollm2, TEXT, cache).value
    for name in SinkNorms.MEASURES:
        np.testing.assert_allclose(out[name], getattr(norms, name), rtol=1e-6)
    assert out["losses"] == pytest.approx(sink_effect.first_key_masked(smollm2, TEXT, cache, 4, 1).value.losses)
    encoder = json.loads(cli("sink-why", "--model", minilm.name, "--text", TEXT).stdout)
    assert "losses" not in encoder and len(encoder["norm_share"]) == minilm.n_layers
    bad = cli("sink-why", "--model", smollm2.name, "--text", TEXT, "--window", "0")
    assert bad.returncode != 0 and "window" in bad.stderr and "Traceback" not in bad.stderr
