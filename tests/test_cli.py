"""`python -m probes`: JSON on stdout, one-line errors on stderr with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from probes import attention
from probes.builtin import BUILTINS
from probes.cache import ResultCache
from probes.models import ModelHandle, resolve
from tests.conftest import ROOT

TEXT = "Previous-token heads look one step back."


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "probes", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_list_models() -> None:
    done = _cli("list-models")
    assert done.returncode == 0, done.stderr
    models = json.loads(done.stdout)
    assert [m["name"] for m in models] == list(BUILTINS)
    for model in models:
        assert {"name", "source", "architecture", "n_layers", "n_heads"} <= model.keys()
        assert model["n_layers"] > 0 and model["n_heads"] > 0
    assert models[0]["architecture"] == "LlamaForCausalLM"


def test_attention_json_matches_the_probe(smollm2: ModelHandle, cache: ResultCache) -> None:
    done = _cli("attention", "--model", "smollm2-135m-instruct", "--text", TEXT, "--layer", "3", "--head", "4")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = attention.run(smollm2, TEXT, cache).value
    assert out["model"] == "smollm2-135m-instruct"
    assert out["token_ids"] == expected.token_ids.tolist()
    assert out["tokens"] == expected.tokens
    assert (out["n_layers"], out["n_heads"]) == (30, 9)
    for name in ("sink_share", "previous_token", "entropy"):
        assert np.asarray(out[name]).shape == (30, 9)
        np.testing.assert_allclose(out[name], getattr(expected, name), rtol=1e-6)
    head_map = np.asarray(out["map"])
    assert head_map.shape == (len(expected.tokens),) * 2
    np.testing.assert_allclose(head_map.sum(axis=1), 1.0, atol=5e-3)
    np.testing.assert_array_equal(head_map, expected.maps[3, 4].astype(np.float32))


def test_attention_on_an_encoder_by_local_folder() -> None:
    folder, _ = resolve("all-minilm-l6-v2")
    done = _cli("attention", "--model", folder, "--text", "Where is the period?")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["tokens"][0] == "[CLS]" and out["tokens"][-1] == "[SEP]"
    assert (out["n_layers"], out["n_heads"]) == (6, 12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no/such-model", "--text", TEXT], "Unknown model"),
        (["--model", "smollm2-135m-instruct", "--text", "   "], "empty"),
        (["--model", "smollm2-135m-instruct", "--text", TEXT, "--layer", "30", "--head", "0"], "Layer 30 does not exist"),
        (["--model", "smollm2-135m-instruct", "--text", TEXT, "--layer", "1"], "both --layer and --head"),
    ],
)
def test_errors_are_one_line_on_stderr(args: list[str], message: str) -> None:
    done = _cli("attention", *args)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in done.stderr
