"""The logit lens on the real decoders: its last readout is the model's own prediction, every other one equals a
readout of transformers' own output_hidden_states through the final norm and unembedding; the page, the CLI, the
API and bad requests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lmscope
from probes import lens
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, direct, open_page, plotly_array, texts
from views.lens import massive_features
from viz.lens import MOST_POSITIONS

TEXT = "The Eiffel Tower is in Paris, the capital of France. The Colosseum is in Rome, the capital of Italy."
PAGE = "app_pages/14_Logit_lens.py"


@pytest.fixture(params=["smollm2", "gemma3"])
def decoder(request: pytest.FixtureRequest) -> ModelHandle:
    return request.getfixturevalue(request.param)


def _independent(handle: ModelHandle, token_ids: np.ndarray, zeroed: list[int]) -> list[torch.Tensor]:
    """Log-probabilities of every readout from output_hidden_states: the embeddings and blocks 0..L-2 through the
    final norm (transformers reports the last block's state after it), each with `zeroed` features set to 0."""
    states = direct(handle, token_ids, output_hidden_states=True).hidden_states
    norm, head = handle.model.base_model.norm, handle.model.get_output_embeddings()
    readouts = []
    with torch.inference_mode():
        for state in states[:-1]:
            hidden = state[0].clone()
            hidden[:, zeroed] = 0
            readouts.append(torch.log_softmax(head(norm(hidden)).float(), dim=-1))
    return readouts


@pytest.mark.parametrize("zero", [False, True])
def test_every_readout_equals_an_independent_one(decoder: ModelHandle, zero: bool, cache: ResultCache) -> None:
    zeroed = massive_features(decoder, TEXT, cache) if zero else []
    assert not zero or zeroed  # both decoders have massive features on the text
    result = lens.run(decoder, TEXT, cache, zeroed).value
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


def test_the_last_readout_is_the_models_own_prediction(decoder: ModelHandle, cache: ResultCache) -> None:
    result = lens.run(decoder, TEXT, cache).value
    logits = direct(decoder, result.token_ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    np.testing.assert_allclose(result.top_probs[-1], torch.topk(logp, lens.TOP).values.exp().numpy(), atol=1e-5)
    np.testing.assert_array_equal(result.top_ids[-1, :, 0], logp.argmax(-1).numpy())
    assert np.all(result.kl_final[-1] == 0) and np.all(result.kl_final[:-1].mean(axis=1) > 0.1)
    ranks = (logp[:-1] > logp[:-1].gather(1, torch.as_tensor(result.token_ids[1:])[:, None])).sum(-1).numpy()
    np.testing.assert_array_equal(result.next_rank[-1], ranks)
    # Zeroing the massive features moves the model's own prediction: the last row's KL is no longer 0.
    zeroed = lens.run(decoder, TEXT, cache, massive_features(decoder, TEXT, cache)).value
    assert zeroed.kl_final[-1].mean() > 0.01


def test_bad_requests_are_messages(smollm2: ModelHandle, minilm: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="is an encoder: it has no unembedding"):
        lens.run(minilm, TEXT, cache)
    with pytest.raises(LmscopeError, match="The features to zero must be from 0 to 575"):
        lens.run(smollm2, TEXT, cache, [576])
    with pytest.raises(LmscopeError, match="The lens reads 2 to 512 tokens"):
        lens.run(smollm2, "word " * 600, cache)
    with pytest.raises(LmscopeError, match="The lens reads 2 to 512 tokens"):
        lens.run(smollm2, "Hi", cache)


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
    assert result.figure(colour="kl_final").layout.title.text.startswith("Logit lens of smollm2-135m-instruct")
    bad = cli("lens", "--model", smollm2.name, "--text", TEXT, "--zero", "a,b")
    assert bad.returncode != 0 and "--zero takes feature numbers" in bad.stderr
