"""LoRA against full fine-tuning: LoRA's update has rank exactly r, the full update's energy and the subspace
similarity recomputed from the stored updates, both held-out losses fall, runs are stored and reread, the shared
model is never touched, runs depend on their seed alone, limits, the CLI and the page."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from probes import finetune, finetune_store, finetune_train
from probes.batches import Progress
from probes.finetune_train import Recipe, Trained
from results.finetune import FineTuneComparison, FineTuneRun
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, open_page, plotly_array, texts

PAGE = "app_pages/13_Fine_tuning.py"
TINY = {"rank": 2, "steps": 2}  # enough for every claim that is not about learning the task
# np.linalg.matrix_rank's own default: σ > σ₁ · max(out, in) · ε, with ε of float32 (the updates' dtype).
EPSILON = float(np.finfo(np.float32).eps)
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks")


def _rank(delta: np.ndarray) -> int:
    return int(np.linalg.matrix_rank(delta.astype(np.float64), rtol=max(delta.shape) * EPSILON))


def _hooks(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(len(getattr(m, name)) for name in _HOOKS) for m in model.modules()]


def _stored(handle: ModelHandle, method: str, rank: int, steps: int, seed: int = 0) -> Trained:
    shapes = {m.name: m.shape for m in finetune.check(handle, rank, steps, seed)}
    found = finetune_store.load_run(handle, Recipe.of(method, rank, steps, seed), shapes)
    assert found is not None, "the run was not stored"
    return found


@dataclass
class Trial:
    """Short runs in a private model store, and what the tests need to know about how they went."""

    result: FineTuneRun | FineTuneComparison
    store: Path
    trainings: list[str]  # the method of each training, in order
    progress: list[tuple[int, int]]
    untouched: bool  # every shared parameter bit-identical afterwards, and no hook added to any of its modules


def _trial(handle: ModelHandle, store: Path, call: Callable[[ResultCache, Progress], Cached]) -> Trial:
    """call(cache, progress) with the model store at `store`, its trainings counted and the shared model watched."""
    before = {name: p.detach().clone() for name, p in handle.model.named_parameters()}
    hooks = _hooks(handle.model)
    trainings: list[str] = []
    progress: list[tuple[int, int]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMSCOPE_MODEL_STORE", str(store))

        def counted(handle: ModelHandle, recipe: Recipe, on_step: Callable[[], None] | None = None) -> Trained:
            trainings.append(recipe.method)
            return finetune_train.train(handle, recipe, on_step)

        patch.setattr(finetune, "train", counted)
        cache = ResultCache(store / "cache")
        result = call(cache, lambda *p: progress.append(p)).value
        cache.close()
    untouched = _hooks(handle.model) == hooks and all(
        torch.equal(p, before[name]) for name, p in handle.model.named_parameters()
    )
    return Trial(result, store, trainings, progress, untouched)


@pytest.fixture(scope="module")
def tiny(smollm2: ModelHandle, tmp_path_factory: pytest.TempPathFactory) -> Trial:
    """A LoRA run of TINY (about 8 s)."""
    return _trial(
        smollm2,
        tmp_path_factory.mktemp("model-store"),
        lambda cache, progress: finetune.run(smollm2, "lora", cache, **TINY, on_progress=progress),
    )


@pytest.fixture(scope="module")
def both(smollm2: ModelHandle, tmp_path_factory: pytest.TempPathFactory) -> Trial:
    """Both methods trained for TINY (about 12 s)."""
    return _trial(
        smollm2,
        tmp_path_factory.mktemp("model-store"),
        lambda cache, progress: finetune.compare(smollm2, cache, **TINY, on_progress=progress),
    )


@pytest.mark.parametrize("trial", ["tiny", pytest.param("both", marks=pytest.mark.slow)])
def test_training_leaves_the_shared_model_as_it_was(
    trial: str, smollm2: ModelHandle, request: pytest.FixtureRequest
) -> None:
    assert request.getfixturevalue(trial).untouched
    assert not smollm2.model.training
    assert not any("lora" in name for name, _ in smollm2.model.named_modules())


def test_lora_updates_have_exactly_rank_r(tiny: Trial, smollm2: ModelHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSCOPE_MODEL_STORE", str(tiny.store))
    stored = _stored(smollm2, "lora", **TINY)
    assert len(stored.deltas) == 2 * smollm2.n_layers  # q and v of every block
    for update in tiny.result.matrices:
        assert _rank(stored.deltas[update.name]) == TINY["rank"] == update.numerical_rank
        assert update.energy_top_r == pytest.approx(1.0) and 1 <= update.effective_rank <= TINY["rank"]
        assert len(update.singular_values) == min(update.shape) and np.all(np.diff(update.singular_values) <= 0)
    adapter = sum(TINY["rank"] * sum(m.shape) for m in tiny.result.matrices)
    assert tiny.result.trained_params == adapter
    assert tiny.result.total_params == smollm2.n_parameters + adapter


def test_a_stored_run_is_read_back_instead_of_trained(
    tiny: Trial, smollm2: ModelHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert tiny.trainings == ["lora"] and tiny.progress == [(1, 2), (2, 2)]
    files = list((tiny.store / finetune_store.FOLDER).glob("*/lora-*.safetensors"))
    assert len(files) == 1 and smollm2.fingerprint in str(files[0].parent)
    assert not list(files[0].parent.glob("*.tmp"))
    monkeypatch.setenv("LMSCOPE_MODEL_STORE", str(tiny.store))
    monkeypatch.setattr(finetune, "train", lambda *args: pytest.fail("trained again"))
    again = finetune.run(smollm2, "lora", ResultCache(tmp_path), **TINY, on_progress=lambda *p: pytest.fail("progress"))
    assert not again.hit  # a fresh result cache: the numbers come from the stored run
    np.testing.assert_array_equal(again.value.loss_heldout, tiny.result.loss_heldout)
    for new, old in zip(again.value.matrices, tiny.result.matrices):
        np.testing.assert_array_equal(new.singular_values, old.singular_values)


@pytest.mark.slow  # compares the fixtures' two trainings, one of which trains both methods
def test_a_run_depends_on_its_seed_alone(tiny: Trial, both: Trial, smollm2: ModelHandle) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMSCOPE_MODEL_STORE", str(tiny.store))
        first = _stored(smollm2, "lora", **TINY)
        patch.setenv("LMSCOPE_MODEL_STORE", str(both.store))
        second = _stored(smollm2, "lora", **TINY)
    np.testing.assert_array_equal(first.loss_train, second.loss_train)
    np.testing.assert_array_equal(first.loss_heldout, second.loss_heldout)
    for name, delta in first.deltas.items():
        np.testing.assert_array_equal(second.deltas[name], delta)
    orders = [list(islice(finetune_train.sentence_order(72, seed), 144)) for seed in (0, 0, 1)]
    assert orders[0] == orders[1] != orders[2]
    assert sorted(orders[0][:72]) == sorted(orders[0][72:]) == list(range(72))  # every sentence once a pass


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rank": 0}, "LoRA rank must be from 1 to"),
        ({"rank": limits.FINETUNE_RANK + 1}, f"LoRA rank must be from 1 to {limits.FINETUNE_RANK}"),
        ({"steps": 0}, "number of fine-tuning steps must be from 1"),
        ({"steps": limits.FINETUNE_STEPS + 1}, f"steps must be from 1 to {limits.FINETUNE_STEPS}"),
        ({"seed": -1}, "seed must be from 0"),
        ({"method": "half"}, "Unknown fine-tuning method 'half'"),
    ],
)
def test_settings_over_the_limits_are_refused_before_any_work(
    smollm2: ModelHandle, cache: ResultCache, monkeypatch: pytest.MonkeyPatch, settings: dict, message: str
) -> None:
    monkeypatch.setattr(finetune, "train", lambda *args: pytest.fail("trained before the check"))
    chosen = {"method": "lora", **TINY, **settings}
    with pytest.raises(LmscopeError, match=message):
        finetune.run(smollm2, chosen.pop("method"), cache, **chosen)


def test_a_model_too_big_to_train_in_full_is_refused(
    smollm2: ModelHandle, cache: ResultCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "FINETUNE_PARAMETERS", smollm2.n_parameters - 1)
    with pytest.raises(LmscopeError, match=f"{smollm2.n_parameters:,} parameters: fine-tuning all of them"):
        finetune.compare(smollm2, cache, **TINY)


def test_an_encoder_is_refused(minilm: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="encoder"):
        finetune.compare(minilm, cache, **TINY)


# ---- the defaults: both runs on SmolLM2, through the session's cache and the model store ---------------------


@pytest.fixture(scope="module")
def defaults(smollm2: ModelHandle, shared_cache: ResultCache) -> FineTuneComparison:
    """Both default runs (about 75 s of 2 cores when not stored yet; the lecture and tour tests read them too)."""
    return finetune.compare(smollm2, shared_cache).value


def _similarity(u_a: np.ndarray, u_b: np.ndarray) -> float:
    """φ(r, r) as the overlap of two orthogonal projections: trace(P_A P_B) / r."""
    return float(np.trace((u_a @ u_a.T) @ (u_b @ u_b.T)) / u_a.shape[1])


@pytest.mark.slow
def test_both_held_out_losses_fall(defaults: FineTuneComparison) -> None:
    for run in defaults.runs().values():
        assert run.loss_train.shape == (finetune.DEFAULT_STEPS,)
        assert list(run.eval_steps) == [0, *finetune_train.evaluated_after(finetune.DEFAULT_STEPS)]
        assert run.eval_steps[-1] == run.steps and np.all(np.diff(run.eval_steps) > 0)
        assert np.all(run.loss_heldout[1:] < run.loss_heldout[0])
        assert run.loss_heldout[-1] < run.loss_heldout[0] - 1.0, run.method
    assert defaults.lora.loss_heldout[0] == pytest.approx(defaults.full.loss_heldout[0], abs=1e-5)  # B starts at 0


@pytest.mark.slow
def test_the_default_updates_recomputed_from_the_store(defaults: FineTuneComparison, smollm2: ModelHandle) -> None:
    r = defaults.rank
    lora, full = (_stored(smollm2, m, r, defaults.steps) for m in ("lora", "full"))
    assert defaults.full.trained_params == defaults.full.total_params == smollm2.n_parameters
    for i, (low, high) in enumerate(zip(defaults.lora.matrices, defaults.full.matrices)):
        assert _rank(lora.deltas[low.name]) == r == low.numerical_rank
        s = np.linalg.svd(full.deltas[high.name].astype(np.float64), compute_uv=False)
        assert 0 < high.energy_top_r <= 1
        assert high.energy_top_r == pytest.approx(np.sum(s[:r] ** 2) / np.sum(s**2), rel=1e-9)
        assert high.numerical_rank > r and high.effective_rank > r  # the full update is not strictly low-rank
        assert defaults.chance[i] == pytest.approx(r / high.shape[0])
    for i in range(0, len(defaults.lora.matrices), 7):  # the similarity, on a sample of the matrices
        u_lora, u_full = (
            np.linalg.svd(run.deltas[defaults.lora.matrices[i].name].astype(np.float64), full_matrices=False)[0]
            for run in (lora, full)
        )
        assert defaults.similarity[i, -1] == pytest.approx(_similarity(u_lora[:, :r], u_full[:, :r]), abs=1e-9)


@pytest.mark.slow
def test_full_fine_tuning_is_trained_once_for_every_rank(
    both: Trial, smollm2: ModelHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert both.trainings == ["lora", "full"] and both.progress == [(i, 4) for i in range(1, 5)]  # their steps
    monkeypatch.setenv("LMSCOPE_MODEL_STORE", str(both.store))
    progress: list[tuple[int, int]] = []
    found = finetune.compare(
        smollm2, ResultCache(tmp_path), 3, TINY["steps"], on_progress=lambda *p: progress.append(p)
    )
    assert progress == [(1, 2), (2, 2)]  # LoRA at rank 3 only: the full run is read back
    assert {m.numerical_rank for m in found.value.lora.matrices} == {3} and found.value.similarity.shape[1] == 3
    assert found.value.full.loss_heldout.tolist() == both.result.full.loss_heldout.tolist()


@pytest.mark.slow  # loads a model, reading the stored default runs
def test_the_cli_prints_the_run(defaults: FineTuneComparison) -> None:
    done = cli("finetune", "--model", "smollm2-135m-instruct", "--method", "lora")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["method"], out["rank"], out["steps"]) == ("lora", finetune.DEFAULT_RANK, finetune.DEFAULT_STEPS)
    assert out["trained_params"] == defaults.lora.trained_params and out["total_params"] > out["trained_params"]
    np.testing.assert_allclose(out["loss_train"], defaults.lora.loss_train)
    np.testing.assert_allclose(out["loss_heldout"], defaults.lora.loss_heldout)
    assert len(out["matrices"]) == len(defaults.lora.matrices)
    for printed, expected in zip(out["matrices"], defaults.lora.matrices):
        assert printed["name"] == expected.name and printed["effective_rank"] == pytest.approx(expected.effective_rank)
        np.testing.assert_allclose(printed["singular_values"], expected.singular_values)
        assert printed["energy_top_r"] == pytest.approx(1.0) and printed["numerical_rank"] == finetune.DEFAULT_RANK
    refused = cli("finetune", "--model", "smollm2-135m-instruct", "--method", "full", "--rank", "0")
    assert refused.returncode == 1 and "LoRA rank must be" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow  # the default runs (read from the cache the fixture filled)
def test_the_page_draws_both_runs(defaults: FineTuneComparison) -> None:
    matrix = defaults.lora.matrices[3].name
    at = open_page(PAGE, rank="8", steps="30", matrix=matrix)
    assert not at.exception and not at.error, texts(at.error)
    losses = {t["name"]: t for t in chart(at, 0)["data"]}
    for run, label in ((defaults.lora, "LoRA (r = 8)"), (defaults.full, "full fine-tuning")):
        np.testing.assert_allclose(plotly_array(losses[f"{label}: held-out"]["y"]), run.loss_heldout)
        np.testing.assert_allclose(plotly_array(losses[f"{label}: training batch"]["y"]), run.loss_train)
    spectrum = chart(at, 1)
    assert matrix in spectrum["layout"]["title"]["text"] and spectrum["layout"]["yaxis"]["type"] == "log"
    lora = next(t for t in spectrum["data"] if t["name"] == "LoRA (r = 8)" and t.get("mode") == "lines+markers")
    np.testing.assert_allclose(plotly_array(lora["y"]), defaults.lora.matrices[3].singular_values)
    assert at.query_params["rank"] == "8" and at.query_params["matrix"] == matrix
    refused = open_page(PAGE, rank=str(limits.FINETUNE_RANK + 1), steps="30")
    assert "out of range" in texts(refused.warning) and refused.query_params["rank"] == str(finetune.DEFAULT_RANK)


def test_the_page_says_an_encoder_cannot_be_fine_tuned() -> None:
    at = open_page(PAGE, model="all-minilm-l6-v2")
    assert not at.exception and not at.error and "encoder" in texts(at.info)
