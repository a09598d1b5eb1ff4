"""Which models a server loads: LMSCOPE_MODEL_ROOTS (any, built-ins only, or folders) and LMSCOPE_MAX_MODEL_GB,
checked before a model is read, with messages that do not tell a visitor which paths exist."""

from __future__ import annotations

import json
import re
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


@pytest.mark.timeout(60)  # a config of 10^8 layers built on the meta device ran for minutes (16 GB) before this check
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"num_hidden_layers": 10**8}, "asks for 100,000,000 layers (num_hidden_layers in its config)"),
        ({"num_hidden_layers": 2, "num_local_experts": 10**6, "model_type": "mixtral"}, "1,000,000 experts"),
        ({"model_type": "gemma3", "vision_config": {"num_hidden_layers": 10**7}}, "10,000,000 layers"),
    ],
)
def test_a_config_asking_for_too_many_modules_is_refused_before_anything_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fields: dict, message: str
) -> None:
    config = {"model_type": "llama", "hidden_size": 8, "intermediate_size": 8, "num_attention_heads": 1} | fields
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"")

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the config was built before its structure was checked")

    monkeypatch.setattr(models.AutoConfig, "from_pretrained", never)  # some configs list every layer
    with pytest.raises(LmscopeError, match=re.escape(message)):
        load(str(tmp_path))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a" * 5000, "at most 1,024 characters; this one has 5,000"),
        ("~no-such-user-here/model", "is not a path on this server"),
        ("/" + "a" * 300, "is not a path on this server: File name too long"),
    ],
)
def test_a_name_that_cannot_be_a_path_here_is_a_clear_error(name: str, message: str) -> None:
    with pytest.raises(LmscopeError, match=re.escape(message)):
        resolve(name)


def test_a_damaged_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    """A GGUF header that promises more tensors than the file holds: the reader fails with an IndexError."""
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (2**63 - 1).to_bytes(8, "little") + bytes(8))
    with pytest.raises(LmscopeError, match="damaged.gguf is not a readable GGUF file"):
        resolve(str(damaged))
    done = cli("attention", "--model", str(damaged), "--text", "Hello there.")
    assert done.returncode == 1 and "not a readable GGUF file" in done.stderr and "Traceback" not in done.stderr
