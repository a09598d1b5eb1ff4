"""The trained MoE: SmolLM2 converted into transformers' Mixtral (or Qwen2-MoE, with a shared expert), trained by
distillation, stored and read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import MixtralForCausalLM, Qwen2MoeForCausalLM

from probes import moe_equation, moe_loss, moe_trained, moe_trained_store, moe_update, routing
from probes.moe_store import stored_or_built
from probes.nll import token_nll
from probes.text import encode
from results.moe_trained import Recipe, TrainingLog
from runtime.builtin import TRAINED_MOE
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.hooks import observing
from runtime.models import load_built
from runtime.settings import settings
from tests.helpers import cli
from tests.test_routing import assert_routing_equals_the_experts_used

pytestmark = pytest.mark.slow  # trains (a short recipe, about a minute a build): not in `make check`

SHORT = Recipe(experts=8, top_k=2, layer_steps=4, steps=3, tokens=1024, seed=0, shared=0)
SHARED = Recipe(experts=8, top_k=2, layer_steps=4, steps=3, tokens=1024, seed=0, shared=1)
TEXT = "The committee met on Tuesday to discuss the budget for the new library."


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store of its own, holding the prepared store's MoEfication (so that only the training runs)."""
    folder = tmp_path_factory.mktemp("store")
    (folder / "derived").mkdir()
    (folder / "derived" / "smollm2-135m-moefied").symlink_to(
        settings().model_store / "derived" / "smollm2-135m-moefied"
    )
    return folder


@pytest.fixture(scope="module")
def short(store: Path, smollm2: ModelHandle) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMSCOPE_MODEL_STORE", str(store))
        return moe_trained_store.stored_or_trained(smollm2, SHORT)


@pytest.fixture(scope="module")
def shared_short(store: Path, smollm2: ModelHandle) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMSCOPE_MODEL_STORE", str(store))
        return moe_trained_store.stored_or_trained(smollm2, SHARED)


@pytest.fixture(scope="module", params=["mixtral", "shared"])
def trained(request: pytest.FixtureRequest) -> ModelHandle:
    """The short build as a Mixtral, then with one shared expert as a Qwen2-MoE."""
    folder = request.getfixturevalue("short" if request.param == "mixtral" else "shared_short")
    return load_built(TRAINED_MOE.name, folder, "a short training")


def test_distillation_targets_are_the_dense_models_next_token_distributions(smollm2: ModelHandle) -> None:
    """The targets come from the dense model's last hidden states, computed once per sequence: its output layer on
    them gives the distributions the whole model gives, for any subset of the sequences."""
    ids = moe_trained.training_ids(smollm2, 6 * moe_trained.SEQUENCE)
    hidden = moe_trained.dense_hidden(smollm2, ids)
    assert hidden.shape == (6, moe_trained.SEQUENCE, smollm2.model.config.hidden_size)
    rows = torch.tensor([4, 1, 4])
    with torch.inference_mode():
        whole = smollm2.model(input_ids=torch.from_numpy(ids[rows.numpy()])).logits.float().log_softmax(-1)
    assert torch.allclose(moe_trained.dense_log_probs(smollm2, hidden[rows]), whole, atol=1e-5)


@pytest.mark.parametrize("shared", [0, 2])
def test_converted_with_every_expert_on_is_the_dense_model(smollm2: ModelHandle, shared: int) -> None:
    moefication, _ = stored_or_built(smollm2, None)
    recipe = Recipe(experts=16, top_k=16, layer_steps=0, steps=0, shared=shared)
    split, chosen = moe_trained.shared_split(
        smollm2, moefication.assignments[16], recipe, moe_trained.training_ids(smollm2, 1024)
    )
    assert chosen.shape == (smollm2.n_layers, shared)
    moe = moe_trained.convert(smollm2, split, recipe, chosen)
    assert type(moe).__name__ == ("Qwen2MoeForCausalLM" if shared else "MixtralForCausalLM")
    assert moe_trained.routed_count(moe.config) == 16 - shared and routing.shared_count(moe.config) == shared
    for mlp in moe_trained.moe_blocks(moe):  # equal gates: each expert's output counts once
        torch.nn.init.zeros_(mlp.get_parameter("gate.weight"))
    held_out = moe_trained.held_out_ids(smollm2)[:6]
    dense = moe_trained.mean_nll(smollm2.model, held_out)
    assert moe_trained.mean_nll(moe, held_out) == pytest.approx(dense, abs=1e-4)
    # One padded batch scores each sentence as it scores alone.
    alone = [moe_trained.mean_nll(smollm2.model, [ids]) for ids in held_out]
    lengths = [len(ids) - 1 for ids in held_out]
    assert dense == pytest.approx(np.average(alone, weights=lengths), abs=1e-5)
    # Block by block on the same hidden states, each MoE MLP is the dense MLP (k = E, equal gates, no training).
    errors = moe_trained.fit_layers(smollm2, moe, moe_trained.training_ids(smollm2, 512), recipe, lambda: None)
    assert errors.shape == (smollm2.n_layers,) and errors.max() < 1e-9


def test_the_stored_model_loads_with_mixtral_and_its_log_is_complete(short: Path, smollm2: ModelHandle) -> None:
    log = moe_trained_store.training_log(short)
    assert log.recipe == SHORT and log.base_fingerprint == smollm2.fingerprint
    assert log.kl.shape == log.balance.shape == (SHORT.steps,) and np.all(log.kl > 0)
    assert log.layer_error.shape == (smollm2.n_layers,) and np.all(log.layer_error > 0)
    assert list(log.costs.ks) == [1, 2, 4, 8]
    assert log.untrained_nll.shape == log.trained_nll.shape == (4,)
    at_k = list(log.costs.ks).index(SHORT.top_k)
    assert log.trained_nll[at_k] < log.untrained_nll[at_k]  # even a few steps beat the initialised router
    assert log.costs.moe_active[-1] == pytest.approx(log.costs.dense_active, rel=0.01)  # k = E: every neuron
    assert np.all(np.diff(log.costs.moe_active) > 0) and log.costs.moe_active[0] < 0.6 * log.costs.dense_active
    # The curve: converted, layers fitted, then every EVAL_EVERY steps and the last; its end is the trained model.
    last = [SHORT.steps] if SHORT.steps % moe_trained.EVAL_EVERY else []
    assert list(log.curve_steps) == [
        -1,
        0,
        *range(moe_trained.EVAL_EVERY, SHORT.steps + 1, moe_trained.EVAL_EVERY),
        *last,
    ]
    assert np.all(np.diff(log.curve_seconds) > 0) and log.curve_seconds[-1] < log.seconds
    assert log.curve_stages() == ["converted", "layers fitted", f"step {SHORT.steps}"]
    assert log.curve_nll[0] == log.untrained_nll[at_k]  # the same measurements, not taken twice
    # The model kept is the converted one plus its update (the experts' at rank 32), as its file rebuilds it; the
    # curve ends before the rank cut, the loss at each k is the kept model's.
    update = moe_update.read(short)
    assert (update.recipe, update.base, update.version) == (SHORT, smollm2.fingerprint, moe_trained.VERSION)
    assert any(name.endswith(".left") for name in update.tensors)
    stored = MixtralForCausalLM.from_pretrained(short).eval()
    rebuilt = moe_trained_store.rebuilt(smollm2, update).state_dict()
    assert all(torch.equal(value, rebuilt[name]) for name, value in stored.state_dict().items())
    held_out = moe_trained.held_out_ids(smollm2)
    assert moe_trained.mean_nll(stored, held_out) == pytest.approx(log.trained_nll[at_k], abs=1e-5)
    assert log.curve_nll[-1] != log.trained_nll[at_k]
    assert log.untrained_cv.shape == log.trained_cv.shape == (smollm2.n_layers,) and np.all(log.trained_cv >= 0)
    assert TrainingLog.from_json(log.to_json()).to_json() == log.to_json()
    model = MixtralForCausalLM.from_pretrained(short).eval()
    assert model.config.num_local_experts == 8 and model.config.num_experts_per_tok == 2
    ids = torch.tensor([encode(smollm2, TEXT, 100).token_ids.tolist()])
    stored = load_file(str(short / "model.safetensors"))  # in Mixtral's checkpoint layout
    router = stored["model.layers.3.block_sparse_moe.gate.weight"]
    assert torch.equal(model.get_parameter("model.layers.3.mlp.gate.weight"), router)
    with torch.inference_mode():
        assert torch.isfinite(model(input_ids=ids).logits).all()


def test_the_shared_build_loads_with_qwen2_moe(shared_short: Path, smollm2: ModelHandle) -> None:
    log = moe_trained_store.training_log(shared_short)
    assert log.recipe == SHARED and list(log.costs.ks) == [2, 3, 5, 8]  # k counts the shared expert
    assert log.costs.moe_active[-1] == pytest.approx(log.costs.dense_active, rel=0.01)  # k = E: every neuron
    model = Qwen2MoeForCausalLM.from_pretrained(shared_short).eval()
    config = model.config
    assert (config.num_experts, config.num_experts_per_tok, config.norm_topk_prob) == (7, 1, True)
    assert config.shared_expert_intermediate_size == config.moe_intermediate_size == 1536 // 8
    # The shared expert holds the 192 neurons that carry the most of the dense MLP's output energy on the first
    # training tokens (their activations read here at the down projection's input), the massive activation's among
    # them; the routed experts split the others equally.
    update = moe_update.read(shared_short)
    assert np.array_equal(update.shared, np.full((smollm2.n_layers, 1), 7))
    assert all(np.array_equal(np.bincount(row, minlength=8), np.full(8, 192)) for row in update.assignment)
    ids = moe_trained.training_ids(smollm2, SHARED.tokens)[: moe_trained.LOCAL_BATCH // moe_trained.SEQUENCE]
    down = smollm2.model.get_submodule("model.layers.11.mlp.down_proj")
    seen: list[torch.Tensor] = []
    with torch.inference_mode(), observing(pre={down: lambda m, inputs: seen.append(inputs[0])}):
        smollm2.model(input_ids=torch.from_numpy(ids))
    a, columns = seen[0].reshape(-1, seen[0].shape[-1]).float(), down.weight.detach().float().norm(dim=0)
    energy = a.pow(2).mean(0) * columns.pow(2)
    shared = np.flatnonzero(update.assignment[11] == 7)
    assert set(shared) == set(energy.topk(192).indices.tolist())
    assert int((a[0] * columns).abs().argmax()) in shared  # the first token's largest contribution
    converted = moe_trained_store.converted(smollm2, update).get_submodule("model.layers.11.mlp.shared_expert")
    dense_gate = smollm2.model.get_parameter("model.layers.11.mlp.gate_proj.weight")
    assert torch.equal(converted.get_parameter("gate_proj.weight"), dense_gate[shared])
    with torch.inference_mode():
        assert torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3, 4]])).logits).all()


def test_exporting_trains_again_and_reproduces_the_stored_update(short: Path, store: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    done = cli(
        "moe-train", "--experts", "8", "--k", "2", "--shared", "0", "--layer-steps", "4", "--steps", "3",
        "--tokens", "1024",
        "--export", str(out), env={"LMSCOPE_MODEL_STORE": str(store)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["folder"] == str(out) and sorted(p.name for p in out.iterdir()) == [
        moe_trained_store.LOG_NAME,
        moe_update.FILE_NAME,
    ]
    fresh, stored = moe_update.read(out), moe_update.read(short)
    assert (fresh.recipe, fresh.base, fresh.version) == (stored.recipe, stored.base, stored.version)
    assert np.array_equal(fresh.assignment, stored.assignment) and fresh.tensors.keys() == stored.tensors.keys()
    for name in (n for n in stored.tensors if not n.endswith(".right")):
        want, got = stored.tensors[name].float(), fresh.tensors[name].float()
        if name.endswith(".left"):  # compare the updates, not their factors
            right = name.removesuffix(".left") + ".right"
            want, got = want @ stored.tensors[right].float(), got @ fresh.tensors[right].float()
        assert torch.allclose(got, want, atol=2e-3 * float(want.abs().max())), name
    log = moe_trained_store.training_log(short)
    assert np.allclose(moe_trained_store.training_log(out).kl, log.kl, atol=1e-5)


def test_a_second_request_reads_the_store(short: Path, smollm2: ModelHandle, store: Path, monkeypatch) -> None:
    monkeypatch.setenv("LMSCOPE_MODEL_STORE", str(store))
    monkeypatch.setattr(moe_trained_store, "train", lambda *a, **k: pytest.fail("trained again"))
    assert moe_trained_store.stored_or_trained(smollm2, SHORT) == short


def test_recipes_outside_the_limits_are_refused() -> None:
    for recipe, message in (
        (Recipe(experts=12), "MoEfication split"),
        (Recipe(top_k=17), "k = 17"),
        (Recipe(steps=10**6), "Distillation steps"),
        (Recipe(layer_steps=-1), "Layer steps"),
        (Recipe(tokens=10), "Training tokens"),
        (Recipe(balance=-1.0), "balancing loss"),
        (Recipe(top_k=2, shared=2), "Shared experts must be from 0 to k − 1 = 1"),
        (Recipe(rank=-1), "update's rank must be from 0"),
    ):
        with pytest.raises(LmscopeError, match=message):
            recipe.check()


def test_routing_equals_the_experts_the_trained_model_uses(trained: ModelHandle) -> None:
    assert_routing_equals_the_experts_used(trained)
    layers = routing.compute(trained, TEXT).layers
    assert {layer.n_shared for layer in layers} == {routing.shared_count(trained.config)}


def test_routing_equals_the_experts_the_built_in_moe_uses(trained_moe: ModelHandle) -> None:
    """The default build (two shared experts, the top 2 of 14 routed) through the same family test."""
    assert_routing_equals_the_experts_used(trained_moe)
    assert (routing.shared_count(trained_moe.config), moe_trained.routed_count(trained_moe.config)) == (2, 14)


def test_the_builds_load_measure_is_the_routing_pages(trained: ModelHandle, cache: ResultCache) -> None:
    result = routing.run(trained, TEXT, cache, None).value
    ids = result.token_ids.tolist()
    page = [routing.balance(result.router(i)).cv for i in range(trained.n_layers)]
    assert np.allclose(moe_trained.load_cv(trained.model, [ids]), page, atol=1e-12)
    # Padding does not count: a prefix routes its tokens as the whole text did (causal), and adds just those.
    experts = [result.router(i).experts for i in range(trained.n_layers)]
    n_experts = moe_trained.routed_count(trained.config)
    padded = [routing.expert_balance(np.concatenate([e, e[:5]]), n_experts).cv for e in experts]
    assert np.allclose(moe_trained.load_cv(trained.model, [ids, ids[:5]]), padded, atol=1e-12)


def test_the_equation_adds_up_to_what_the_block_returned(trained: ModelHandle, cache: ResultCache) -> None:
    result = routing.run(trained, TEXT, cache, None).value
    for position in (0, 5):
        equation = moe_equation.run(trained, TEXT, 7, position, cache).value
        assert equation.mismatch < 1e-5
        assert equation.gates.sum() == pytest.approx(1.0, abs=1e-6) and np.all(np.diff(equation.gates) <= 0)
        assert list(equation.experts) == list(result.router(7).experts[position])
        assert equation.probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert equation.token == result.tokens[position]
        if routing.shared_count(trained.config):  # the shared expert's term, weighted by σ(x·w_s)
            assert 0 < equation.shared_gate < 1 and equation.shared_norm > 0
        else:
            assert np.isnan(equation.shared_gate) and np.isnan(equation.shared_norm)
    with pytest.raises(LmscopeError, match="token position"):
        moe_equation.run(trained, TEXT, 7, 999, cache)


def test_loss_against_k_uses_the_family_rule(trained: ModelHandle, cache: ResultCache) -> None:
    loss = moe_loss.trained_loss_by_k(trained, TEXT, cache).value
    values = loss.nll[moe_loss.TRAINED_ROUTER][8]
    shared = routing.shared_count(trained.config)
    assert list(loss.ks[8]) == ([2, 3, 5, 8] if shared else [1, 2, 4, 8]) and np.isnan(loss.dense_nll)
    # At the model's own k (2, the shared expert included), the loss is the model's loss as it runs unaltered.
    own = list(loss.ks[8]).index(2)
    assert values[own] == pytest.approx(float(token_nll(trained, loss.token_ids).mean()), abs=1e-6)
    assert len(set(np.round(values, 6))) == len(values)
    for outside in (shared, 9):  # the router must choose one expert at least, and at most all
        with pytest.raises(LmscopeError, match=f"k = {outside}: choose from {shared + 1} to 8"):
            with moe_trained.at_k(trained.model, outside):
                pass


def test_equation_and_loss_refuse_a_model_without_mixtral_experts(smollm2: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="no Mixtral-style experts"):
        moe_equation.run(smollm2, TEXT, 0, 0, cache)
    with pytest.raises(LmscopeError, match="no Mixtral-style experts"):
        moe_loss.trained_loss_by_k(smollm2, TEXT, cache)


def test_cli_moe_train(short: Path, shared_short: Path, store: Path) -> None:
    done = cli(
        "moe-train", "--experts", "8", "--k", "2", "--shared", "0", "--layer-steps", "4", "--steps", "3",
        "--tokens", "1024",
        env={"LMSCOPE_MODEL_STORE": str(store)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["folder"] == str(short) and out["ks"] == [1, 2, 4, 8] and len(out["kl"]) == 3
    assert out["costs"][0]["model"] == "dense" and len(out["costs"]) == 5
    shared = cli(
        "moe-train", "--experts", "8", "--k", "2", "--shared", "1", "--layer-steps", "4", "--steps", "3",
        "--tokens", "1024", env={"LMSCOPE_MODEL_STORE": str(store)},
    )  # fmt: skip
    assert shared.returncode == 0, shared.stderr
    assert json.loads(shared.stdout)["folder"] == str(shared_short) and json.loads(shared.stdout)["ks"] == [2, 3, 5, 8]
    bad = cli("moe-train", "--experts", "12", env={"LMSCOPE_MODEL_STORE": str(store)})
    assert bad.returncode == 1 and "MoEfication split" in bad.stderr
    heavy = cli("moe-train", "--balance", "11", env={"LMSCOPE_MODEL_STORE": str(store)})
    assert heavy.returncode == 1 and "balancing loss's weight must be from 0 to 10" in heavy.stderr


def test_the_built_in_moe_keeps_the_first_tokens_massive_activation(
    smollm2: ModelHandle, trained_moe: ModelHandle
) -> None:
    """SmolLM2's layer 11 gives the first token a hidden state thousands of times larger than any other token's
    (the attention sink's massive activation); the trained MoE must keep the neurons that make it where that token
    reaches them (the default build: in its shared expert), or the model loses its sink (version 4 of the build
    routed that token elsewhere and peaked at 1% of the dense value)."""
    ids = smollm2.tokenizer("The lecture shows what happens inside a language model.", return_tensors="pt")
    with torch.inference_mode():
        dense, moe = (
            torch.stack(h.model(**ids, output_hidden_states=True).hidden_states)[:, 0].abs().amax(-1)
            for h in (smollm2, trained_moe)
        )  # (layers + 1, tokens): the largest |h| of each token after each block
    layer = int(dense[:, 0].argmax())  # where the dense model's first token peaks
    first, others = dense[layer, 0], dense[layer, 1:].max()
    assert first > 100 * others, "the dense model's massive activation"
    assert moe[layer, 0] > 0.5 * first, "kept by the MoE"
    assert moe[layer, 1:].max() < 2 * others
