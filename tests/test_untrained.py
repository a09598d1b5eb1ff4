"""Untrained twins: every model's architecture, config and tokenizer with the weights its architecture is
initialised with, seeded, built offline, fingerprinted apart, and usable wherever a model is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from probes import activations, attention, sinks
from probes.nll import token_nll
from probes.text import encode
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.initialised import initial_weights, seeded_model
from runtime.models import info, load
from runtime.untrained import TWIN_SEED
from tests.helpers import chart, open_page, plotly_array
from tests.tiny_moe import FAMILIES

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
    configs = [{k: v for k, v in h.model.config.to_dict().items() if k != "_name_or_path"} for h in (twin, smollm2)]
    assert configs[0] == configs[1]
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


@pytest.mark.slow  # builds or runs pages on a twin
def test_sinks_and_massive_activations_come_from_training(
    twin: ModelHandle, smollm2: ModelHandle, tmp_path: Path
) -> None:
    """On the same text the trained model's queries put half their weight on the first token and one feature is
    thousands of times the median; its twin attends about evenly and has no outlier (measured 0.55 against 0.13,
    and 12,000 against 10, times the median)."""
    text = "Every autumn the village holds a market in the square. Farmers bring apples, pumpkins and honey."
    found = {}
    for handle in (smollm2, twin):
        cache = ResultCache(tmp_path / handle.fingerprint)
        profile = sinks.sink_profile(attention.run(handle, text, cache).value)
        peaks = activations.run(handle, text, cache).value
        found[handle.name] = (
            float(profile.sink_share[2:].mean()) / profile.uniform_share,
            float((peaks.max_abs / peaks.median_abs).max()),
        )
    (sink, massive), (twin_sink, twin_massive) = found[smollm2.name], found[TWIN]
    assert sink > 3 and massive > 1000
    assert twin_sink < 1.2 and twin_massive < 100


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


@pytest.mark.slow  # builds or runs pages on a twin
def test_the_pages_show_the_twin(twin: ModelHandle) -> None:
    """Weight statistics of an untrained model: Gaussian entries (excess kurtosis 0) in every matrix and layer."""
    at = open_page("app_pages/7_Weight_distributions.py", model=TWIN, statistic="kurtosis")
    assert not at.exception and not at.error
    grid = plotly_array(chart(at, 1)["data"][0]["z"])
    assert np.nanmax(np.abs(grid)) < 0.1
    at = open_page("app_pages/4_Attention_sinks.py", model=TWIN, text=TEXT)
    assert not at.exception and not at.error


@contextmanager
def another_session_drawing(size: int) -> Iterator[None]:
    """Within the block, another thread builds modules of `size` x `size` without pause, as another session building
    a model does: each draws from torch's global generator."""
    stop = threading.Event()

    def draw() -> None:
        while not stop.is_set():
            torch.nn.Linear(size, size)

    with ThreadPoolExecutor(1) as pool:
        drawing = pool.submit(draw)
        try:
            yield
        finally:
            stop.set()
        drawing.result()


@pytest.mark.slow  # builds or runs pages on a twin
def test_a_twin_built_while_other_threads_draw_random_numbers_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session building modules (which draws from torch's global generator) while a twin is built first
    time changes nothing: the twin is drawn in a process of its own. MiniLM: its store needs no GGUF conversion."""
    name = "all-minilm-l6-v2@untrained"
    monkeypatch.setenv("LMSCOPE_MODEL_STORE", str(tmp_path / "quiet"))
    quiet = load(name)
    monkeypatch.setenv("LMSCOPE_MODEL_STORE", str(tmp_path / "busy"))
    with another_session_drawing(384):
        busy = load(name)
    assert (tmp_path / "busy").is_dir() and quiet.fingerprint == busy.fingerprint
    expected = quiet.model.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in busy.model.state_dict().items())


def test_initial_weights_are_the_seeded_family_initialisation_while_other_threads_draw() -> None:
    """runtime.initialised draws in a child process: what it hands back is exactly what transformers initialises
    with the seed, whatever another session draws from torch's global generator meanwhile (the trained MoE's
    routers start from it)."""
    config = transformers.MixtralConfig(**FAMILIES["mixtral"][1], architectures=["MixtralForCausalLM"])
    with another_session_drawing(64):
        drawn = initial_weights(config, 7, torch.float32, ".mlp.gate.weight")
    expected = {k: v for k, v in seeded_model(config, 7, torch.float32).state_dict().items() if k in drawn}
    assert sorted(drawn) == [f"model.layers.{i}.mlp.gate.weight" for i in range(2)] == sorted(expected)
    assert all(torch.equal(drawn[k], expected[k]) for k in drawn)
