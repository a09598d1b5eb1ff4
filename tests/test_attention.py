"""The attention probe on the real built-in models, checked against transformers' own output_attentions."""

from __future__ import annotations

import numpy as np
import pytest

from probes import attention, dropped_heads
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import direct_attentions

TEXT = "When Mary and John went to the store, John gave a drink to Mary. Then they went home."


def test_maps_are_distributions_over_visible_keys(any_model: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(any_model, TEXT, cache).value
    n = len(result.tokens)
    assert result.maps.shape == (any_model.n_layers, any_model.n_heads, n, n)
    maps = result.maps.astype(np.float64)
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, atol=5e-3)
    future = np.triu(np.ones((n, n), dtype=bool), k=1)
    if any_model.is_causal:
        assert np.all(maps[..., future] == 0)
    else:
        assert np.all(maps[..., future].sum(axis=-1) > 0)


def test_summaries_equal_a_direct_computation(any_model: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(any_model, TEXT, cache).value
    direct = direct_attentions(any_model, result.token_ids)
    n = len(result.tokens)
    delimiters = [i for i, t in enumerate(result.tokens) if i > 0 and (t.strip() in {".", ",", "[SEP]"})]
    assert delimiters == list(np.flatnonzero(result.delimiters))
    specials = [i for i, t in enumerate(result.tokens) if i > 0 and t == "[SEP]"]
    assert specials == list(np.flatnonzero(result.specials))
    for layer, maps in enumerate(direct):
        for head in range(any_model.n_heads):
            a = maps[head]
            sink = np.mean([a[q, 0] for q in range(1, n)])
            prev = np.mean([a[q, q - 1] for q in range(1, n)])
            delimiter = np.mean([sum(a[q, k] for k in delimiters) for q in range(1, n)])
            special = np.mean([sum(a[q, k] for k in specials) for q in range(1, n)])
            distance = np.mean([sum(a[q, k] * abs(q - k) for k in range(n)) for q in range(n)])
            entropy = np.mean([-sum(p * np.log(p) for p in row if p > 0) for row in a])
            assert result.sink_share[layer, head] == pytest.approx(sink, abs=1e-5)
            assert result.previous_token[layer, head] == pytest.approx(prev, abs=1e-5)
            assert result.delimiter_share[layer, head] == pytest.approx(delimiter, abs=1e-5)
            assert result.special_share[layer, head] == pytest.approx(special, abs=1e-5)
            assert result.mean_distance[layer, head] == pytest.approx(distance, abs=1e-3)
            assert result.entropy[layer, head] == pytest.approx(entropy, abs=1e-4)
        np.testing.assert_allclose(result.maps[layer].astype(np.float64), maps, atol=1e-3)


def test_logits_are_the_scores_before_the_softmax(any_model: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(any_model, TEXT, cache, with_logits=True).value
    logits = result.logits.astype(np.float64)
    masked = np.isnan(logits)
    future = np.triu(np.ones(masked.shape[-2:], dtype=bool), k=1)
    assert np.array_equal(masked, np.broadcast_to(future, masked.shape)) if any_model.is_causal else not masked.any()
    shifted = np.where(masked, -np.inf, logits - np.nanmax(logits, axis=-1, keepdims=True))
    softmax = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(softmax, result.maps.astype(np.float64), atol=2e-2)  # float16 logits


def test_long_texts_are_pooled_for_display(smollm2: ModelHandle, cache: ResultCache) -> None:
    text = "A sentence that repeats, so that the text is long. " * 60
    result = attention.run(smollm2, text, cache).value
    n = len(result.tokens)
    pool = -(-n // attention.MAX_MAP_SIDE)
    assert result.pool == pool > 1 and result.maps.shape[-1] == -(-n // pool)
    np.testing.assert_allclose(result.maps.astype(np.float64).sum(-1), 1.0, atol=5e-3)
    exact = direct_attentions(smollm2, result.token_ids)[7][3]
    assert result.maps[7, 3, 1, 0] == pytest.approx(exact[pool : 2 * pool, :pool].sum(-1).mean(), abs=1e-3)
    assert result.sink_share[7, 3] == pytest.approx(exact[1:, 0].mean(), abs=1e-5)
    # Summaries are accumulated over chunks of queries; they must equal the whole-map computation.
    q = np.arange(n)
    assert result.previous_token[7, 3] == pytest.approx(exact[q[1:], q[1:] - 1].mean(), abs=1e-5)
    assert result.delimiter_share[7, 3] == pytest.approx(exact[1:, result.delimiters].sum(-1).mean(), abs=1e-5)
    assert result.mean_distance[7, 3] == pytest.approx(
        (exact * np.abs(q[:, None] - q[None, :])).sum(-1).mean(), rel=1e-5
    )
    entropy = -np.where(exact > 0, exact * np.log(np.where(exact > 0, exact, 1)), 0).sum(-1).mean()
    assert result.entropy[7, 3] == pytest.approx(entropy, rel=1e-5)


def test_grouped_query_heads_are_expanded(smollm2: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(smollm2, TEXT, cache).value
    assert smollm2.n_kv_heads < smollm2.n_heads == result.n_heads == 9
    # Query heads sharing one key/value head still attend differently.
    group = smollm2.n_heads // smollm2.n_kv_heads
    assert not np.array_equal(result.maps[5, 0], result.maps[5, group - 1])


def test_sink_appears_beyond_the_first_layers(smollm2: ModelHandle, cache: ResultCache) -> None:
    """StreamingLLM's observation, measured: later layers put far more weight on token 0 than layer 0."""
    result = attention.run(smollm2, TEXT, cache).value
    per_layer = result.sink_share.mean(axis=1)
    assert per_layer[2:].mean() > 2 * per_layer[0]


def test_tokens_match_the_tokenizer(any_model: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(any_model, TEXT, cache).value
    assert result.token_ids.tolist() == any_model.tokenizer(TEXT)["input_ids"]
    assert len(result.tokens) == len(result.token_ids)
    assert all(result.tokens)


def test_one_token_text_is_refused(smollm2: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="at least two tokens"):
        attention.run(smollm2, "Hello", cache)


@pytest.mark.parametrize(("layer", "head"), [(-1, 0), (30, 0), (0, 9), (0, -1)])
def test_out_of_range_heads_get_a_message(smollm2: ModelHandle, cache: ResultCache, layer: int, head: int) -> None:
    result = attention.run(smollm2, TEXT, cache).value
    with pytest.raises(LmscopeError, match="does not exist"):
        result.check_head(layer, head)


@pytest.mark.slow  # a text past Gemma 3's sliding window: tens of seconds
def test_gemmas_sliding_layers_are_summarised_past_their_window(gemma3: ModelHandle, cache: ResultCache) -> None:
    """Past 512 tokens a sliding-window layer's chunks start their keys after 0: its summaries and pooled maps must
    still equal the whole-map computation, as the full-attention layers' do."""
    text = "Local layers look back 512 tokens; every sixth layer sees the whole text, start to end. " * 60
    result = attention.run(gemma3, text, cache).value
    n, pool = len(result.tokens), result.pool
    assert n > 1024 and pool > 1 and gemma3.layer_windows[0] == 512 and gemma3.layer_windows[5] is None
    direct = direct_attentions(gemma3, result.token_ids)
    q = np.arange(n)
    for layer in (0, 5):
        exact = direct[layer]
        assert np.all(exact[:, 600:, :80] == 0) == (layer == 0)  # the window hides the start from late queries
        np.testing.assert_allclose(result.sink_share[layer], exact[:, 1:, 0].mean(-1), atol=1e-5)
        np.testing.assert_allclose(result.previous_token[layer], exact[:, q[1:], q[1:] - 1].mean(-1), atol=1e-5)
        distance = (exact * np.abs(q[:, None] - q[None, :])).sum(-1).mean(-1)
        np.testing.assert_allclose(result.mean_distance[layer], distance, rtol=1e-4)
        entropy = -np.where(exact > 0, exact * np.log(np.where(exact > 0, exact, 1)), 0).sum(-1).mean(-1)
        np.testing.assert_allclose(result.entropy[layer], entropy, rtol=1e-4)
        cells = -(-n // pool)
        padded = np.zeros((gemma3.n_heads, cells * pool, cells * pool))
        padded[:, :n, :n] = exact
        pooled = padded.reshape(gemma3.n_heads, cells, pool, cells, pool).sum(-1).sum(-2) / pool
        pooled[:, -1] *= pool / (n - (cells - 1) * pool)
        np.testing.assert_allclose(result.maps[layer].astype(np.float64), pooled, atol=2e-3)


def test_attention_reads_texts_past_the_other_views_limit(
    smollm2: ModelHandle, cache: ResultCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attention probe holds no (n, n) map, so it reads up to the model's context (LMSCOPE_LONG_TOKENS), where
    the views that do keep to LMSCOPE_MAX_TOKENS."""
    monkeypatch.setenv("LMSCOPE_MAX_TOKENS", "300")
    text = "A sentence that repeats, so that the text is long. " * 40
    result = attention.run(smollm2, text, cache).value
    assert len(result.tokens) > 300
    with pytest.raises(LmscopeError, match="300"):
        dropped_heads.run(smollm2, text, cache)
    monkeypatch.setenv("LMSCOPE_LONG_TOKENS", "400")
    with pytest.raises(LmscopeError, match="400"):
        attention.run(smollm2, text, cache)
