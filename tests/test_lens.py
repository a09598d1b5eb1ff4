"""The logit lens on the real decoders: its last readout is the model's own prediction, every other one equals a
readout of transformers' own output_hidden_states through the final norm and unembedding; the page, the CLI, the
API and bad requests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lmscope
from probes import attribution, lens
from probes.residual import blocks
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, direct, open_page, plotly_array, texts
from views.lens import massive_features
from viz.lens import MOST_POSITIONS

TEXT = "The Eiffel Tower is in Paris, the capital of France. The Colosseum is in Rome, the capital of Italy."
PAGE = "app_pages/14_Logit_lens.py"
# Tests that read every layer's readout over the whole vocabulary: on Gemma 3 (262k words) in the full suite only.
EVERY_READOUT = ["smollm2", pytest.param("gemma3", marks=pytest.mark.slow)]


@pytest.fixture(params=["smollm2", "gemma3"])
def decoder(request: pytest.FixtureRequest) -> ModelHandle:
    return request.getfixturevalue(request.param)


def _independent(handle: ModelHandle, token_ids: np.ndarray, zeroed: list[int]) -> list[torch.Tensor]:
    """Log-probabilities of every readout from output_hidden_states: the embeddings and blocks 0..L-2 through the
    final norm (transformers reports the last block's state after it), each with `zeroed` features set to 0."""
    states = direct(handle, token_ids, output_hidden_states=True).hidden_states
    norm, head = lens.readout(handle)
    readouts = []
    with torch.inference_mode():
        for state in states[:-1]:
            hidden = state[0].clone()
            hidden[:, zeroed] = 0
            readouts.append(torch.log_softmax(head(norm(hidden)).float(), dim=-1))
    return readouts


@pytest.mark.parametrize("decoder", EVERY_READOUT, indirect=True)
@pytest.mark.parametrize("zero", [False, True])
def test_every_readout_equals_an_independent_one(decoder: ModelHandle, zero: bool, shared_cache: ResultCache) -> None:
    zeroed = massive_features(decoder, TEXT, shared_cache) if zero else []
    assert not zero or zeroed  # both decoders have massive features on the text
    result = lens.run(decoder, TEXT, shared_cache, zeroed).value
    assert result.top_ids.shape == (decoder.n_layers + 1, len(result.tokens), lens.TOP) and result.zeroed == zeroed
    following = torch.as_tensor(result.token_ids[1:])
    for row, logp in enumerate(_independent(decoder, result.token_ids, zeroed)):
        best = torch.topk(logp, lens.TOP, dim=-1)
        np.testing.assert_allclose(result.top_probs[row], best.values.exp().numpy(), atol=2e-5)
        agree = np.mean(result.top_ids[row, :, 0] == best.indices[:, 0].numpy())
        assert agree >= 0.95, row  # ties and near-ties aside, the same top token
        expected = logp[:-1].gather(1, following[:, None])[:, 0].exp().numpy()
        np.testing.assert_allclose(result.next_prob[row], expected, atol=2e-5)
        entropy = -(logp.exp() * logp).sum(-1).numpy()
        np.testing.assert_allclose(result.entropy[row], entropy, rtol=1e-3, atol=1e-3)
    assert result.top_tokens[0, 3, 0] == decoder.tokenizer.decode([int(result.top_ids[0, 3, 0])])


@pytest.mark.parametrize("decoder", EVERY_READOUT, indirect=True)
def test_the_last_readout_is_the_models_own_prediction(decoder: ModelHandle, shared_cache: ResultCache) -> None:
    result = lens.run(decoder, TEXT, shared_cache).value
    logits = direct(decoder, result.token_ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    np.testing.assert_allclose(result.top_probs[-1], torch.topk(logp, lens.TOP).values.exp().numpy(), atol=1e-5)
    np.testing.assert_array_equal(result.top_ids[-1, :, 0], logp.argmax(-1).numpy())
    assert np.all(result.kl_final[-1] == 0) and np.all(result.kl_final[:-1].mean(axis=1) > 0.1)
    ranks = (logp[:-1] > logp[:-1].gather(1, torch.as_tensor(result.token_ids[1:])[:, None])).sum(-1).numpy()
    np.testing.assert_array_equal(result.next_rank[-1], ranks)
    # Zeroing the massive features moves the model's own prediction: the last row's KL is no longer 0.
    zeroed = lens.run(decoder, TEXT, shared_cache, massive_features(decoder, TEXT, shared_cache)).value
    assert zeroed.kl_final[-1].mean() > 0.01


def test_bad_requests_are_messages(smollm2: ModelHandle, minilm: ModelHandle, shared_cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="is an encoder: it has no unembedding"):
        lens.run(minilm, TEXT, shared_cache)
    with pytest.raises(LmscopeError, match="The features to zero must be from 0 to 575"):
        lens.run(smollm2, TEXT, shared_cache, [576])
    with pytest.raises(LmscopeError, match="The lens reads 2 to 512 tokens"):
        lens.run(smollm2, "word " * 600, shared_cache)
    with pytest.raises(LmscopeError, match="The lens reads 2 to 512 tokens"):
        lens.run(smollm2, "Hi", shared_cache)


def test_the_page_draws_the_lens_at_its_settings(smollm2: ModelHandle) -> None:
    long = " ".join([TEXT] * 3)
    at = open_page(PAGE, model=smollm2.name, text=long, colour="next_prob", start="5")
    assert not at.exception and not at.error
    grid, by_layer = chart(at, 0), chart(at, 1)
    result = lens.run(smollm2, long, ResultCache()).value
    shown = slice(5, 5 + MOST_POSITIONS)
    expected = np.concatenate([result.next_prob, np.full((smollm2.n_layers + 1, 1), np.nan)], axis=1)[:, shown]
    np.testing.assert_allclose(plotly_array(grid["data"][0]["z"]), expected, rtol=1e-6, equal_nan=True)
    assert list(plotly_array(grid["data"][0]["x"])) == list(range(5, 5 + MOST_POSITIONS))
    assert list(plotly_array(grid["data"][0]["y"])) == list(range(-1, smollm2.n_layers))
    np.testing.assert_allclose(plotly_array(by_layer["data"][0]["y"]), result.next_prob.mean(axis=1), rtol=1e-6)
    zeroed = open_page(PAGE, model=smollm2.name, text=TEXT, zero="1")
    assert not zeroed.exception and "features 507 zeroed" in chart(zeroed, 0)["layout"]["title"]["subtitle"]["text"]


def test_the_page_refuses_an_encoder_and_a_bad_link(minilm: ModelHandle, smollm2: ModelHandle) -> None:
    at = open_page(PAGE, model=minilm.name, text=TEXT)
    assert not at.exception and "is an encoder" in texts(at.info) and not at.get("plotly_chart")
    at = open_page(PAGE, model=smollm2.name, text=TEXT, colour="rainbow", start="9999")
    warned = texts(at.warning)
    assert not at.exception and "colour='rainbow' is not among" in warned and "start=9999 is out of range" in warned


def test_the_cli_prints_what_the_api_returns(smollm2: ModelHandle) -> None:
    done = cli("lens", "--model", smollm2.name, "--text", TEXT, "--top", "2", "--zero", "massive")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    result = lmscope.lens(smollm2, TEXT, zeroed=[507], progress=False)
    assert printed["zeroed"] == [507] == result.zeroed and printed["tokens"] == result.tokens
    assert [layer["layer"] for layer in printed["layers"]] == list(range(-1, smollm2.n_layers))
    for row, layer in enumerate(printed["layers"]):
        assert layer["top_tokens"] == result.top_tokens[row, :, :2].tolist()
        np.testing.assert_allclose(layer["next_prob"], result.next_prob[row], rtol=1e-6)
        np.testing.assert_allclose(layer["kl_final"], result.kl_final[row], rtol=1e-6)
    title = result.figure(colour="kl_final").to_plotly_json()["layout"]["title"]["text"]
    assert title.startswith("Logit lens of smollm2-135m-instruct")
    bad = cli("lens", "--model", smollm2.name, "--text", TEXT, "--zero", "a,b")
    assert bad.returncode != 0 and "--zero takes feature numbers" in bad.stderr


def test_the_attribution_parts_sum_to_the_models_logit(decoder: ModelHandle, shared_cache: ResultCache) -> None:
    read = lens.run(decoder, TEXT, shared_cache).value
    position = len(read.tokens) - 3
    target = int(read.token_ids[position + 1])
    done = attribution.run(decoder, read.token_ids.tolist(), position, target, shared_cache).value
    assert done.heads.shape == (decoder.n_layers, decoder.n_heads) and done.target_id == target
    logits = direct(decoder, read.token_ids).logits[0, position].double()
    assert done.logit == pytest.approx(float(logits[target]), abs=2e-3)  # neither model soft-caps its logits
    magnitude = np.abs(done.heads).sum() + np.abs(done.mlps).sum() + abs(done.embedding)
    assert abs(done.total - done.logit) <= 1e-5 * magnitude
    # Each block's heads and MLP add what the block adds to transformers' own hidden states, read the same way.
    states = direct(decoder, read.token_ids, output_hidden_states=True).hidden_states
    final = lens.residual_states(decoder, read.token_ids)[-1][position].double()
    norm, head = lens.readout(decoder)
    direction = head.get_parameter("weight")[target].detach().double() * attribution.rms_scale(norm, final)
    for layer in range(decoder.n_layers - 1):  # transformers reports the last block's state after the final norm
        added = (states[layer + 1][0, position] - states[layer][0, position]).double()
        by_block = done.heads[layer].sum() + done.mlps[layer] + done.attention_bias[layer]
        assert by_block == pytest.approx(float(direction @ added), abs=2e-4 * magnitude), layer


def test_a_heads_part_equals_its_attention_weights_times_values(
    smollm2: ModelHandle, shared_cache: ResultCache
) -> None:
    read = lens.run(smollm2, TEXT, shared_cache).value
    position, target, layer, h = len(read.tokens) - 1, int(read.top_ids[-1, -1, 0]), 23, 4
    done = attribution.run(smollm2, read.token_ids.tolist(), position, target, shared_cache).value
    outputs = direct(smollm2, read.token_ids, output_hidden_states=True, output_attentions=True)
    block = blocks(smollm2)[layer]
    with torch.inference_mode():
        normed = block.get_submodule("input_layernorm")(outputs.hidden_states[layer][0])
        values = block.get_submodule("self_attn.v_proj")(normed).double()
    width = smollm2.model.config.head_dim
    group = smollm2.n_heads // smollm2.n_kv_heads
    kv = h // group
    mixed = outputs.attentions[layer][0, h, position].double() @ values[:, kv * width : (kv + 1) * width]
    o_proj = block.get_submodule("self_attn.o_proj").get_parameter("weight").detach().double()
    part = o_proj[:, h * width : (h + 1) * width] @ mixed
    final = lens.residual_states(smollm2, read.token_ids)[-1][position].double()
    norm, head = lens.readout(smollm2)
    direction = head.get_parameter("weight")[target].detach().double() * attribution.rms_scale(norm, final)
    assert done.heads[layer, h] == pytest.approx(float(direction @ part), rel=1e-3, abs=1e-3)


def test_attribution_on_the_page_the_cli_and_the_api(smollm2: ModelHandle, minilm: ModelHandle) -> None:
    at = open_page(PAGE, model=smollm2.name, text=TEXT, position="10", target="next")
    assert not at.exception and not at.error
    drawn = chart(at, 2)
    read = lens.run(smollm2, TEXT, ResultCache()).value
    expected = attribution.run(smollm2, read.token_ids.tolist(), 10, int(read.token_ids[11]), ResultCache()).value
    np.testing.assert_allclose(plotly_array(drawn["data"][0]["z"]), expected.heads, rtol=1e-9)
    np.testing.assert_allclose(plotly_array(drawn["data"][1]["x"]), expected.mlps, rtol=1e-9)
    last = open_page(PAGE, model=smollm2.name, text=TEXT, position=str(len(read.tokens) - 1), target="next")
    assert "The last position has no next token" in texts(last.error)
    done = cli("attribute", "--model", smollm2.name, "--text", TEXT, "--position", "10", "--target", "next")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["target"] == expected.target and printed["logit"] == pytest.approx(expected.logit)
    np.testing.assert_allclose(printed["heads"], expected.heads, rtol=1e-9)
    api = lmscope.attribute(smollm2, TEXT, 10, "next", progress=False)
    np.testing.assert_allclose(api.mlps, expected.mlps, rtol=1e-9)
    with pytest.raises(LmscopeError, match="is an encoder"):
        lmscope.attribute(minilm, TEXT, progress=False)
    with pytest.raises(LmscopeError, match="The target must be one of 1, 2, 3, 4, 5, next"):
        lmscope.attribute(smollm2, TEXT, 3, "7", progress=False)
    with pytest.raises(LmscopeError, match="Position -100 does not exist"):
        lmscope.attribute(smollm2, TEXT, -100, progress=False)
