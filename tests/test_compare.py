"""Compare mode on the pages: up to two more models beside the page's own, chosen in the URL, their per-layer
measure on one chart by relative depth; bad choices in a link are a warning, not an error."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from probes import activations, attention, corpus, heads, pruning, sinks, spectra
from results.activations import Thresholds
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import chart, open_page, plotly_array, texts
from views.api import loaded
from views.compare import COMPARISONS, PerLayer, compare, compare_texts, depth_layers
from views.registry import views as registry_views
from viz.compare import relative_depth
from viz.spectra import esd_density

TEXT = "The cat sat on the mat. The cat sat on the mat again."


def _charts(at: AppTest) -> list[dict]:
    return [chart(at, i) for i in range(len(at.get("plotly_chart")))]


def _compared(at: AppTest) -> list[dict]:
    """The page's per-layer compare charts, in order."""
    return [c for c in _charts(at) if "relative depth" in str(c["layout"].get("xaxis", {}).get("title", ""))]


def test_relative_depth_puts_the_first_block_at_0_and_the_last_at_1() -> None:
    np.testing.assert_allclose(relative_depth(30)[[0, 15, 29]], [0, 15 / 29, 1])
    np.testing.assert_allclose(relative_depth(18)[[0, 17]], [0, 1])
    assert list(relative_depth(1)) == [0.0]


@pytest.mark.parametrize(
    ("page", "views"),
    [
        ("app_pages/4_Attention_sinks.py", ["sinks"]),
        ("app_pages/5_Massive_activations.py", ["massive"]),
        ("app_pages/6_Distributions_and_neurons.py", ["neurons"]),
        ("app_pages/7_Weight_distributions.py", ["weights", "tails"]),
        ("app_pages/8_Weight_spectra.py", ["spectra"]),
    ],
)
def test_each_page_compares_its_per_layer_measures(
    page: str, views: list[str], smollm2: ModelHandle, minilm: ModelHandle
) -> None:
    at = open_page(page, model=smollm2.name, text=TEXT, compare=minilm.name)
    assert not at.exception and not at.error
    compared = _compared(at)
    assert len(compared) == len(views)
    for drawn, view in zip(compared, views, strict=True):
        _assert_lines(drawn, COMPARISONS[view], smollm2, minilm)
    key = next(v.key for v in registry_views() if v.page == page)
    assert at.session_state[f"{key}_compare"] == [minilm.name]  # kept per page, as every setting


def _assert_lines(drawn: dict, comparison: object, *handles: ModelHandle) -> None:
    """The chart has each model's series of the per-layer comparison, by relative depth."""
    assert isinstance(comparison, PerLayer)
    expected = [  # each model's series in order: (its name and layers, the values)
        (handle, label, values)
        for handle in handles
        for label, values in comparison.values(comparison.probe(handle, TEXT, ResultCache(), None, {}).value).items()
    ]
    assert len(drawn["data"]) == len(expected)
    for trace, (handle, label, values) in zip(drawn["data"], expected, strict=True):
        assert (
            trace["name"].startswith(f"{handle.name} ({handle.n_layers} layers)")
            and trace["legendgroup"] == handle.name
        )
        np.testing.assert_allclose(plotly_array(trace["y"]), values, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(plotly_array(trace["x"]), relative_depth(handle.n_layers))


@pytest.mark.parametrize(
    ("compare", "warning"),
    [
        ("gemma3-270m,nope", "compare='gemma3-270m,nope' are not all built-in models or their untrained twins"),
        ("smollm2-135m-instruct", "are not all built-in models"),  # the page's own model is not offered
        (
            "gemma3-270m,all-minilm-l6-v2,smollm2-135m-moefied",
            "cannot be used here (at most 2 models beside the page's own)",
        ),
    ],
)
def test_a_bad_compare_link_is_a_warning(compare: str, warning: str) -> None:
    at = open_page("app_pages/4_Attention_sinks.py", model="smollm2-135m-instruct", text=TEXT, compare=compare)
    assert not at.exception and not at.error
    assert warning in texts(at.warning) and not _compared(at)


def test_alpha_by_kind_draws_a_panel_per_kind_with_each_models_matrices(
    smollm2: ModelHandle, minilm: ModelHandle, shared_cache: ResultCache
) -> None:
    fig = compare([smollm2, minilm], "alpha_by_kind", cache=shared_cache, progress=False).to_plotly_json()
    kinds = [a["text"] for a in fig["layout"]["annotations"]]
    assert kinds[:4] == ["q", "k", "v", "o"] and {"up", "down"} <= set(kinds)  # MiniLM has no gate
    by_panel = {}
    for trace in fig["data"]:
        by_panel.setdefault(trace["xaxis"], []).append(trace)
    assert len(by_panel) == len(kinds)
    for kind, traces in zip(kinds, by_panel.values(), strict=True):
        for handle, trace in zip((smollm2, minilm), traces, strict=False):
            spectra_ = spectra.run(handle, shared_cache).value
            direct = [
                [m.alpha for m in spectra_.matrices if m.layer == i and m.kind == kind] for i in range(handle.n_layers)
            ]
            if not any(direct):
                continue  # the model has no matrix of this kind
            assert trace["name"].startswith(handle.name) and trace["legendgroup"] == handle.name
            np.testing.assert_allclose(plotly_array(trace["y"]), [np.mean(a) for a in direct], rtol=1e-12)
    assert sum(t["showlegend"] for t in fig["data"]) == 2  # each model named once


def test_the_atlas_compares_head_type_shares(smollm2: ModelHandle, minilm: ModelHandle) -> None:
    at = open_page("app_pages/2_Head_atlas.py", model=smollm2.name, text=TEXT, compare=minilm.name)
    assert not at.exception and not at.error
    (drawn,) = [c for c in _charts(at) if "side by side" in c["layout"]["title"]["text"]]
    cache = ResultCache()
    for handle, trace in zip((smollm2, minilm), drawn["data"], strict=True):
        types = heads.types_of(handle, TEXT, cache).value.dominant
        assert trace["name"] == handle.name and list(trace["x"]) == list(heads.TYPES)
        shares = plotly_array(trace["y"])
        np.testing.assert_allclose(shares, [np.mean(types == t) for t in heads.TYPES])
        assert shares.sum() == pytest.approx(1.0)
        assert f"of {handle.n_layers * handle.n_heads} heads" in trace["customdata"][0]


def _pruning_page(smollm2: ModelHandle, compare: str) -> AppTest:
    """The pruning page on SmolLM2 at light settings, comparing another model."""
    return open_page(
        "app_pages/9_Pruning.py",
        model=smollm2.name,
        text=TEXT,
        compare=compare,
        methods="prune,quantize",
        sparsities="50",
        bits="8",
        sentences="2",
    )


@pytest.mark.slow  # compresses two models
def test_the_pruning_page_compares_loss_per_byte_at_its_settings(smollm2: ModelHandle) -> None:
    twin = "smollm2-135m-instruct@untrained"
    at = _pruning_page(smollm2, twin)
    assert not at.exception and not at.error
    (drawn,) = [c for c in _charts(at) if c["layout"]["title"]["text"] == "Loss per byte, model against model"]
    cache = ResultCache()  # the pages' cache: what they computed is read back
    base = {}
    for name in (smollm2.name, twin):
        expected = pruning.tradeoff(
            loaded(name), TEXT, corpus.sentences()[:2], [0.5], [8], cache, methods=["prune", "quantize"], patterns=[]
        )
        assert expected.hit
        mine = {t["name"]: t for t in drawn["data"] if t["legendgroup"] == name}
        assert set(mine) == {
            f"{name}: {s}" for s in ("magnitude pruning", "round-to-nearest quantization", "unchanged")
        }
        assert list(plotly_array(mine[f"{name}: magnitude pruning"]["y"])) == [expected.value.points[0].nll_corpus]
        assert list(plotly_array(mine[f"{name}: unchanged"]["y"])) == [expected.value.base_nll_corpus] * 2
        base[name] = expected.value.base_nll_corpus
    assert base[twin] > base[smollm2.name] + 3  # untrained weights predict next to nothing
    # An encoder has no loss to compare: a message under the heading, and the page's own charts are drawn.
    at = _pruning_page(smollm2, "all-minilm-l6-v2")
    assert not at.exception and "is an encoder" in texts(at.error)
    titles = [c["layout"]["title"]["text"] for c in _charts(at)]
    assert (
        "Loss per byte: pruning against quantization" in titles and "Loss per byte, model against model" not in titles
    )


@pytest.mark.slow  # the corpus pass of two models
def test_the_massive_table_gains_a_model_column(smollm2: ModelHandle, gemma3: ModelHandle) -> None:
    at = open_page("app_pages/5_Massive_activations.py", model=smollm2.name, text=TEXT, compare=gemma3.name)
    assert not at.exception and not at.error
    (table,) = [frame.value for frame in at.dataframe if "model" in frame.value.columns]
    cache = ResultCache()
    for handle in (smollm2, gemma3):
        found = activations.massive(activations.run(handle, TEXT, cache).value, Thresholds())
        mine = table[table["model"] == handle.name]
        assert found and len(mine) == len(found)  # both decoders have massive activations on the text
        assert list(mine["feature"]) == [m.dim for m in found] and list(mine["layer"]) == [m.layer for m in found]


def test_the_sinks_page_shows_the_corpus_maps_side_by_side_on_one_scale(
    smollm2: ModelHandle, gemma3: ModelHandle
) -> None:
    at = open_page(
        "app_pages/4_Attention_sinks.py",
        model=smollm2.name,
        text=TEXT,
        compare=gemma3.name,
        sentences="8",
        tokens="10",
        logits="0",
    )
    assert not at.exception and not at.error
    (drawn,) = [c for c in _charts(at) if "model against model" in c["layout"]["title"]["text"]]
    titles = [a["text"] for a in drawn["layout"]["annotations"]]
    assert titles == [f"{smollm2.name}: layer 0", "layer 10", "layer 19", "layer 29"] + [
        f"{gemma3.name}: layer 0",
        "layer 6",
        "layer 11",
        "layer 17",
    ]
    top = max(np.nanmax(plotly_array(t["z"])) for t in drawn["data"])
    assert {(t["zmin"], t["zmax"]) for t in drawn["data"]} == {(0.0, top)}  # one scale for every map
    assert sum(bool(t.get("showscale")) for t in drawn["data"]) == 1
    cache = ResultCache()
    for handle, traces in ((smollm2, drawn["data"][:4]), (gemma3, drawn["data"][4:])):
        averaged = sinks.corpus_attention(handle, corpus.sentences(), cache, n_tokens=10, limit=8)
        assert averaged.hit  # what the page computed
        for trace, layer in zip(traces, depth_layers(handle.n_layers), strict=True):
            expected = averaged.value.layer_probabilities[layer].astype(np.float64)
            expected[np.triu_indices(10, k=1)] = np.nan  # the future: masked
            expected[0] = np.nan  # token 0 sees only itself
            np.testing.assert_allclose(plotly_array(trace["z"]), expected, equal_nan=True)


def test_esds_overlay_the_same_kind_at_the_same_depth(
    smollm2: ModelHandle, gemma3: ModelHandle, shared_cache: ResultCache
) -> None:
    drawn = compare(
        [smollm2, gemma3], "esd", kind="down", depth=0.5, cache=shared_cache, progress=False
    ).to_plotly_json()
    for handle, trace, layer in zip((smollm2, gemma3), drawn["data"], (14, 8), strict=True):
        matrix = spectra.run(handle, shared_cache).value.get(f"model.layers.{layer}.mlp.down_proj")
        assert trace["name"] == f"{handle.name}: {matrix.name} (alpha {matrix.alpha:.2f})"
        evals = matrix.singular_values.astype(np.float64) ** 2
        centers, density = esd_density(np.sort(evals[evals > 0]) / evals.mean())
        x = plotly_array(trace["x"])
        np.testing.assert_allclose(x, centers[density > 0])
        np.testing.assert_allclose(plotly_array(trace["y"]), density[density > 0])
        assert x[0] < 1 < x[-1]  # divided by the mean: the bulk sits around 1 in both models


def test_an_esd_of_a_kind_a_model_lacks_is_a_message(
    smollm2: ModelHandle, minilm: ModelHandle, shared_cache: ResultCache
) -> None:
    with pytest.raises(LmscopeError, match="'all-minilm-l6-v2' has no gate matrix in block 2"):
        compare([smollm2, minilm], "esd", kind="gate", cache=shared_cache, progress=False)


OTHER = "Once upon a time there was a fox. Once upon a time there was a dog."


def _titled(at: AppTest, start: str) -> dict:
    (drawn,) = [c for c in _charts(at) if c["layout"]["title"]["text"].startswith(start)]
    return drawn


def test_the_attention_page_shows_one_head_of_each_model_side_by_side(
    smollm2: ModelHandle, gemma3: ModelHandle
) -> None:
    at = open_page("app_pages/1_Attention.py", model=smollm2.name, text=TEXT, compare=gemma3.name, layer="29", head="3")
    assert not at.exception and not at.error
    maps = _titled(at, "One head's attention weights, side by side")
    assert [a["text"] for a in maps["layout"]["annotations"]] == [
        f"{smollm2.name}<br>layer 29, head 3",
        f"{gemma3.name}<br>layer 17, head 3",  # the last block of each
    ]
    cache = ResultCache()
    results = [attention.run(handle, TEXT, cache) for handle in (smollm2, gemma3)]
    assert all(r.hit for r in results)  # what the page computed
    for trace, result, layer in zip(maps["data"], results, (29, 17), strict=True):
        expected = result.value.maps[layer, 3].astype(np.float64)
        expected[np.triu_indices(len(expected), k=1)] = np.nan  # the future
        expected[0] = np.nan  # token 0 sees only itself
        np.testing.assert_allclose(plotly_array(trace["z"]), expected, rtol=1e-6, equal_nan=True)
    top = max(np.nanmax(plotly_array(t["z"])) for t in maps["data"])
    scales = {(t["zmin"], t["zmax"]) for t in maps["data"]}
    assert len(scales) == 1 and scales.pop() == (0.0, pytest.approx(top))  # one scale
    grids = _titled(at, "Sink share: weight on the first token, every head side by side")
    for trace, result in zip(grids["data"], results, strict=True):
        np.testing.assert_allclose(plotly_array(trace["z"]), result.value.sink_share, rtol=1e-6)
    assert {(t["zmin"], t["zmax"]) for t in grids["data"]} == {(0.0, 1.0)}


def test_a_head_another_model_lacks_is_a_message_and_the_grids_still_show(
    smollm2: ModelHandle, gemma3: ModelHandle
) -> None:
    at = open_page("app_pages/1_Attention.py", model=smollm2.name, text=TEXT, compare=gemma3.name, head="8")
    assert not at.exception
    assert "'gemma3-270m' has heads 0 to 3: choose a head below 4 to compare maps" in texts(at.error)
    assert _titled(at, "Sink share: weight on the first token, every head side by side")


@pytest.mark.parametrize(
    ("page", "view"),
    [
        ("app_pages/4_Attention_sinks.py", "sinks"),
        ("app_pages/5_Massive_activations.py", "massive"),
        ("app_pages/6_Distributions_and_neurons.py", "neurons"),
    ],
)
def test_two_texts_on_one_model(page: str, view: str, smollm2: ModelHandle, shared_cache: ResultCache) -> None:
    at = open_page(page, model=smollm2.name, text=TEXT, compare_by="texts", compare_text=OTHER)
    assert not at.exception and not at.error
    (drawn,) = _compared(at)  # the text's measures only (the sinks page's corpus maps read no text)
    comparison = COMPARISONS[view]
    assert isinstance(comparison, PerLayer)
    labels = ['A: "The cat sat on the mat. The…"', 'B: "Once upon a time there was a…"']
    expected = [
        (label, values)
        for label, text in zip(labels, (TEXT, OTHER), strict=True)
        for values in comparison.values(comparison.probe(smollm2, text, shared_cache, None, {}).value).values()
    ]
    assert [t["legendgroup"] for t in drawn["data"]] == [label for label, _ in expected]
    for trace, (_, values) in zip(drawn["data"], expected, strict=True):
        np.testing.assert_allclose(plotly_array(trace["y"]), values, rtol=1e-12, equal_nan=True)
    api = compare_texts(smollm2, view, [TEXT, OTHER], cache=shared_cache, progress=False).to_plotly_json()
    assert [t["name"] for t in api["data"]] == [t["name"] for t in drawn["data"]]  # the page's figure
    if view == "massive":
        (table,) = [d.value for d in at.dataframe if "text" in d.value.columns]
        assert set(table["text"]) == set(labels)  # both texts have massive activations


@pytest.mark.slow  # the spectra page decomposes every matrix
def test_texts_are_not_compared_by_a_measure_of_the_weights(smollm2: ModelHandle) -> None:
    with pytest.raises(LmscopeError, match="measures the weights or the corpus, not a text: compare models"):
        compare_texts(smollm2, "spectra", [TEXT, OTHER], progress=False)
    at = open_page(
        "app_pages/8_Weight_spectra.py", model=smollm2.name, text=TEXT, compare_by="texts", compare_text=OTHER
    )
    assert "compare_by='texts' is not models" in texts(at.warning)  # the spectra page offers models only
