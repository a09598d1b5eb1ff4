"""Untrained twins in the model store: a model's config and tokenizer with the weights transformers initialises its
architecture with, drawn from torch's generator seeded TWIN_SEED.

transformers initialises weights from torch's global generator, which every thread of a server shares (building
any module draws from it, e.g. a LoRA layer in another session's fine-tuning): so a twin is built in a child
process of its own, where nothing else draws, written once to the store as a model folder and loaded from there.
Its folder is named by a digest of the config, the seed and transformers' version: the same twin on every load,
process and machine.

`twin_folder` runs `_build` in that child (runtime.child).
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib.metadata import version
from pathlib import Path

import torch
from transformers.configuration_utils import PretrainedConfig
from transformers.models.auto.configuration_auto import AutoConfig
from transformers.models.auto.tokenization_auto import AutoTokenizer

from runtime import child
from runtime.initialised import seeded_model
from runtime.settings import settings
from runtime.store_files import built_folder

UNTRAINED = "@untrained"  # NAME@untrained: the model's untrained twin
TWIN_SEED = 0
TRANSFORMERS = version("transformers")  # a twin is the initialisation of this release
FOLDER = "untrained"
MARKER = "lmscope-twin.json"


def base_name(name: str) -> str | None:
    """The model whose untrained twin `name` asks for ("NAME@untrained"), or None."""
    name = name.strip()
    return name.removesuffix(UNTRAINED).strip() if name.endswith(UNTRAINED) else None


def twin_names(names: list[str]) -> list[str]:
    """Each model's untrained twin (`runtime.models.load` takes these names too)."""
    return [f"{name}{UNTRAINED}" for name in names]


def recipe_digest(config: PretrainedConfig) -> str:
    """What decides a twin's weights: the config, the seed and transformers' initialisation (its version)."""
    fields = {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}  # where it lies is no part of it
    recipe = f"{json.dumps(fields, sort_keys=True, default=str)}:{TWIN_SEED}:transformers {TRANSFORMERS}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def twin_folder(base: str, base_folder: Path, config: PretrainedConfig) -> Path:
    """The store's folder of the twin of the model in `base_folder`, built by a child process on first use."""
    digest = recipe_digest(config)

    def build(folder: Path) -> None:
        request = {"base_folder": str(base_folder), "target": str(folder), "seed": TWIN_SEED}
        child.run(__name__, request, lambda *_: None, f"Building the untrained twin of '{base}'")
        (folder / MARKER).write_text(json.dumps({"base": base, "seed": TWIN_SEED, "transformers": TRANSFORMERS}))

    name = re.sub(r"[^\w.-]", "_", base)[-60:]
    return built_folder(settings().model_store / FOLDER / f"{name}-{digest}", MARKER, build)


def _build(request: dict, on_progress: child.Progress) -> None:
    """In the child process: the architecture of the base folder's config, initialised by transformers with torch's
    generator seeded as asked, in float32, saved with its tokenizer to the target folder."""
    base_folder, target = Path(request["base_folder"]), Path(request["target"])
    trust = settings().trust_remote_code
    config = AutoConfig.from_pretrained(base_folder, trust_remote_code=trust)
    model = seeded_model(config, request["seed"], torch.float32)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(base_folder, trust_remote_code=trust).save_pretrained(target)


if __name__ == "__main__":
    child.serve(_build)
