"""Untrained twins: every model's architecture, config and tokenizer with the weights its architecture is
initialised with, seeded, built offline, fingerprinted apart, and usable wherever a model is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes.nll import token_nll
from probes.text import encode
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.models import TWIN_SEED, info, load
from tests.helpers import chart, open_page, plotly_array

TWIN = "smollm2-135m-instruct@untrained"
TEXT = "The cat sat on the mat, and then the cat slept."


@pytest.fixture(scope="module")
def twin() -> ModelHandle:
    return load(TWIN)


def test_a_twin_has_the_architecture_and_its_initial_weights(twin: ModelHandle, smollm2: ModelHandle) -> None:
    trained = {name: p.detach().clone() for name, p in smollm2.model.named_parameters()}
    state = torch.random.get_rng_state()
    again = load(TWIN)
    assert torch.equal(torch.random.get_rng_state(), state)  # no other call's random numbers moved
    assert twin.model.config.to_dict() == smollm2.model.config.to_dict()
    assert twin.tokenizer(TEXT)["input_ids"] == smollm2.tokenizer(TEXT)["input_ids"]
    assert twin.fingerprint == again.fingerprint != smollm2.fingerprint
    assert f"seed {TWIN_SEED}" in twin.source and "untrained" in info(twin).title
    own, twice = dict(twin.model.named_parameters()), dict(again.model.named_parameters())
    assert own.keys() == trained.keys()
    assert all(torch.equal(own[name], twice[name]) for name in own)  # the same twin on every load
    assert all(torch.equal(p, trained[name]) for name, p in smollm2.model.named_parameters())
    # transformers' Llama initialisation: matrices N(0, initializer_range²), norms at one
    w = own["model.layers.3.mlp.gate_proj.weight"].detach().double()
    assert float(w.std()) == pytest.approx(smollm2.model.config.initializer_range, rel=0.01)
    assert float(((w - w.mean()) ** 4).mean() / w.var() ** 2) == pytest.approx(3.0, abs=0.05)  # Gaussian
    assert not torch.equal(own["model.layers.3.mlp.gate_proj.weight"], trained["model.layers.3.mlp.gate_proj.weight"])
    assert torch.equal(own["model.norm.weight"], torch.ones_like(own["model.norm.weight"]))


def test_an_untrained_model_predicts_at_chance(twin: ModelHandle, smollm2: ModelHandle) -> None:
    nll = float(token_nll(twin, encode(twin, TEXT, 64).token_ids).mean())
    chance = float(np.log(twin.text_config.vocab_size))
    assert abs(nll - chance) < 1.0 < chance - float(token_nll(smollm2, encode(smollm2, TEXT, 64).token_ids).mean())


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("smollm2-135m-moefied@untrained", "has no untrained twin"),
        ("@untrained", "has no untrained twin"),
        ("smollm2-135m-instruct@untrained@untrained", "has no untrained twin"),
        ("no-such/model@untrained", "no-such/model"),
    ],
)
def test_what_has_no_twin_says_so(name: str, words: str) -> None:
    with pytest.raises(LmscopeError, match=words):
        load(name)


def test_the_pages_show_the_twin(twin: ModelHandle) -> None:
    """Weight statistics of an untrained model: Gaussian entries (excess kurtosis 0) in every matrix and layer."""
    at = open_page("app_pages/7_Weight_distributions.py", model=TWIN, statistic="kurtosis")
    assert not at.exception and not at.error
    grid = plotly_array(chart(at, 1)["data"][0]["z"])
    assert np.nanmax(np.abs(grid)) < 0.1
    at = open_page("app_pages/4_Attention_sinks.py", model=TWIN, text=TEXT)
    assert not at.exception and not at.error
