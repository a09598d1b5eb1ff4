"""The trained MoE's default build that ships with lmscope (probes/data/smollm2-135m-moe): it is the current build
version's, from the built-in SmolLM2; the model store rebuilds it without training; and, in `make reproduce`, training
again gives it back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from probes import moe_trained, moe_trained_store, moe_update
from probes.moe_trained_store import SHIPPED
from results.moe_trained import Recipe
from runtime.builtin import TRAINED_MOE
from runtime.handle import ModelHandle
from runtime.models import load_built
from tests.helpers import cli
from tests.test_moe_trained import assert_same_update


def test_the_shipped_build_is_this_versions_default_recipe_from_the_built_in_model(smollm2: ModelHandle) -> None:
    update = moe_update.read(SHIPPED)
    assert update.recipe == Recipe() and update.base == smollm2.fingerprint
    assert update.version == moe_trained.VERSION, "the build changed: `make moe-update` ships its new default build"
    log = moe_trained_store.training_log(SHIPPED)
    assert (log.recipe, log.base_fingerprint) == (update.recipe, update.base)


def test_the_prepared_built_in_moe_is_the_shipped_build(trained_moe: ModelHandle) -> None:
    stored = moe_update.read(Path(str(trained_moe.model.name_or_path)))
    assert_same_update(stored, moe_update.read(SHIPPED), 0.0)


@pytest.mark.slow  # writes and reads a model folder (540 MB) and measures its loss
def test_an_empty_store_rebuilds_the_shipped_build_without_training(
    smollm2: ModelHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMSCOPE_MODEL_STORE", str(tmp_path))
    monkeypatch.setattr(moe_trained_store, "train", lambda *a, **k: pytest.fail("trained"))
    folder = moe_trained_store.stored_or_trained(smollm2, Recipe())
    assert folder.is_relative_to(tmp_path)
    log = moe_trained_store.training_log(folder)
    assert log.to_json() == moe_trained_store.training_log(SHIPPED).to_json()
    moe = load_built(TRAINED_MOE.name, folder, "the shipped build").model
    at = list(log.costs.ks).index(log.recipe.top_k)
    # The loss its build measured on the same weights; only the order of float32 sums may differ (threads).
    nll = moe_trained.mean_nll(moe, moe_trained.held_out_ids(smollm2))
    assert nll == pytest.approx(log.trained_nll[at], abs=1e-3)


@pytest.mark.slow
@pytest.mark.reproduce  # the whole default build, on one thread as `make moe-update` made it: about 10 minutes
def test_training_again_gives_back_the_shipped_build(tmp_path: Path) -> None:
    """On the machine that made it, training again gives the shipped update bit for bit. Elsewhere (other kernels, or
    another thread count: other rounding) the weights part ways, since a router's top-k choice flips on a rounding
    and training follows it, but the model is as good: the build on 2 threads of the same machine ended with
    weights that differ by as much as the update itself, and a held-out loss 0.002 nats from the shipped one's."""
    out, threads = tmp_path / "again", torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        done = cli("moe-train", "--export", str(out))
    finally:
        torch.set_num_threads(threads)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["folder"] == str(out)
    again, shipped = (moe_update.read(folder) for folder in (out, SHIPPED))
    assert (again.recipe, again.base, again.version) == (shipped.recipe, shipped.base, shipped.version)
    assert np.array_equal(again.assignment, shipped.assignment) and again.tensors.keys() == shipped.tensors.keys()
    log, shipped_log = (moe_trained_store.training_log(folder) for folder in (out, SHIPPED))
    at = list(log.costs.ks).index(log.recipe.top_k)
    assert log.trained_nll[at] == pytest.approx(shipped_log.trained_nll[at], abs=0.05)
    tenth = len(log.kl) // 10
    assert log.kl[-tenth:].mean() == pytest.approx(shipped_log.kl[-tenth:].mean(), abs=0.05)
