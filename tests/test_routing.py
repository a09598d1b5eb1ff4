"""MoE routing on tiny randomly initialised models of every supported family (for tests only, never shown as real),
each saved to a folder and loaded through lmscope's own model path.

The experts each token reached are observed on the experts themselves (their inputs), not re-derived from the
router's formula, and compared with what the routing probe reports."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from probes import routing
from results.routing import DROPPED, LayerRouting
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.models import load
from tests.helpers import chart, cli, open_page, plotly_array, texts
from tests.tiny_moe import FAMILIES, save_folders

PAGE = "app_pages/10_Expert_routing.py"
TEXT = "Seven quick zebras jumped over one lazy brown dog near Paris yesterday"


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory, smollm2: ModelHandle) -> dict[str, Path]:
    """Every family, built from its config with seeded random weights, saved as a model folder."""
    return save_folders(smollm2.tokenizer, tmp_path_factory.mktemp)


@pytest.fixture(scope="module")
def tiny_models(tiny_folders: dict[str, Path]) -> dict[str, ModelHandle]:
    """Every family loaded through lmscope's model path, as a user's folder would be."""
    return {family: load(str(folder)) for family, folder in tiny_folders.items()}


def _rows_to_tokens(rows: torch.Tensor, hidden: torch.Tensor) -> list[int]:
    """The token index of each row, found by exact equality with the router's input rows."""
    where = {bytes(row.numpy().tobytes()): i for i, row in enumerate(hidden)}
    return [where[bytes(row.numpy().tobytes())] for row in rows]


def _observe_experts(handle: ModelHandle) -> tuple[list[dict[int, set[int]]], list]:
    """Hooks on the experts (not the routers' formulas): per router call, token -> the experts that processed it."""
    calls: list[dict[int, set[int]]] = []
    inputs: dict[int, torch.Tensor] = {}
    hooks = []

    def remember_input(router: nn.Module):
        def call(module, args):
            inputs[id(router)] = args[0].reshape(-1, args[0].shape[-1]).detach().clone()

        return call

    def fused(module, args, kwargs):  # (hidden_states, top_k_index, top_k_weights) into the fused experts
        index = (
            args[1]
            if len(args) > 1
            else next(v for v in kwargs.values() if isinstance(v, torch.Tensor) and not v.is_floating_point())
        )
        calls.append({t: set(row.tolist()) for t, row in enumerate(index)})

    def parallel(router: nn.Module):  # JetMoE: rows grouped by expert, with each expert's row count
        def call(module, args):
            rows, sizes = args
            tokens = _rows_to_tokens(rows, inputs[id(router)])
            experts = np.repeat(np.arange(len(sizes)), sizes)
            seen: dict[int, set[int]] = defaultdict(set)
            for token, expert in zip(tokens, experts, strict=True):
                seen[token].add(int(expert))
            calls.append(seen)

        return call

    def switch_expert(router: nn.Module, expert: int, seen: dict[int, set[int]]):
        def call(module, args):
            for token in _rows_to_tokens(args[0], inputs[id(router)]):
                seen[token].add(expert)

        return call

    for found in routing.routers(handle):
        router = found.module
        block = handle.model.get_submodule(found.name.rsplit(".", 1)[0])
        hooks.append(router.register_forward_pre_hook(remember_input(router)))
        if type(router).__name__ == "JetMoeTopKGating":
            hooks.append(block.input_linear.register_forward_pre_hook(parallel(router)))
        elif type(router).__name__ == "SwitchTransformersTop1Router":
            seen: dict[int, set[int]] = defaultdict(set)
            calls.append(seen)  # Switch routers fill their entry as the experts run
            for name, expert in block.experts.items():
                hooks.append(expert.register_forward_pre_hook(switch_expert(router, int(name.split("_")[1]), seen)))
        else:
            hooks.append(block.experts.register_forward_pre_hook(fused, with_kwargs=True))
    return calls, hooks


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_routing_equals_the_experts_the_model_uses(tiny_models: dict[str, ModelHandle], family: str) -> None:
    assert_routing_equals_the_experts_used(tiny_models[family])


def assert_routing_equals_the_experts_used(handle: ModelHandle) -> None:
    """The routing probe's experts of every token at every router are those the experts themselves received."""
    observed, hooks = _observe_experts(handle)
    try:
        result = routing.compute(handle, TEXT)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(result.layers) == len(observed) > 0
    n = len(result.token_ids)
    for layer, seen in zip(result.layers, observed, strict=True):
        assert layer.probs.shape == layer.logits.shape == (n, layer.n_experts)
        reported = [set(row[row != DROPPED].tolist()) for row in layer.experts]
        assert reported == [seen.get(t, set()) for t in range(n)], layer.label
        assert np.all(np.diff(layer.weights, axis=1) <= 0), "experts are listed best first"
        assert routing.balance(layer).load.sum() == pytest.approx(1.0)


def test_family_rules(tiny_models: dict[str, ModelHandle]) -> None:
    """Each family's scores become probabilities its own way; shared experts and attention experts are named."""
    results = {family: routing.compute(handle, TEXT) for family, handle in tiny_models.items()}
    for family, result in results.items():
        for layer in result.layers:
            if family == "deepseek_v3":
                assert layer.rule == "sigmoid"
                assert np.allclose(layer.probs, 1 / (1 + np.exp(-layer.logits)), atol=1e-6)
            else:
                assert layer.rule == "softmax"
                assert np.allclose(layer.probs.sum(1), 1.0, atol=1e-5)
    assert [layer.layer for layer in results["deepseek_v3"].layers] == [1], "layer 0 is dense (first_k_dense_replace)"
    assert {layer.n_shared for layer in results["deepseek_v2"].layers} == {2}
    qwen = results["qwen2_moe"].layers[0]  # its shared expert is two routed experts' worth (32 neurons against 16)
    assert (
        qwen.n_shared == 2 and qwen.shared_gate is not None and np.all((qwen.shared_gate > 0) & (qwen.shared_gate < 1))
    )
    assert {layer.kind for layer in results["jetmoe"].layers} == {"mlp", "attention"}
    switch = results["switch_transformers"]
    assert {label.split()[0] for label in (layer.label for layer in switch.layers)} == {"encoder", "decoder"}
    assert any((layer.experts == DROPPED).any() for layer in switch.layers), "capacity 4 < 13 tokens drops some"
    assert all(routing.balance(layer).dropped > 0 for layer in switch.layers)


def test_deepseek_v3_bias_steers_the_choice_not_the_weights(tiny_models: dict[str, ModelHandle]) -> None:
    layer = routing.compute(tiny_models["deepseek_v3"], TEXT).layers[0]
    chosen_by_affinity = np.argsort(-layer.probs, axis=1)[:, : layer.top_k]
    assert any(set(a) != set(b) for a, b in zip(chosen_by_affinity, layer.experts, strict=True))


def test_balance_statistics() -> None:
    n_experts, uniform = 4, np.tile(np.arange(4), 5)[:, None]
    layer = LayerRouting(
        layer=0,
        module="m",
        label="layer 0",
        kind="mlp",
        rule="softmax",
        n_shared=0,
        logits=np.zeros((20, n_experts), np.float32),
        probs=np.full((20, n_experts), 0.25, np.float32),
        experts=uniform,
        weights=np.ones((20, 1), np.float32),
        shared_gate=None,
    )
    even = routing.balance(layer)
    assert even.cv == pytest.approx(0) and even.entropy == pytest.approx(1) and even.aux_loss == pytest.approx(1)
    layer.experts = np.zeros((20, 1), dtype=np.int32)
    skewed = routing.balance(layer)
    assert (
        skewed.load.tolist() == [1, 0, 0, 0]
        and skewed.entropy == pytest.approx(0)
        and skewed.cv == pytest.approx(np.sqrt(3))
    )
    counts = routing.transitions(layer.experts, uniform, n_experts, n_experts)
    assert counts.sum() == 20 and counts[0].tolist() == [5, 5, 5, 5]


def test_corpus_routing_and_preferences(tiny_models: dict[str, ModelHandle], cache, smollm2: ModelHandle) -> None:
    handle = tiny_models["mixtral"]
    sentences = ["The cat sat on the mat.", "The dog ran in the park.", "A cat and a dog.", "The end."]
    corpus = routing.corpus_run(handle, sentences, cache).value
    assert corpus.experts.shape[:2] == (2, len(corpus.token_ids))
    single = routing.compute(handle, sentences[0])  # same tokens, one at a time
    first = slice(0, len(single.token_ids))
    positions = [
        i
        for i in range(len(corpus.token_ids) - len(single.token_ids) + 1)
        if np.array_equal(corpus.token_ids[i : i + len(single.token_ids)], single.token_ids)
    ]
    assert positions, "the sentence's tokens are in the corpus run"
    at = slice(positions[0], positions[0] + len(single.token_ids))
    for router, layer in enumerate(single.layers):
        assert np.array_equal(np.sort(corpus.experts[router, at], 1), np.sort(layer.experts[first], 1))
    prefs = routing.preferences(corpus, 0, lambda t: smollm2.tokenizer.decode([t]), min_count=2)
    assert len(prefs) == 4
    for expert, listed in enumerate(prefs):
        for p in listed:
            at_token = corpus.token_ids == p.token_id
            assert p.token == smollm2.tokenizer.decode([p.token_id])
            assert p.occurrences == at_token.sum() >= 2
            assert p.routed == (corpus.experts[0][at_token] == expert).any(1).sum() > 0
        smoothed = [(p.routed + 1) / (p.occurrences + 2) for p in listed]
        assert smoothed == sorted(smoothed, reverse=True)
    assert routing.corpus_run(handle, sentences, cache).hit
    load = routing.corpus_balance(corpus, 1).load
    assert load.sum() == pytest.approx(1.0)
    assert load.tolist() == pytest.approx(np.bincount(corpus.experts[1].ravel(), minlength=4) / corpus.experts[1].size)


def test_dense_model_is_refused_with_a_pointer_to_the_moes_built_here(smollm2: ModelHandle) -> None:
    with pytest.raises(LmscopeError, match="dense model.*smollm2-135m-moe\\).*smollm2-135m-moefied"):
        routing.routers(smollm2)


def test_router_out_of_range(tiny_models: dict[str, ModelHandle]) -> None:
    result = routing.compute(tiny_models["mixtral"], TEXT)
    with pytest.raises(LmscopeError, match="routers 0-1"):
        result.router(2)


def test_routing_page_on_an_moe_folder(tiny_folders: dict[str, Path], tiny_models: dict[str, ModelHandle]) -> None:
    at = open_page(PAGE, model=str(tiny_folders["qwen2_moe"]), text=TEXT, layer="1")
    assert not at.exception and not at.error, texts(at.error)
    expected = routing.compute(tiny_models["qwen2_moe"], TEXT).layers[1]
    heatmap = chart(at, 0)
    np.testing.assert_allclose(plotly_array(heatmap["data"][0]["z"]), expected.probs, rtol=1e-6)
    assert "2 shared expert" in heatmap["layout"]["title"]["subtitle"]["text"]  # two routed experts' worth
    top1 = heatmap["data"][1]
    assert plotly_array(top1["x"]).tolist() == expected.experts[:, 0].tolist()
    titles = [chart(at, i)["layout"]["title"]["text"] for i in range(len(at.get("plotly_chart")))]
    assert titles[1:] == [
        "Router confidence, layer 1",
        "Expert load, layer 1",
        "Expert load in every layer, over your text",
        "Routing flow over your text: top-1 expert in layer 0 → in layer 1",
    ]


def test_routing_page_bad_router_in_the_url(tiny_folders: dict[str, Path]) -> None:
    at = open_page(PAGE, model=str(tiny_folders["mixtral"]), text=TEXT, layer="7")
    assert not at.exception
    assert "layer=7 is out of range" in texts(at.warning)


@pytest.mark.parametrize(("button", "model"), [(0, "smollm2-135m-moe"), (1, "smollm2-135m-moefied")])
def test_routing_page_on_a_dense_model_offers_the_moes_built_here(button: int, model: str) -> None:
    at = open_page(PAGE, model="smollm2-135m-instruct", text=TEXT)
    assert not at.exception and "dense model" in texts(at.warning)
    at.button[button].click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.session_state["lm_model"] == model
    assert "Routing of layer" in chart(at, 0)["layout"]["title"]["text"]


@pytest.mark.slow  # loads a model
def test_cli_moe(tiny_folders: dict[str, Path], tiny_models: dict[str, ModelHandle]) -> None:
    done = cli("moe", "--model", str(tiny_folders["deepseek_v3"]), "--text", TEXT)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = routing.compute(tiny_models["deepseek_v3"], TEXT)
    assert out["token_ids"] == expected.token_ids.tolist()
    assert [layer["layer"] for layer in out["layers"]] == [1]
    layer = out["layers"][0]
    assert (layer["n_experts"], layer["top_k"], layer["rule"]) == (8, 2, "sigmoid")
    assert layer["topk_experts"] == expected.layers[0].experts.tolist()
    assert np.array(layer["probs"]).shape == (len(out["token_ids"]), 8)
    assert sum(layer["load"]) == pytest.approx(1.0)


@pytest.mark.slow  # loads a model
def test_cli_moe_errors(tiny_folders: dict[str, Path]) -> None:
    dense = cli("moe", "--model", "smollm2-135m-instruct", "--text", TEXT)
    assert dense.returncode == 1 and "dense model" in dense.stderr and "Traceback" not in dense.stderr
    setting = cli("moe", "--model", str(tiny_folders["mixtral"]), "--text", TEXT, "--k", "2")
    assert setting.returncode == 1 and "derived MoE" in setting.stderr


def test_routing_page_corpus_views(tiny_folders: dict[str, Path]) -> None:
    at = open_page(PAGE, model=str(tiny_folders["olmoe"]), text=TEXT)
    at.toggle(key="routing_corpus").set_value(True).run()
    assert not at.exception and not at.error, texts(at.error)
    titles = [chart(at, i)["layout"]["title"]["text"] for i in range(len(at.get("plotly_chart")))]
    assert "Expert load in every layer, over the corpus" in titles
    assert any(t.startswith("Routing flow over the corpus") for t in titles)
    table = at.dataframe[0].value
    assert list(table["expert"]) == [0, 1, 2, 3]


@pytest.mark.slow  # routes the corpus and computes the loss at every k
def test_routing_page_derived_moe_corpus_and_loss(tmp_path: Path) -> None:
    at = open_page(PAGE, model="smollm2-135m-moefied", text="A short text.", experts="8", k="2", layer="3")
    at.toggle(key="routing_corpus").set_value(True).run()
    at.toggle(key="routing_loss").set_value(True).run()
    assert not at.exception and not at.error, texts(at.error)
    titles = [chart(at, i)["layout"]["title"]["text"] for i in range(len(at.get("plotly_chart")))]
    assert titles[0] == "Routing of layer 3: top-2 of 8 experts per token"
    assert "Expert load in every layer, over the corpus" in titles
    assert titles[-1] == "Loss against the number of active experts"
    assert len(at.dataframe[0].value) == 8


def test_routing_page_derived_moe_with_k_above_e() -> None:
    at = open_page(PAGE, model="smollm2-135m-moefied", text=TEXT, experts="8", k="9")
    assert not at.exception
    assert "k = 9 is more than the E = 8" in texts(at.error)
    assert not at.get("plotly_chart")
