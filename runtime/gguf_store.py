"""Convert a GGUF file once into a safetensors folder in the local model store (later loads take seconds)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from transformers.modeling_utils import PreTrainedModel
from transformers.models.auto.modeling_auto import AutoModelForCausalLM
from transformers.models.auto.tokenization_auto import AutoTokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from runtime.errors import LmscopeError
from runtime.fingerprint import file_digest
from runtime.store_files import built_folder

SOURCE_FILE = "lmscope-source.json"


def load_gguf(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF file through transformers (slow: it parses and dequantises every tensor)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise LmscopeError(f"transformers could not load the GGUF file {path.name}: {exc}") from exc
    return model.eval(), tokenizer


def _save_converted(path: Path, target: Path) -> None:
    model, tokenizer = load_gguf(path)
    # save_pretrained refuses GGUF-quantised models: rebuild on the meta device from a clean config.
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), assign=True)
    plain.tie_weights()
    plain.save_pretrained(target)
    tokenizer.save_pretrained(target)


def converted_folder(path: Path, store: Path) -> Path:
    """The store's safetensors folder for a GGUF file, converting it on first use."""
    digest = file_digest(path)

    def convert(folder: Path) -> None:
        _save_converted(path, folder)
        (folder / SOURCE_FILE).write_text(json.dumps({"gguf": str(path), "sha256": digest}, indent=1))

    return built_folder(store / f"{path.stem}-{digest[:12]}", SOURCE_FILE, convert)
