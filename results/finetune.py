"""LoRA against full fine-tuning: the loss curves of both runs and the spectrum of each adapted matrix's update."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("lora", "full")


@dataclass
class MatrixUpdate:
    """The update ΔW = W − W0 of one adapted matrix after one run (for LoRA, the merged scaling · B·A)."""

    name: str  # the module name, e.g. "model.layers.3.self_attn.q_proj"
    layer: int
    kind: str  # "q" or "v"
    shape: tuple[int, int]  # (out, in)
    singular_values: np.ndarray  # all min(out, in) of them, descending, float64
    numerical_rank: int  # singular values above σ₁ · max(out, in) · ε(float32), numpy's matrix_rank tolerance
    effective_rank: float  # Roy & Vetterli's exp(entropy of σ / Σσ), values below that tolerance counted as zero
    energy_top_r: float  # share of Σσ² in the top r singular values
    relative_norm: float  # ‖ΔW‖_F / ‖W0‖_F


@dataclass
class FineTuneRun:
    """One fine-tuning run of the model on the bundled task: its losses, what it trained and what it changed."""

    method: str  # "lora" or "full"
    rank: int  # r: LoRA's rank; for full fine-tuning, the r its energy_top_r counts
    steps: int
    seed: int
    learning_rate: float  # the peak of the schedule
    trained_params: int
    total_params: int  # the parameters of the model as trained (LoRA's adapters included)
    loss_train: np.ndarray  # (steps,) mean NLL per predicted token of each step's batch, before its update
    eval_steps: np.ndarray  # (evaluations + 1,) steps done at each held-out evaluation, 0 first
    loss_heldout: np.ndarray  # (evaluations + 1,) mean NLL per predicted token of the held-out sentences
    matrices: list[MatrixUpdate]
    train_seconds: float

    @property
    def trained_share(self) -> float:
        return self.trained_params / self.total_params


@dataclass
class FineTuneComparison:
    """Both runs on the same data, order, steps and schedule, and how their updates compare, matrix by matrix."""

    model: str
    fingerprint: str
    task: str  # what the bundled task is, in words
    n_train: int  # training sentences
    n_heldout: int  # held-out sentences
    batch_size: int
    lora: FineTuneRun
    full: FineTuneRun
    # (matrices, r): Hu et al.'s φ(i, i) = ‖U_LoRA,iᵀ U_full,i‖²_F / i over the top-i left singular vectors, i = 1..r
    similarity: np.ndarray
    chance: np.ndarray  # (matrices,): r / out, φ(r, r) of two random r-dimensional subspaces on average

    @property
    def rank(self) -> int:
        return self.lora.rank

    @property
    def steps(self) -> int:
        return self.lora.steps

    def runs(self) -> dict[str, FineTuneRun]:
        """Both runs by method."""
        return {"lora": self.lora, "full": self.full}

    def matrix_index(self, name: str) -> int:
        """The position of a matrix (by module name) in both runs' lists; ValueError if neither adapted it."""
        return [m.name for m in self.lora.matrices].index(name)
