"""Fine-tuning a private copy of a decoder on the bundled task, one of two ways: every parameter ("full"), or LoRA
adapters (the `peft` library) on the q and v projections of every block ("lora", as in Hu et al. 2021).

Both runs see the same batches in the same order (a generator seeded by the run's seed), for the same steps, under
the same schedule: linear warm-up over the first 10% of the steps, then linear decay. Only the peak learning rate
differs, as is usual (LoRA's adapters start from zero and need a larger one). AdamW without weight decay, so the
update holds what the gradients asked for and nothing pulled towards zero; dropout off. LoRA's A matrices are
drawn from the run's own generator (the same Kaiming-uniform law peft uses), B starts at zero, lora_alpha = 2r.

The shared model is only read: the copy is made like compression's (`probes.pruning.model_copy`) and freed after.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import Linear as LoraLinear
from torch import nn

from probes.batches import by_length
from probes.finetune_task import padded, task, token_lists
from probes.pruning import Matrix, linear_weights, model_copy, sentences_nll
from probes.seeds import generator
from runtime.handle import ModelHandle
from runtime.placement import as_numpy

VERSION = 1  # of the stored runs (probes.finetune_store): bump when a run would train or store differently
KINDS = ("q", "v")  # the adapted matrices, as spectra.block_weights names them
BATCH_SIZE = 8  # sentences per step
LEARNING_RATES = {"lora": 3e-3, "full": 5e-5}  # the schedule's peak, per method
WARMUP_SHARE = 0.1
EVALUATIONS = 6  # held-out evaluations after the one before training, evenly spread, the last at the last step
ALPHA_PER_RANK = 2  # lora_alpha = 2r: the update B·A is scaled by alpha / r = 2 at every rank
_ORDER, _ADAPTERS = range(2)  # what a run's generators are drawn for
_ADAPTER = "default"

# peft reads transformers' deprecated `is_gradient_checkpointing` while wrapping; the warning is about peft itself.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


@dataclass(frozen=True)
class Recipe:
    """What one run does. Full fine-tuning does not depend on r: its recipe has rank 0."""

    method: str  # "lora" or "full"
    rank: int
    steps: int
    seed: int

    @staticmethod
    def of(method: str, rank: int, steps: int, seed: int) -> Recipe:
        return Recipe(method, rank if method == "lora" else 0, steps, seed)

    @staticmethod
    def read(settings: dict[str, Any]) -> Recipe:
        """The recipe whose `settings()` these are; ValueError for settings this code would not train alike."""
        recipe = Recipe(settings["method"], settings["rank"], settings["steps"], settings["seed"])
        if recipe.settings() != settings:
            raise ValueError(f"a fine-tuning recipe of other settings than this code's: {settings}")
        return recipe

    def settings(self) -> dict[str, object]:
        """Everything a stored run depends on, besides the model: it names and checks the stored file."""
        return {
            "version": VERSION,
            "method": self.method,
            "rank": self.rank,
            "steps": self.steps,
            "seed": self.seed,
            "task": task().digest,
            "kinds": list(KINDS),
            "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATES[self.method],
            "warmup_share": WARMUP_SHARE,
            "evaluations": EVALUATIONS,
            "alpha_per_rank": ALPHA_PER_RANK,
        }


@dataclass
class Trained:
    """What a run leaves behind: each adapted matrix's update ΔW (float32, by module name) and its losses."""

    deltas: dict[str, np.ndarray]
    loss_train: np.ndarray  # (steps,)
    eval_steps: np.ndarray  # (evaluations + 1,), 0 first
    loss_heldout: np.ndarray  # (evaluations + 1,)
    trained_params: int
    total_params: int
    seconds: float


def learning_rate_factor(step: int, steps: int) -> float:
    """The schedule, as a share of the peak at 0-based `step`: linear warm-up, then linear decay towards zero."""
    warmup = max(1, round(WARMUP_SHARE * steps))
    if step < warmup:
        return (step + 1) / warmup
    return (steps - step) / (steps - warmup)


def evaluated_after(steps: int) -> list[int]:
    """The step counts after which the held-out loss is measured (besides 0): EVALUATIONS of them, evenly spread."""
    return sorted({math.ceil(steps * i / EVALUATIONS) for i in range(1, EVALUATIONS + 1)})


def sentence_order(count: int, seed: int) -> Iterator[int]:
    """Indices of the training sentences: one shuffle per pass, passes one after another."""
    draw = generator(seed, _ORDER)
    while True:
        yield from torch.randperm(count, generator=draw).tolist()


def batch_nll(model: nn.Module, sequences: list[list[int]]) -> torch.Tensor:
    """Mean NLL per predicted token of a batch of sentences (padded on the right; padding predicts nothing)."""
    device = next(model.parameters()).device
    ids, mask = (t.to(device) for t in padded(sequences))
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


def _adapt(model: nn.Module, matrices: list[Matrix], recipe: Recipe) -> None:
    """Wrap the chosen matrices of the copy in LoRA adapters (in place; every other weight frozen), A drawn from
    the run's own generator in module order rather than from torch's global one."""
    config = LoraConfig(
        r=recipe.rank,
        lora_alpha=ALPHA_PER_RANK * recipe.rank,
        target_modules=[m.name for m in matrices],
        lora_dropout=0.0,
        bias="none",
    )
    get_peft_model(model, config)  # injects the adapters into `model` itself
    draw = generator(recipe.seed, _ADAPTERS)
    with torch.no_grad():
        for m in matrices:
            weight = _lora(model, m.name).lora_A[_ADAPTER].get_parameter("weight")
            drawn = torch.empty(weight.shape)  # drawn on the CPU: every device starts from the same A
            weight.copy_(nn.init.kaiming_uniform_(drawn, a=math.sqrt(5), generator=draw))


def _lora(model: nn.Module, name: str) -> LoraLinear:
    layer = model.get_submodule(name)
    if not isinstance(layer, LoraLinear):
        raise TypeError(f"{name} carries no LoRA adapter")
    return layer


def _delta(model: nn.Module, original: Matrix, method: str) -> np.ndarray:
    """ΔW of one matrix: the merged scaling · B·A of its adapter, or the trained weight minus the shared original."""
    with torch.no_grad():
        if method == "lora":
            change = _lora(model, original.name).get_delta_weight(_ADAPTER)
        else:
            change = model.get_submodule(original.name).get_parameter("weight") - original.weight
        return as_numpy(change).copy()


def train(handle: ModelHandle, recipe: Recipe, on_step: Callable[[], None] | None = None) -> Trained:
    """One run on a copy of the model (freed after): the train loss of each step, the held-out loss before
    training and after each of `evaluated_after(steps)`, and each adapted matrix's ΔW; on_step after each step."""
    matrices = linear_weights(handle, KINDS)
    sentences = task()
    training = token_lists(handle, sentences.train)
    heldout = by_length(handle, sentences.heldout)
    checkpoints = evaluated_after(recipe.steps)
    started = time.perf_counter()
    with model_copy(handle, f"finetune:{recipe.method}") as twin:
        model = (
            twin.model.float()
        )  # trained in float32 whatever the shared model's float type (bfloat16 loses the steps)
        if recipe.method == "lora":
            _adapt(model, matrices, recipe)
        else:
            model.requires_grad_(True)
        model.eval()  # dropout off: a run depends on its seed alone
        trained = [p for p in model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(trained, lr=LEARNING_RATES[recipe.method], weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda done: learning_rate_factor(done, recipe.steps))
        order = sentence_order(len(training), recipe.seed)
        loss_train, loss_heldout = [], [sentences_nll(twin, heldout)]
        for step in range(1, recipe.steps + 1):
            loss = batch_nll(model, [training[next(order)] for _ in range(BATCH_SIZE)])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            loss_train.append(loss.item())
            if step in checkpoints:
                loss_heldout.append(sentences_nll(twin, heldout))
            if on_step is not None:
                on_step()
        deltas = {m.name: _delta(model, m, recipe.method) for m in matrices}
        counts = sum(p.numel() for p in trained), sum(p.numel() for p in model.parameters())
    return Trained(
        deltas=deltas,
        loss_train=np.asarray(loss_train, dtype=np.float64),
        eval_steps=np.asarray([0, *checkpoints], dtype=np.int64),
        loss_heldout=np.asarray(loss_heldout, dtype=np.float64),
        trained_params=counts[0],
        total_params=counts[1],
        seconds=time.perf_counter() - started,
    )
