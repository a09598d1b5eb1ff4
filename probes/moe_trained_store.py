"""The trained MoE in the model store: one model folder (config.json, safetensors, tokenizer, the update that
training made, training.json) per dense model and recipe, trained once when missing; and the derived model's handle,
loaded from that folder."""

from __future__ import annotations

import time
from pathlib import Path

from transformers.modeling_utils import PreTrainedModel

from probes import moe_update
from probes.batches import Progress
from probes.moe_store import stored_or_built
from probes.moe_trained import VERSION, convert, train
from probes.moe_update import Update
from results.moe_trained import Recipe, TrainingLog
from runtime.builtin import TRAINED_MOE
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.models import load_built
from runtime.placement import dtype_name
from runtime.settings import settings
from runtime.store_files import built_folder, file_lock

LOG_NAME = "training.json"  # written last: a folder that has it is complete


def folder(base: ModelHandle, recipe: Recipe) -> Path:
    """Where the MoE of this recipe made from this dense model lies in the model store."""
    return settings().model_store / "derived" / TRAINED_MOE.name / f"{base.fingerprint}-v{VERSION}-{recipe.digest()}"


def converted(base: ModelHandle, update: Update) -> PreTrainedModel:
    """The MoE that `update` was trained from: the dense model converted by its recipe, split and shared experts."""
    return convert(base, update.assignment, update.recipe, update.shared)


def rebuilt(base: ModelHandle, update: Update) -> PreTrainedModel:
    """The trained MoE that `update` stands for: its converted model plus the update."""
    moe = converted(base, update)
    moe_update.apply(moe, update.tensors)
    return moe


def write(into: Path, moe: PreTrainedModel, update: Update, log: TrainingLog, base: ModelHandle) -> None:
    """A build's folder: the model (config.json, safetensors), the dense model's tokenizer, the update and, last, the
    training record."""
    moe.save_pretrained(into)
    base.tokenizer.save_pretrained(into)
    moe_update.save(update, into)
    (into / LOG_NAME).write_text(log.to_json())


def trained(
    base: ModelHandle, recipe: Recipe, on_progress: Progress | None = None
) -> tuple[PreTrainedModel, Update, TrainingLog]:
    """The MoE of this recipe trained from `base` (a private copy, only read) on the model store's MoEfication
    split: the model, its update and the training record."""
    moefication, _ = stored_or_built(base, None)
    return train(base, moefication.assignments[recipe.experts], recipe, on_progress)


def export(base: ModelHandle, recipe: Recipe, into: Path, on_progress: Progress | None = None) -> None:
    """Train the MoE of this recipe and write its update and training record into `into` (the build as a small file,
    from which `rebuilt` makes the model)."""
    recipe.check()
    _, update, log = trained(base, recipe, on_progress)
    into.mkdir(parents=True, exist_ok=True)
    moe_update.save(update, into)
    (into / LOG_NAME).write_text(log.to_json())


def stored_or_trained(base: ModelHandle, recipe: Recipe, on_progress: Progress | None = None) -> Path:
    """The folder of the MoE of this recipe: from the model store, else trained from `base` (a private copy, only
    read) and stored; sessions asking at once in this process train it once."""
    recipe.check()
    target = folder(base, recipe)

    def build(into: Path) -> None:
        write(into, *trained(base, recipe, on_progress), base)

    with file_lock(target):
        return built_folder(target, LOG_NAME, build)


def training_log(model_folder: Path) -> TrainingLog:
    """What the build of the MoE in `model_folder` measured."""
    try:
        return TrainingLog.from_json((model_folder / LOG_NAME).read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LmscopeError(f"The training record of {model_folder} is unreadable: {exc}") from exc


def log_of(handle: ModelHandle) -> TrainingLog | None:
    """What the build of this model measured, if lmscope trained it (its folder holds the training record)."""
    found = Path(str(getattr(handle.model, "name_or_path", ""))) / LOG_NAME
    return training_log(found.parent) if found.is_file() else None


def describe(log: TrainingLog) -> str:
    """The trained MoE in one line: how it was made and what it scores."""
    recipe, at = log.recipe, int(list(log.costs.ks).index(log.recipe.top_k))
    kept = f", the experts' update kept at rank {recipe.rank}" if recipe.rank else ""
    return (
        f"derived: SmolLM2-135M's MLPs split into {recipe.experts} experts (MoEfication) as a {recipe.family()} model, "
        f"{recipe.top_k} active per token ({recipe.routing()}), trained by distillation ({recipe.layer_steps} steps "
        f"per layer, {recipe.steps} through the model, {log.train_tokens:,} tokens, {log.seconds / 60:.1f} min"
        f"{kept}); held-out NLL {log.trained_nll[at]:.2f} (dense {log.dense_nll:.2f}, untrained router "
        f"{log.untrained_nll[at]:.2f})"
    )


def load_trained(base: ModelHandle, on_progress: Progress | None = None) -> ModelHandle:
    """The trained MoE made from `base` by the default recipe (trained and stored on first use)."""
    started = time.perf_counter()
    built = stored_or_trained(base, Recipe(), on_progress)
    loaded = load_built(TRAINED_MOE.name, built, describe(training_log(built)), dtype_name(base.dtype))
    loaded.load_seconds = base.load_seconds + time.perf_counter() - started
    return loaded
