"""Head scores on repeated (and reversed) random tokens, and head types, on the real built-in models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes import attention, heads
from results.heads import NONE
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


def test_the_reversed_sequence_is_the_block_then_its_reverse(any_model: ModelHandle) -> None:
    ids, start = heads.repeated_random_tokens(any_model, N, seed=3, reverse=True)
    repeated, _ = heads.repeated_random_tokens(any_model, N, seed=3)
    block = repeated[start : start + N]
    assert np.array_equal(ids[start : start + N], block) and np.array_equal(ids[start + N : start + 2 * N], block[::-1])
    assert np.array_equal(ids[:start], repeated[:start]) and np.array_equal(
        ids[start + 2 * N :], repeated[start + 2 * N :]
    )


def _maps(handle: ModelHandle, ids: np.ndarray) -> list[np.ndarray]:
    """Each layer's (heads, n, n) attention, from the model's own output_attentions."""
    with torch.inference_mode():
        out = handle.model(torch.as_tensor(ids)[None], output_attentions=True).attentions
    return [layer[0].double().numpy() for layer in out]


@pytest.mark.parametrize("seed", [5, 11])  # sequences no default or test above uses
def test_every_type_score_equals_a_direct_computation(any_model: ModelHandle, cache: ResultCache, seed: int) -> None:
    """Induction, duplicate token, the offset profile and reverse induction, each as the mean of the pairs' weights
    read from the model's own attention maps."""
    on_random = heads.run(any_model, cache, N, seed).value
    on_reversed = heads.run(any_model, cache, N, seed, reverse=True).value
    ids, start = heads.repeated_random_tokens(any_model, N, seed)
    reversed_ids, _ = heads.repeated_random_tokens(any_model, N, seed, reverse=True)
    n, second = len(ids), range(start + N, start + 2 * N)
    offsets, profile = heads.profile(on_random)
    for layer, (a, r) in enumerate(zip(_maps(any_model, ids), _maps(any_model, reversed_ids), strict=True)):
        duplicate = [np.mean([a[h, i, i - N] for i in second]) for h in range(a.shape[0])]
        np.testing.assert_allclose(on_random.scores["duplicate token"][layer], duplicate, atol=1e-5)
        # Position start + N + j of the reversed copy holds R[N-1-j], which follows R[N-2-j] in the first copy.
        before = [np.mean([r[h, start + N + j, start + N - 2 - j] for j in range(N - 1)]) for h in range(r.shape[0])]
        np.testing.assert_allclose(on_reversed.scores["reverse induction"][layer], before, atol=1e-5)
        for k, d in enumerate(offsets):
            queries = [i for i in range(n) if 0 <= i - d < n]
            expected = [np.mean([a[h, i, i - d] for i in queries]) for h in range(a.shape[0])]
            if any_model.is_causal and d < 0:
                assert np.isnan(profile[layer, :, k]).all()  # a decoder's later keys: no score, not a zero
            else:
                np.testing.assert_allclose(profile[layer, :, k], expected, atol=1e-5)
    np.testing.assert_allclose(profile[..., list(offsets).index(1)], on_random.previous_token, atol=1e-6)


def test_head_types_follow_the_thresholds(smollm2: ModelHandle, cache: ResultCache) -> None:
    text = "The cat sat on the mat. Then, the dog barked; the cat ran."
    kinds = heads.types_of(smollm2, text, cache).value
    on_text = attention.run(smollm2, text, cache).value
    on_random = heads.run(smollm2, cache).value
    offsets, profile = heads.profile(on_random)
    assert kinds.scores.shape == (len(heads.THRESHOLDS), smollm2.n_layers, smollm2.n_heads)
    scores = {
        "induction": on_random.scores["induction"],
        "reverse induction": heads.run(smollm2, cache, reverse=True).value.scores["reverse induction"],
        "duplicate token": on_random.scores["duplicate token"],
        "previous-token": on_random.previous_token,
        "previous-k": profile[..., offsets >= 2].max(axis=-1),
        "next-token": np.full(on_text.sink_share.shape, np.nan),  # a decoder looks at no later token
        "sink": on_text.sink_share,
        "delimiter": on_text.delimiter_share,
    }
    for (layer, head), kind in np.ndenumerate(kinds.dominant):
        ratios = {k: np.nan_to_num(v[layer, head] / heads.THRESHOLDS[k]) for k, v in scores.items()}
        best = max(ratios, key=ratios.__getitem__)
        passed = [k for k in sorted(ratios, key=ratios.__getitem__, reverse=True) if ratios[k] >= 1]
        assert kind == (best if passed else NONE)
        assert kinds.count[layer, head] == len(passed)
        assert kinds.labels[layer, head] == (" + ".join(passed) or NONE)
        p = np.array(list(ratios.values())) / sum(ratios.values())
        applicable = [k for k, v in scores.items() if not np.isnan(v).all()]  # all but next-token
        entropy = -sum(x * np.log(x) for x in p if x > 0) / np.log(len(applicable))
        assert kinds.entropy[layer, head] == pytest.approx(entropy, abs=1e-6)
    assert (kinds.dominant == "induction").any() and (kinds.dominant == "sink").any()


def test_smollm2s_induction_heads_rest_on_the_first_token_and_none_reverses(
    smollm2: ModelHandle, cache: ResultCache
) -> None:
    """On ordinary text, where nothing repeats, every induction head is a sink: the mixed heads. No head does
    reverse induction; on the reversed copy the induction heads still look at the token after the occurrence."""
    kinds = heads.types_of(smollm2, "The cat sat on the mat, and the dog slept by the door.", cache).value
    induction, sink = kinds.passed[0], kinds.passed[kinds.types.index("sink")]
    assert induction.sum() >= 5 and (induction <= sink).all()
    assert np.nanmax(kinds.score("reverse induction")) < 0.1
    assert np.nanmax(kinds.score("previous-k")) < heads.THRESHOLDS["previous-k"]  # no previous-k head at this size
    top = np.unravel_index(np.argmax(kinds.score("previous-token")), induction.shape)
    assert kinds.dominant_offset[top] == 1


def test_minilms_next_token_head_is_found(minilm: ModelHandle, cache: ResultCache) -> None:
    """An encoder sees later tokens: MiniLM has a head that looks one token ahead (Clark et al.'s next-token heads)
    and one that looks one back."""
    kinds = heads.types_of(minilm, "The cat sat on the mat, and the dog slept by the door.", cache).value
    ahead = kinds.score("next-token")
    assert ahead.max() >= heads.THRESHOLDS["next-token"]
    assert kinds.dominant_offset[np.unravel_index(np.argmax(ahead), ahead.shape)] == -1
    assert (kinds.dominant == "next-token").sum() >= 1 and (kinds.dominant == "previous-token").sum() >= 1
    assert kinds.passed[0].sum() == 0  # no induction in a bidirectional encoder


@pytest.mark.parametrize("seq_len", [0, 3, 5000])
def test_bad_lengths_get_a_message(smollm2: ModelHandle, cache: ResultCache, seq_len: int) -> None:
    with pytest.raises(LmscopeError, match="between"):
        heads.run(smollm2, cache, seq_len, 0)
