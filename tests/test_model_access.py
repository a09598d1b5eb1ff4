"""Which models a server loads: LMSCOPE_MODEL_ROOTS (any, built-ins only, or folders) and LMSCOPE_MAX_MODEL_GB,
checked before a model is read, with messages that do not tell a visitor which paths exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from runtime import models
from runtime.builtin import BUILTINS
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.model_access import NotAllowed
from runtime.models import load, resolve
from tests.helpers import cli, open_page, texts


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory, smollm2: ModelHandle) -> Path:
    """A small random llama (about 0.4 M parameters) saved as a model folder, with SmolLM2's tokenizer."""
    folder = tmp_path_factory.mktemp("roots") / "allowed" / "tiny-llama"
    config = LlamaConfig(
        vocab_size=smollm2.tokenizer.vocab_size,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        architectures=["LlamaForCausalLM"],
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    smollm2.tokenizer.save_pretrained(folder)
    return folder


def _refusal(name: str) -> str:
    with pytest.raises(NotAllowed) as refused:
        resolve(name)
    return str(refused.value).replace(name, "NAME")


def test_unset_allows_any_model_folder(tiny_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMSCOPE_MODEL_ROOTS", raising=False)
    assert load(str(tiny_folder)).n_layers == 2


def test_builtin_allows_only_the_built_ins(tiny_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSCOPE_MODEL_ROOTS", "builtin")
    for name in BUILTINS:
        resolve(name)
    for name in (str(tiny_folder), "HuggingFaceTB/SmolLM2-360M", "/etc", "~/x.gguf"):
        assert "not available on this server" in _refusal(name)


def test_roots_allow_models_under_them_and_nothing_else(tiny_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tiny_folder.parent
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (root / "link-out").unlink(missing_ok=True)
    (root / "link-out").symlink_to(outside)
    monkeypatch.setenv("LMSCOPE_MODEL_ROOTS", f"{root}:/nonexistent/models")
    assert load(str(tiny_folder)).n_layers == 2
    resolve(BUILTINS["all-minilm-l6-v2"].name)
    for name in (str(outside), str(root / ".." / "outside"), str(root / "link-out"), "gpt2", "/etc/passwd"):
        assert "not available on this server" in _refusal(name)


def test_refusals_do_not_reveal_whether_a_path_exists(tiny_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSCOPE_MODEL_ROOTS", str(tiny_folder.parent / "elsewhere"))
    assert _refusal(str(tiny_folder)) == _refusal(str(tiny_folder.parent / "no-such-model"))
    assert _refusal("/etc/hostname") == _refusal("/etc/no-such-file") == _refusal("/root/model.gguf")


def test_a_model_over_the_memory_limit_is_refused_before_its_weights_load(
    tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMSCOPE_MAX_MODEL_GB", "0.0001")  # 100 kB; the tiny llama is about 1.6 MB in float32

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the weights were loaded before the size was checked")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", never)
    with pytest.raises(LmscopeError, match=r"more than this server's limit of 0.0001 GB \(LMSCOPE_MAX_MODEL_GB\)"):
        load(str(tiny_folder))


def test_a_gguf_file_over_the_limit_is_refused_before_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = BUILTINS["smollm2-135m-instruct"].locate(Path("/nonexistent"))
    monkeypatch.setenv("LMSCOPE_MAX_MODEL_GB", "0.1")  # SmolLM2 is 0.54 GB in float32

    def never(*args: object) -> None:
        raise AssertionError("the GGUF file was converted before its size was checked")

    monkeypatch.setattr(models, "converted_folder", never)
    with pytest.raises(LmscopeError, match=r"0.13 B parameters, 0.5 GB in float32"):
        resolve(str(gguf))


@pytest.mark.slow  # loads a model
def test_cli_refuses_a_model_outside_the_roots(tiny_folder: Path) -> None:
    done = cli(
        "attention", "--model", str(tiny_folder), "--text", "Hello there.", env={"LMSCOPE_MODEL_ROOTS": "builtin"}
    )
    assert done.returncode == 1 and "not available on this server" in done.stderr and "Traceback" not in done.stderr


def test_page_refuses_a_linked_model_outside_the_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSCOPE_MODEL_ROOTS", "builtin")
    at = open_page("app_pages/1_Attention.py", model="/etc", text="Hello there.")
    assert not at.exception
    assert "not available on this server" in texts(at.error)
