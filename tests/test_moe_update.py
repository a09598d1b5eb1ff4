"""The trained MoE's update file: what training changed, its experts' part kept at a rank, applied back, written and
read (on tiny Mixtral and Qwen2-MoE models built from their configs; the real builds are in test_moe_trained)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from torch import nn

from probes import moe_update
from results.moe_trained import Recipe
from runtime.errors import LmscopeError
from tests.tiny_moe import FAMILIES

FP16 = 2e-3  # relative error of a float16 update


@pytest.fixture(params=["mixtral", "qwen2_moe"])
def trained(request: pytest.FixtureRequest) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A tiny MoE "trained" (every MoE weight moved by seeded noise), and its weights before."""
    config_name, kwargs = FAMILIES[request.param]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(getattr(transformers, config_name)(vocab_size=64, **kwargs))
    before = moe_update.trained_weights(model)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name in before:
                value.add_(torch.randn_like(value) * value.std())
    return model, before


def _kept(model: nn.Module, before: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """The model's weights once the update at `rank` is applied to `before`."""
    update = moe_update.extract(before, model, rank)
    model.load_state_dict(before, strict=False)
    moe_update.apply(model, update)
    return moe_update.trained_weights(model)


def test_rank_zero_keeps_the_whole_update(trained: tuple[nn.Module, dict[str, torch.Tensor]]) -> None:
    model, before = trained
    target = moe_update.trained_weights(model)
    for name, value in _kept(model, before, 0).items():
        delta = target[name] - before[name]
        assert torch.allclose(value - before[name], delta, atol=FP16 * float(delta.abs().max())), name


def test_a_rank_r_update_is_the_best_of_that_rank(trained: tuple[nn.Module, dict[str, torch.Tensor]]) -> None:
    model, before = trained
    target = moe_update.trained_weights(model)
    kept = _kept(model, before, 2)
    assert {"experts.gate_up_proj", "experts.down_proj"} <= {name.split("mlp.")[1] for name in kept}
    for name, value in kept.items():
        wanted, got = target[name] - before[name], value - before[name]
        if name.endswith("gate.weight"):  # routers and shared-expert gates: whole
            assert torch.allclose(got, wanted, atol=FP16 * float(wanted.abs().max())), name
            continue
        # Stacked experts side by side along the hidden size: (E·out, d) for gate/up, (d, E·in) for down.
        as_matrix = {
            2: lambda t: t,
            3: lambda t: t.transpose(0, 1).reshape(t.shape[1], -1) if name.endswith("down_proj") else t.flatten(0, 1),
        }[wanted.ndim]
        singular = torch.linalg.svdvals(as_matrix(wanted))
        assert torch.linalg.matrix_rank(as_matrix(got), rtol=1e-3) == 2, name
        # Eckart–Young: the error is the norm of the singular values left out.
        best = float(singular[2:].pow(2).sum().sqrt())
        assert float((got - wanted).norm()) == pytest.approx(best, rel=1e-2), name


def test_the_file_round_trips(trained: tuple[nn.Module, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    model, before = trained
    recipe = Recipe(experts=8, top_k=2, shared=1, rank=2)
    update = moe_update.Update(
        recipe,
        "fingerprint",
        7,
        np.arange(12).reshape(2, 6) % 4,
        np.asarray([[1], [3]]),
        moe_update.extract(before, model, 2),
    )
    moe_update.save(update, tmp_path)
    back = moe_update.read(tmp_path)
    assert (back.recipe, back.base, back.version) == (recipe, "fingerprint", 7)
    assert np.array_equal(back.assignment, update.assignment) and np.array_equal(back.shared, update.shared)
    assert back.tensors.keys() == update.tensors.keys()
    assert all(torch.equal(back.tensors[name], value) for name, value in update.tensors.items())


def test_an_unreadable_update_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / moe_update.FILE_NAME).write_bytes(b"not a safetensors file")
    with pytest.raises(LmscopeError, match="update.*is unreadable"):
        moe_update.read(tmp_path)
    with pytest.raises(LmscopeError, match="is unreadable"):
        moe_update.read(tmp_path / "missing")
