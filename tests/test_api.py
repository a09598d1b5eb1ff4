"""`import lmscope`: the Python API returns the typed results the CLI prints and the figures the pages draw, reads
and writes the user's result cache, shows progress, and compares models by relative depth."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import lmscope
from probes import attention, heads
from probes.sinks import sink_profile
from results.attention import AttentionResult
from runtime.cache import ResultCache
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, open_page, plotly_array
from views.sinks import share_figure

TEXT = "The cat sat on the mat. The cat sat on the mat again."


def test_attention_is_the_typed_result_the_cli_prints(smollm2: ModelHandle, cache: ResultCache) -> None:
    r = lmscope.attention(smollm2, TEXT, cache=cache, progress=False)
    assert isinstance(r.value, AttentionResult) and r.model is smollm2 and not r.cached
    assert r.tokens is r.value.tokens and r.n_layers == smollm2.n_layers  # the result's fields read through
    printed = json.loads(
        cli("attention", "--model", smollm2.name, "--text", TEXT, "--layer", "3", "--head", "1").stdout
    )
    assert printed["tokens"] == r.tokens and printed["fingerprint"] == r.model.fingerprint
    np.testing.assert_allclose(np.asarray(printed["map"], dtype=np.float64), r.maps[3, 1], rtol=1e-6, atol=1e-7)
    for summary in attention.SUMMARIES:
        got = np.asarray(printed[summary], dtype=np.float64)
        np.testing.assert_allclose(got, getattr(r, summary), rtol=1e-6, atol=1e-7, equal_nan=True)
    again = lmscope.attention(smollm2.name, TEXT, cache=cache, progress=False)  # by name: loaded once
    assert again.cached and again.model is lmscope.load(smollm2.name) and again.value.tokens == r.tokens
    assert copy.copy(r).value is r.value and pickle.loads(pickle.dumps(r.value)).tokens == r.tokens


def test_the_figure_is_the_pages(smollm2: ModelHandle) -> None:
    r = lmscope.attention(smollm2, TEXT, progress=False)
    at = open_page("app_pages/1_Attention.py", model=smollm2.name, text=TEXT, layer="3", head="1")
    assert not at.exception
    page = chart(at, 0)
    mine = json.loads(r.figure(layer=3, head=1).to_json())
    np.testing.assert_array_equal(plotly_array(page["data"][0]["z"]), plotly_array(mine["data"][0]["z"]))
    assert page["layout"]["title"] == mine["layout"]["title"]
    with pytest.raises(lmscope.LmscopeError, match="Layer 99 does not exist"):
        r.figure(layer=99, head=0)


@pytest.mark.gguf
def test_gemmas_figures_mark_its_sliding_layers_as_the_page_does(gemma3: ModelHandle) -> None:
    r = lmscope.spectra(gemma3, progress=False)
    at = open_page("app_pages/8_Weight_spectra.py", model=gemma3.name)
    assert not at.exception
    mine = json.loads(r.figure().to_json())
    charts = [chart(at, i) for i in range(len(at.get("plotly_chart")))]
    page = next(c for c in charts if c["layout"]["title"] == mine["layout"]["title"])
    assert mine["layout"]["shapes"] == page["layout"]["shapes"] and mine["layout"]["shapes"]  # full layers shaded
    assert mine["layout"]["xaxis"]["ticktext"] == page["layout"]["xaxis"]["ticktext"]
    assert r.figure(matrix="model.layers.5.mlp.down_proj").layout.title.text  # one matrix's spectrum


def test_results_go_to_the_users_cache_with_a_progress_bar(
    minilm: ModelHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = ResultCache(tmp_path / "cache")
    first = lmscope.spectra(minilm, cache=fresh)
    assert not first.cached and f"spectra ({minilm.name})" in capsys.readouterr().err  # the bar, on stderr here
    again = lmscope.spectra(minilm, cache=fresh)
    assert again.cached and [m.alpha for m in again.matrices] == [m.alpha for m in first.matrices]
    assert f"spectra ({minilm.name})" not in capsys.readouterr().err  # a cache hit reports no progress: no bar
    lmscope.spectra(minilm, progress=False)  # no cache given: the user's (LMSCOPE_CACHE_DIR; conftest sets the run's)
    assert lmscope.spectra(minilm, cache=ResultCache(), progress=False).cached


def test_compare_aligns_layers_by_relative_depth(smollm2: ModelHandle, gemma3: ModelHandle, cache: ResultCache) -> None:
    fig = lmscope.compare([smollm2, gemma3], "sinks", TEXT, cache=cache, progress=False)
    assert [trace.name for trace in fig.data] == [f"{smollm2.name} (30 layers)", f"{gemma3.name} (18 layers)"]
    for trace, handle in zip(fig.data, (smollm2, gemma3), strict=True):
        n = handle.n_layers
        np.testing.assert_allclose(trace.x, [i / (n - 1) for i in range(n)])  # first block 0, last 1
        assert list(trace.customdata) == list(range(n))  # the hover's real layer
        expected = sink_profile(attention.run(handle, TEXT, cache).value).layer_share
        np.testing.assert_allclose(trace.y, expected)
    assert fig.layout.xaxis.title.text.startswith("relative depth")
    massive = lmscope.compare([smollm2], "massive", TEXT, cache=cache, progress=False)
    np.testing.assert_allclose(massive.data[0].y, lmscope.massive_activations(smollm2, TEXT, cache=cache).max_abs)
    assert massive.layout.yaxis.type == "log"


@pytest.mark.parametrize(
    ("models", "view", "text", "message"),
    [
        (["all-minilm-l6-v2"], "nope", TEXT, "Unknown comparison 'nope': choose from sinks, massive, spectra"),
        (["all-minilm-l6-v2"] * 4, "spectra", None, "Compare one to 3 models; got 4"),
        (["all-minilm-l6-v2"], "sinks", None, "runs the models on a text"),
    ],
)
def test_compare_says_what_is_wrong(models: list[str], view: str, text: str | None, message: str) -> None:
    with pytest.raises(lmscope.LmscopeError, match=message):
        lmscope.compare(models, view, text, progress=False)


def test_any_preset_figure_by_name(smollm2: ModelHandle, cache: ResultCache) -> None:
    drawn = lmscope.figure("sink_share", smollm2, TEXT, cache=cache, progress=False, k=2)
    result = drawn.results["attention"]
    assert isinstance(result, AttentionResult) and drawn.options == {"k": 2}
    assert drawn.figure.to_json() == share_figure(result, 2).to_json()  # the page's figure, from the same code
    assert "sink_share" in lmscope.figure_names() and "smollm2-135m-instruct" in lmscope.models()
    with pytest.raises(lmscope.LmscopeError, match="Unknown figure 'nope'"):
        lmscope.figure("nope", smollm2, TEXT)
    with pytest.raises(lmscope.LmscopeError, match="needs the option 'k'"):
        lmscope.figure("sink_share", smollm2, TEXT, cache=cache, progress=False)
    with pytest.raises(lmscope.LmscopeError, match="takes no option extra"):
        lmscope.figure("sink_share", smollm2, TEXT, cache=cache, progress=False, k=2, extra=1)


def test_routing_from_python_equals_the_cli(moefied: ModelHandle, cache: ResultCache) -> None:
    r = lmscope.routing(moefied, TEXT, cache=cache, progress=False)
    printed = json.loads(cli("moe", "--model", moefied.name, "--text", TEXT).stdout)
    assert printed["setting"] == {"experts": 16, "top_k": 4, "router": "fitted"}
    for layer, router in zip(printed["layers"], r.layers, strict=True):
        np.testing.assert_array_equal(np.asarray(layer["topk_experts"]), router.experts)
    assert r.figure().layout.title.text and r.figure(layer=0).layout.title.text != r.figure().layout.title.text
    with pytest.raises(lmscope.LmscopeError, match="derived MoE"):
        lmscope.routing("smollm2-135m-instruct", TEXT, setting=lmscope.MoeSetting(8, 2), progress=False)


def test_head_types_from_python_are_the_pages(smollm2: ModelHandle, cache: ResultCache) -> None:
    expected = heads.types_of(smollm2, TEXT, cache).value
    found = lmscope.head_types(smollm2, TEXT, cache=cache, progress=False)
    assert found.cached and found.labels.tolist() == expected.labels.tolist()
    np.testing.assert_array_equal(found.value.scores, expected.scores)
    drawn = found.figure().to_plotly_json()
    assert list(drawn["data"][0]["x"]) == [*heads.THRESHOLDS, "none"]
