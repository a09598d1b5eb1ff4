"""Loading: built-ins offline, GGUF conversion identical to transformers' GGUF loader, fingerprints, safety."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from runtime import store_files
from runtime.builtin import BUILTINS
from runtime.capture import IMPLEMENTATION
from runtime.errors import LmscopeError
from runtime.fingerprint import folder_fingerprint
from runtime.gguf_store import converted_folder, load_gguf
from runtime.handle import ModelHandle
from runtime.models import load, resolve
from runtime.settings import settings
from tests.conftest import ROOT

TEXT = "The quick brown fox jumps over the lazy dog.\nÜnïcödé, emoji 🙂 and numbers 1234."


@pytest.mark.gguf
@pytest.mark.parametrize("fixture", ["smollm2", "gemma3"])
def test_converted_gguf_matches_transformers_gguf_loader(fixture: str, request: pytest.FixtureRequest) -> None:
    handle: ModelHandle = request.getfixturevalue(fixture)
    gguf = BUILTINS[handle.name].locate(settings().model_store)
    reference, reference_tokenizer = load_gguf(gguf)
    reference.set_attn_implementation("eager")  # as lmscope loads it, so the same kernels run
    converted = handle.model.state_dict()
    assert all(torch.equal(converted[k], v) for k, v in reference.state_dict().items())
    ids = handle.tokenizer(TEXT, return_tensors="pt").input_ids
    assert torch.equal(ids, reference_tokenizer(TEXT, return_tensors="pt").input_ids)
    with torch.inference_mode():
        assert torch.equal(handle.model(ids).logits, reference(ids).logits)


def test_conversion_happens_once(smollm2: ModelHandle) -> None:
    store = settings().model_store
    gguf = BUILTINS[smollm2.name].locate(store)
    folder = converted_folder(gguf, store)
    before = (folder / "model.safetensors").stat().st_mtime_ns
    started = time.perf_counter()
    assert converted_folder(gguf, store) == folder
    assert time.perf_counter() - started < 5
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


def test_builtins_describe_themselves(smollm2: ModelHandle, gemma3: ModelHandle, minilm: ModelHandle) -> None:
    for handle in (smollm2, gemma3, minilm):
        config = handle.text_config
        assert handle.n_layers == config.num_hidden_layers
        assert handle.n_heads == config.num_attention_heads
        assert handle.model.config._attn_implementation == IMPLEMENTATION
        assert next(handle.model.parameters()).dtype == torch.float32
        assert len(handle.fingerprint) == 16
    assert (smollm2.architecture, smollm2.is_causal, smollm2.n_kv_heads) == ("LlamaForCausalLM", True, 3)
    assert (gemma3.architecture, gemma3.is_causal) == ("Gemma3ForCausalLM", True)
    assert (minilm.architecture, minilm.is_causal) == ("BertModel", False)
    assert len({smollm2.fingerprint, gemma3.fingerprint, minilm.fingerprint}) == 3


def test_smollm2_adds_no_bos_and_gemma_does(smollm2: ModelHandle, gemma3: ModelHandle) -> None:
    assert smollm2.tokenizer("Hello")["input_ids"][0] != smollm2.tokenizer.bos_token_id
    assert gemma3.tokenizer("Hello")["input_ids"][0] == gemma3.tokenizer.bos_token_id


def test_local_folder_loads_through_the_same_path(minilm: ModelHandle) -> None:
    folder, _ = resolve("all-minilm-l6-v2")
    by_path = load(folder)
    assert by_path.source.startswith("local folder")
    assert by_path.fingerprint == minilm.fingerprint


def _copy_model(src: str, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("1_Pooling", "*.md"))
    return dst


def test_fingerprint_follows_config_and_weights(tmp_path: Path) -> None:
    folder = _copy_model(resolve("all-minilm-l6-v2")[0], tmp_path / "m")
    base = folder_fingerprint(folder)
    assert folder_fingerprint(folder) == base
    config_file = folder / "config.json"
    original_config = config_file.read_text()
    config_file.write_text(json.dumps({**json.loads(original_config), "layer_norm_eps": 1e-5}))
    assert folder_fingerprint(folder) != base
    config_file.write_text(original_config)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert folder_fingerprint(folder) not in (base, "")


def test_pickle_checkpoints_are_refused_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(LmscopeError, match="pickle"):
        load(str(folder))
    monkeypatch.setenv("LMSCOPE_ALLOW_PICKLE", "1")
    with pytest.raises(LmscopeError, match="failed to load"):
        load(str(folder))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "No model given"),
        ("   ", "No model given"),
        ("no-such-org/no-such-model", "not in the local Hugging Face cache"),
        ("/definitely/not/here", "Unknown model"),
        ("bad name with spaces!", "Unknown model"),
        ("/tmp/missing.gguf", "No GGUF file"),
    ],
)
def test_unknown_models_get_a_clear_message(name: str, message: str) -> None:
    with pytest.raises(LmscopeError, match=message):
        load(name)


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LmscopeError, match="no config.json"):
        load(str(tmp_path))


def test_broken_config_fails_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{ not json")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(LmscopeError, match="failed to load"):
        load(str(tmp_path))


def test_a_build_sweeps_away_the_folders_killed_builds_left(tmp_path: Path) -> None:
    """A build killed before its cleanup leaves its private folder; the next build of the same target removes those
    untouched for a day, and leaves a running build's folder and other targets' alone."""
    abandoned, running, other = (tmp_path / f".{name}.partial" for name in ("thing.a1", "thing.b2", "other.c3"))
    for folder in (abandoned, running, other):
        folder.mkdir()
        (folder / "weights").write_bytes(b"half written")
    long_ago = time.time() - store_files.ABANDONED_S - 60
    for folder in (abandoned, other):
        os.utime(folder, (long_ago, long_ago))
    target = tmp_path / "thing"

    def build(folder: Path) -> None:
        (folder / "done").write_text("ok")

    built = store_files.built_folder(target, "done", build)
    assert built == target and (target / "done").read_text() == "ok"
    assert not abandoned.exists() and running.exists() and other.exists()


@pytest.mark.gguf
def test_two_processes_converting_at_once_both_succeed(smollm2: ModelHandle, tmp_path: Path) -> None:
    """Each conversion writes a private folder and renames it into place: neither destroys the other's work."""
    gguf = BUILTINS[smollm2.name].locate(settings().model_store)
    script = (
        "import sys; from pathlib import Path; from runtime.gguf_store import converted_folder; "
        "print(converted_folder(Path(sys.argv[1]), Path(sys.argv[2])))"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(gguf), str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    folders = {run.communicate(timeout=600)[0].strip() for run in runs}
    assert [run.returncode for run in runs] == [0, 0]
    assert len(folders) == 1
    assert [p.name for p in tmp_path.iterdir()] == [Path(folders.pop()).name]  # no partial folder left behind
    converted = load(str(next(tmp_path.iterdir())))
    ids = smollm2.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        assert torch.equal(converted.model(ids).logits, smollm2.model(ids).logits)


def test_loads_in_threads_at_once_give_the_same_model(smollm2: ModelHandle) -> None:
    """Sessions opening pages at the same moment load models at once: each load must be whole (an untied,
    randomly initialised lm_head was what concurrent from_pretrained calls gave before loads took turns)."""
    ids = smollm2.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = smollm2.model(ids).logits
    with ThreadPoolExecutor(3) as pool:
        handles = list(pool.map(load, ["smollm2-135m-instruct", "smollm2-135m-moefied", "smollm2-135m-instruct"]))
    for handle in handles:
        model = handle.model
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), handle.name
    with torch.inference_mode():
        for handle in (handles[0], handles[2]):
            assert torch.equal(handle.model(ids).logits, expected)
