"""Head scores on repeated random tokens, and head types, on the real built-in models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes import attention, heads
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle

N = 24


def test_sequence_is_random_tokens_repeated_inside_the_special_frame(any_model: ModelHandle) -> None:
    ids, start = heads.repeated_random_tokens(any_model, N, seed=3)
    framed = any_model.tokenizer("x")["input_ids"]
    assert start == framed.index(any_model.tokenizer("x", add_special_tokens=False)["input_ids"][0])
    block = ids[start : start + N]
    assert np.array_equal(block, ids[start + N : start + 2 * N])
    assert len(set(block.tolist())) == N
    assert not set(block.tolist()) & set(any_model.tokenizer.all_special_ids)
    assert len(ids) == len(framed) - 1 + 2 * N
    again, _ = heads.repeated_random_tokens(any_model, N, seed=3)
    other, _ = heads.repeated_random_tokens(any_model, N, seed=4)
    assert np.array_equal(ids, again) and not np.array_equal(ids, other)


def test_induction_equals_a_direct_computation(any_model: ModelHandle, cache: ResultCache) -> None:
    result = heads.run(any_model, cache, N, 1).value
    _, start = heads.repeated_random_tokens(any_model, N, 1)
    with torch.inference_mode():
        attentions = any_model.model(torch.as_tensor(result.token_ids)[None], output_attentions=True).attentions
    for layer, maps in enumerate(attentions):
        a = maps[0].double().numpy()
        expected = [np.mean([a[h, i, i - N + 1] for i in range(start + N, start + 2 * N)]) for h in range(a.shape[0])]
        np.testing.assert_allclose(result.scores["induction"][layer], expected, atol=1e-5)


def test_smollm2_has_a_few_induction_heads(smollm2: ModelHandle, cache: ResultCache) -> None:
    induction = heads.run(smollm2, cache, 50, 0).value.scores["induction"]
    strong = induction > 0.5
    assert 0 < strong.sum() <= 0.1 * induction.size
    assert np.median(induction) < 0.05
    # They sit in the upper half of the network, after the layers that build previous-token features.
    assert np.flatnonzero(strong.any(axis=1)).min() >= smollm2.n_layers // 3


def test_head_types_follow_the_thresholds(smollm2: ModelHandle, cache: ResultCache) -> None:
    on_text = attention.run(smollm2, "The cat sat on the mat. Then, the dog barked; the cat ran.", cache).value
    on_random = heads.run(smollm2, cache, 50, 0).value
    types = heads.head_types(on_text, on_random)
    assert types.shape == (smollm2.n_layers, smollm2.n_heads)
    scores = {
        "induction": on_random.scores["induction"],
        "previous-token": on_random.previous_token,
        "sink": on_text.sink_share,
        "delimiter": on_text.delimiter_share,
    }
    for (layer, head), kind in np.ndenumerate(types):
        ratios = {k: v[layer, head] / heads.THRESHOLDS[k] for k, v in scores.items()}
        best = max(ratios, key=ratios.get)
        assert kind == (best if ratios[best] >= 1 else "mixed")
    assert (types == "induction").any() and (types == "sink").any()


@pytest.mark.parametrize("seq_len", [0, 3, 5000])
def test_bad_lengths_get_a_message(smollm2: ModelHandle, cache: ResultCache, seq_len: int) -> None:
    with pytest.raises(LmscopeError, match="between"):
        heads.run(smollm2, cache, seq_len, 0)
