"""Convert a GGUF file once into a safetensors folder in the local model store (later loads take seconds)."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from runtime.errors import LmscopeError
from runtime.fingerprint import file_digest

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
    target = store / f"{path.stem}-{digest[:12]}"
    if (target / SOURCE_FILE).exists():
        return target
    tmp: Path | None = None
    try:
        store.mkdir(parents=True, exist_ok=True)
        # A private folder per conversion, renamed into place when complete: two processes converting the same
        # file at once each write their own, and the first rename wins.
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=store))
        _save_converted(path, tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps({"gguf": str(path), "sha256": digest}, indent=1))
        for written in tmp.iterdir():
            written.chmod(0o644)  # safetensors writes 0600; a store built by root must serve other users
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        if target.exists() and not (target / SOURCE_FILE).exists():  # left half-written by an older lmscope
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / SOURCE_FILE).exists():
                raise
    except OSError as exc:
        raise LmscopeError(f"Could not write the converted model to {store}: {exc}") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
