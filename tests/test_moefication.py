"""The MoEfied SmolLM2 (probes.moefication), as `make models` built it, read from a private copy of its stored file:
exact at k = E, balanced experts, routers that pick the top k of scores checked against a direct computation from the
dense MLP's own modules, its loss against k, the stored file reused or rebuilt, and the parameter list kept."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from probes import corpus, moe_loss, moe_state, moe_store, moefication
from probes.moe_modules import MoefiedMLP, MoefiedRouter
from probes.moe_state import routed
from probes.nll import token_nll
from probes.residual import blocks
from probes.text import encode
from results.moefication import EXPERT_COUNTS, ROUTERS, Moefication, Setting
from runtime.builtin import DERIVED
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.models import info, load
from tests.helpers import direct

pytestmark = pytest.mark.slow  # scores the derived MoE at every k

TEXT = "The quick brown fox jumps over the lazy dog. Then it ran home.\nAnd the dog slept."
# The first corpus sentences are never used by the build, so the loss on them is out of sample.
LOSS_TEXT = " ".join(corpus.sentences()[:10])


@pytest.fixture(scope="module")
def store(smollm2: ModelHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private copy of the model store's MoEfication (built there once, by `make models` or here) for this
    module's tests (the patch ends with them), so that they never touch the operator's model store."""
    path = tmp_path_factory.mktemp("derived") / moe_store.FILE_NAME
    path.write_bytes(moe_store.stored_or_built(smollm2, None)[1])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(moe_store, "store_path", lambda dtype: path)
        yield path


@pytest.fixture(scope="module")
def moefied(store: Path) -> ModelHandle:
    """The derived model through the one loader, from this module's store."""
    return load(moefication.DERIVED_NAME)


@pytest.fixture(scope="module")
def stored(moefied: ModelHandle, smollm2: ModelHandle, store: Path) -> Moefication:
    found = moe_store.read_stored(smollm2, store)
    assert found is not None
    return found[0]


def _mlps(handle: ModelHandle) -> list[MoefiedMLP]:
    return [block.mlp for block in blocks(handle)]


def test_the_derived_model_is_listed_and_fingerprinted_apart(moefied: ModelHandle, smollm2: ModelHandle) -> None:
    summary = info(moefied)
    assert summary.name == moefication.DERIVED_NAME and summary.title == DERIVED[moefication.DERIVED_NAME].title
    assert summary.source.startswith("derived: MoEfication of smollm2-135m-instruct")
    assert moefied.fingerprint != smollm2.fingerprint
    assert all(isinstance(m, MoefiedMLP) for m in _mlps(moefied))
    assert all(isinstance(m.router, MoefiedRouter) for m in _mlps(moefied))


@pytest.mark.parametrize("router", ROUTERS)
def test_all_experts_give_the_dense_logits_exactly(moefied: ModelHandle, smollm2: ModelHandle, router: str) -> None:
    ids = encode(smollm2, TEXT, 4096).token_ids
    dense = direct(smollm2, ids).logits
    for experts in EXPERT_COUNTS:
        with routed(Setting(experts, experts, router)):
            assert torch.equal(direct(moefied, ids).logits, dense)


def test_assignments_are_balanced_partitions(moefied: ModelHandle, stored: Moefication, store: Path) -> None:
    on_disk = load_file(store)
    intermediate = moefied.text_config.intermediate_size
    for experts in EXPERT_COUNTS:
        assert np.array_equal(on_disk[f"assignments.{experts}"], stored.assignments[experts])
        for layer, mlp in enumerate(_mlps(moefied)):
            assignment = mlp.assignment(experts).numpy()
            assert np.array_equal(assignment, stored.assignments[experts][layer])
            assert assignment.shape == (intermediate,)  # every neuron in exactly one expert ...
            assert assignment.min() >= 0 and assignment.max() < experts
            sizes = np.bincount(assignment, minlength=experts)
            assert (sizes == intermediate // experts).all()  # ... and all experts the same size


def _record(handle: ModelHandle, token_ids: np.ndarray) -> list[dict]:
    """Per layer, from hooks: the MLP input, a = act(gate x) * up x from the original modules' outputs, and
    what the router returned, with its n_experts and top_k at the time of the call."""
    records = [{} for _ in range(handle.n_layers)]
    removers = []
    for layer, mlp in enumerate(_mlps(handle)):
        seen = records[layer]

        def on_input(module, args, seen=seen) -> None:
            seen["x"] = args[0].reshape(-1, args[0].shape[-1]).clone()

        def on_gate(module, args, output, seen=seen) -> None:
            seen["gate"] = output.reshape(-1, output.shape[-1]).clone()

        def on_up(module, args, output, seen=seen) -> None:
            seen["up"] = output.reshape(-1, output.shape[-1]).clone()

        def on_route(module, args, output, seen=seen) -> None:
            seen["scores"], seen["weights"], seen["experts"] = (t.clone() for t in output)
            seen["n_experts"], seen["top_k"] = module.n_experts, module.top_k

        removers += [
            mlp.register_forward_pre_hook(on_input),
            mlp.gate_proj.register_forward_hook(on_gate),
            mlp.up_proj.register_forward_hook(on_up),
            mlp.router.register_forward_hook(on_route),
        ]
    try:
        direct(handle, token_ids)
    finally:
        for remover in removers:
            remover.remove()
    return records


def _direct_norms(a: torch.Tensor, down: torch.Tensor, assignment: np.ndarray, experts: int) -> torch.Tensor:
    """||W_down[:, S_e] a_{S_e}|| expert by expert, the plain way."""
    columns = []
    for expert in range(experts):
        members = torch.as_tensor(np.flatnonzero(assignment == expert))
        columns.append((a[:, members].double() @ down[:, members].double().T).norm(dim=-1))
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize("setting", [Setting(16, 4, "fitted"), Setting(8, 3, "oracle"), Setting(32, 1, "oracle")])
def test_routers_pick_the_top_k_of_their_scores(moefied: ModelHandle, stored: Moefication, setting: Setting) -> None:
    ids = encode(moefied, TEXT, 4096).token_ids
    with routed(setting):
        records = _record(moefied, ids)
    for layer, seen in enumerate(records):
        scores, weights, experts = seen["scores"], seen["weights"], seen["experts"]
        assert (seen["n_experts"], seen["top_k"]) == (setting.experts, setting.top_k)
        assert scores.shape == (len(ids), setting.experts) and scores.dtype == torch.float32
        assert experts.shape == (len(ids), setting.top_k) and experts.dtype == torch.int64
        assert torch.equal(weights, torch.ones(len(ids), setting.top_k))
        chosen = scores.gather(1, experts)
        assert (chosen[:, :-1] >= chosen[:, 1:]).all()  # best first
        others = scores.scatter(1, experts, float("-inf"))
        assert (chosen[:, -1] >= others.max(dim=1).values).all()  # no expert left out scores higher
        if setting.router == "fitted":
            weight = torch.as_tensor(stored.router_weight[setting.experts][layer])
            bias = torch.as_tensor(stored.router_bias[setting.experts][layer])
            torch.testing.assert_close(scores, seen["x"] @ weight.T + bias, rtol=1e-4, atol=1e-4)
        else:
            a = torch.nn.functional.silu(seen["gate"]) * seen["up"]
            down = _mlps(moefied)[layer].down_proj.weight
            expected = _direct_norms(a, down, stored.assignments[setting.experts][layer], setting.experts)
            torch.testing.assert_close(scores.double(), expected, rtol=1e-4, atol=1e-5)


def test_a_batch_is_routed_token_by_token_batch_major(moefied: ModelHandle) -> None:
    first, second = (encode(moefied, s, 4096).token_ids for s in ("The cat sat on the mat.", "A dog ran in the park."))
    assert len(first) == len(second)
    router = _mlps(moefied)[5].router
    seen = []
    remover = router.register_forward_hook(lambda module, args, output: seen.append(output[0].clone()))
    try:
        with routed(Setting(16, 4, "oracle")):
            direct(moefied, first)
            direct(moefied, second)
            with torch.inference_mode():
                moefied.model(input_ids=torch.as_tensor(np.stack([first, second])))
    finally:
        remover.remove()
    single_first, single_second, batched = seen
    assert batched.shape == (2 * len(first), 16)
    torch.testing.assert_close(batched[: len(first)], single_first, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batched[len(first) :], single_second, rtol=1e-4, atol=1e-5)


def test_loss_against_k(moefied: ModelHandle, smollm2: ModelHandle, cache: ResultCache) -> None:
    result = moe_loss.loss_by_k(moefied, LOSS_TEXT, cache)
    loss = result.value
    assert not result.hit and moe_loss.loss_by_k(moefied, LOSS_TEXT, cache).hit
    assert loss.dense_nll == float(token_nll(smollm2, loss.token_ids).mean())
    for experts in EXPERT_COUNTS:
        assert loss.ks[experts].tolist() == [2**i for i in range(int(np.log2(experts)) + 1)]
        for router in ROUTERS:
            nll = loss.nll[router][experts]
            assert nll[-1] == loss.dense_nll  # k = E is the dense model
            assert nll[0] > loss.dense_nll + 1.0  # one expert of E loses a lot (seen: +5 nats and more)
        # The oracle keeps the experts with the largest outputs; on this text it was never worse than the
        # fitted router at any k (a greedy per-layer choice, so not a theorem; observed, not assumed).
        assert (loss.nll["oracle"][experts] <= loss.nll["fitted"][experts]).all()


def test_loss_needs_the_derived_model(smollm2: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="not a MoEfied model"):
        moe_loss.loss_by_k(smollm2, LOSS_TEXT, cache)


def _counting_build(monkeypatch: pytest.MonkeyPatch, result: Moefication | None = None) -> list[int]:
    """Replace build by one that counts its calls (and returns `result` instead of building, if given)."""
    calls: list[int] = []
    real = moefication.build

    def counted(handle: ModelHandle, on_progress=None) -> Moefication:
        calls.append(1)
        return result if result is not None else real(handle, on_progress)

    monkeypatch.setattr(moe_store, "build", counted)
    return calls


def test_the_stored_file_is_reused(moefied: ModelHandle, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = store.stat().st_mtime_ns
    calls = _counting_build(monkeypatch)
    again = load(moefication.DERIVED_NAME)
    assert calls == [] and store.stat().st_mtime_ns == before
    assert again.fingerprint == moefied.fingerprint


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "other base model"])
def test_a_damaged_store_is_rebuilt(
    damage: str,
    moefied: ModelHandle,
    stored: Moefication,
    store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / moe_store.FILE_NAME
    good = store.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a safetensors file")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "other base model":
        other = Moefication(**{**stored.__dict__, "base_fingerprint": "0123456789abcdef"})
        path.write_bytes(moe_store.serialise(other))
    monkeypatch.setattr(moe_store, "store_path", lambda dtype: path)
    # The real build is covered by the session's; here it hands back that result, counted.
    calls = _counting_build(monkeypatch, stored)
    with caplog.at_level(logging.WARNING, logger="probes.moefication"):
        rebuilt = load(moefication.DERIVED_NAME)
    assert calls == [1]
    if damage != "missing":
        assert "rebuilding it" in caplog.text
    # Saved again: the same tensors (safetensors does not keep the metadata's order, so not the same bytes).
    assert load_file(path).keys() == load_file(store).keys()
    assert all(np.array_equal(load_file(path)[key], value) for key, value in load_file(store).items())
    manifest = json.loads((path.parent / moe_store.MANIFEST_NAME).read_text())
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load(moefication.DERIVED_NAME).fingerprint == rebuilt.fingerprint
    assert calls == [1]  # read back from then on


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (Setting(8, 9), "k = 9 is more than the E = 8 experts of each MLP: choose k from 1 to 8."),
        (Setting(16, 0), "k = 0: each token needs at least 1 expert"),
        (Setting(12, 4), "E = 12 experts is not available: the MoEfied model has 8, 16, 32 experts per MLP."),
        (Setting(16, 4, "magic"), "Unknown router 'magic'"),
    ],
)
def test_setting_check_messages(setting: Setting, message: str) -> None:
    with pytest.raises(LmscopeError) as raised:
        setting.check()
    assert message in str(raised.value)
    with pytest.raises(LmscopeError):
        with routed(setting):
            pass


def test_the_setting_is_per_thread() -> None:
    seen = []
    with routed(Setting(8, 2, "oracle")):
        assert moe_state.active() == Setting(8, 2, "oracle")
        thread = threading.Thread(target=lambda: seen.append(moe_state.active()))
        thread.start()
        thread.join()
    assert seen == [Setting()] and moe_state.active() == Setting()


def test_parameters_are_the_base_models(moefied: ModelHandle, smollm2: ModelHandle) -> None:
    def shapes(handle: ModelHandle) -> list[tuple[str, tuple[int, ...]]]:
        return [(name, tuple(p.shape)) for name, p in handle.model.named_parameters()]

    assert shapes(moefied) == shapes(smollm2)
    assert moefied.n_parameters == smollm2.n_parameters
    assert list(moefied.model.state_dict()) == list(smollm2.model.state_dict())
    router_buffers = [name for name, _ in moefied.model.named_buffers() if ".router." in name]
    assert len(router_buffers) == 2 * len(EXPERT_COUNTS) * moefied.n_layers
