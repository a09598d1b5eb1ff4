"""`python -m lmscope`: JSON on stdout, one-line errors on stderr with a non-zero exit (one test starts the real
process; the others run the same entry point in this process)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probes import attention, heads
from runtime.builtin import BUILTINS, DERIVED
from runtime.cache import ResultCache
from runtime.handle import ModelHandle
from runtime.models import resolve
from tests.helpers import cli, cli_process

TEXT = "Previous-token heads look one step back."


@pytest.mark.slow  # loads a model
def test_list_models() -> None:
    done = cli("list-models")
    assert done.returncode == 0, done.stderr
    models = json.loads(done.stdout)
    assert [m["name"] for m in models] == [*BUILTINS, *DERIVED]
    for model in models:
        assert {"name", "source", "architecture", "n_layers", "n_heads"} <= model.keys()
        assert model["n_layers"] > 0 and model["n_heads"] > 0
    assert models[0]["architecture"] == "LlamaForCausalLM"
    for derived in models[len(BUILTINS) :]:
        assert derived["title"] == DERIVED[derived["name"]].title and derived["source"].startswith("derived")
    assert models[-1]["architecture"] == "Qwen2MoeForCausalLM"  # the trained MoE, in transformers' own class


@pytest.mark.slow  # a subprocess that imports torch
def test_attention_json_matches_the_probe(smollm2: ModelHandle, cache: ResultCache) -> None:
    done = cli_process("attention", "--model", "smollm2-135m-instruct", "--text", TEXT, "--layer", "3", "--head", "4")
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


@pytest.mark.slow  # loads a model
def test_attention_on_an_encoder_by_local_folder() -> None:
    folder, _ = resolve("all-minilm-l6-v2")
    done = cli("attention", "--model", folder, "--text", "Where is the period?")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["tokens"][0] == "[CLS]" and out["tokens"][-1] == "[SEP]"
    assert (out["n_layers"], out["n_heads"]) == (6, 12)


@pytest.mark.slow  # loads a model
def test_logits_of_one_head(smollm2: ModelHandle, cache: ResultCache) -> None:
    done = cli(
        "attention", "--model", "smollm2-135m-instruct", "--text", TEXT, "--layer", "5", "--head", "2", "--logits"
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = attention.run(smollm2, TEXT, cache, with_logits=True).value.logits[5, 2].astype(np.float64)
    got = np.array([[np.nan if v is None else v for v in row] for row in out["logits"]])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)])


@pytest.mark.slow  # loads a model
def test_heads_json_matches_the_probe(smollm2: ModelHandle, cache: ResultCache) -> None:
    done = cli("heads", "--model", "smollm2-135m-instruct", "--seq-len", "30", "--seed", "7")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = heads.run(smollm2, cache, 30, 7).value
    assert out["token_ids"] == expected.token_ids.tolist() and len(out["token_ids"]) == 60
    np.testing.assert_allclose(out["induction"], expected.scores["induction"], rtol=1e-6)
    for name in ("previous_token", "sink_share"):
        np.testing.assert_allclose(out[name], getattr(expected, name), rtol=1e-6)
    np.testing.assert_allclose(out["duplicate_token"], expected.scores["duplicate token"], rtol=1e-6)
    reverse = heads.run(smollm2, cache, 30, 7, reverse=True).value.scores["reverse induction"]
    np.testing.assert_allclose(out["reverse_induction"], reverse, rtol=1e-6)
    offsets, profile = heads.profile(expected)
    assert out["offsets"] == offsets.tolist() and "types" not in out
    np.testing.assert_allclose(np.array(out["offset_profile"], dtype=float), profile, rtol=1e-6)


@pytest.mark.slow  # loads a model
def test_heads_with_a_text_prints_every_heads_types(smollm2: ModelHandle, cache: ResultCache) -> None:
    done = cli("heads", "--model", "smollm2-135m-instruct", "--text", TEXT)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    kinds = heads.types_of(smollm2, TEXT, cache).value
    assert out["types"] == kinds.labels.tolist() and out["thresholds"] == heads.THRESHOLDS
    assert out["types_passed"] == kinds.count.tolist()
    np.testing.assert_allclose(out["type_entropy"], kinds.entropy, rtol=1e-6)
    for kind in kinds.types:
        np.testing.assert_allclose(np.array(out["type_scores"][kind], dtype=float), kinds.score(kind), rtol=1e-6)


@pytest.mark.slow  # loads a model
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no/such-model", "--text", TEXT], "Unknown model"),
        (["--model", "smollm2-135m-instruct", "--text", "   "], "empty"),
        (
            ["--model", "smollm2-135m-instruct", "--text", TEXT, "--layer", "30", "--head", "0"],
            "Layer 30 does not exist",
        ),
        (["--model", "smollm2-135m-instruct", "--text", TEXT, "--layer", "1"], "both --layer and --head"),
        (["--model", "smollm2-135m-instruct", "--text", TEXT, "--logits"], "give --layer and --head"),
    ],
)
def test_errors_are_one_line_on_stderr(args: list[str], message: str) -> None:
    done = cli("attention", *args)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in done.stderr
