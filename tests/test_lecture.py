"""Lecture mode: every preset renders on the built-in models and its figure shows what its caption promises
(checked here by a computation on the probe results and the model's own outputs); presets.toml is checked when
loaded; the slide export writes real PNG, SVG and PDF files and an index, and a second export reads the cache."""

from __future__ import annotations

import ast
import copy
import dataclasses
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lecture import catalog, export, presets
from lecture.checks import CHECKS, caption, judge
from lecture.checks.model_weights import MOSTLY
from lecture.render import Rendered, render
from probes import heads, spectra, structured
from probes.text import encode
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.models import load
from tests.conftest import ROOT
from tests.helpers import direct, open_page, plotly_array, texts
from views.registry import figure_pages, figures
from viz.theme import slide

pytestmark = pytest.mark.slow  # every preset rendered on the built-ins, and exported

LECTURE_ORDER = [
    "Sparsity and low-rankness",
    "Overview of sparsity in LLMs",
    "Model weights",
    "Sparse subnetworks and lottery tickets",
    "Specialised attention heads",
    "Attention sinks",
    "Long context and structured attention",
    "Massive activations",
    "Mixture of experts",
    "Low rank and LoRA",
]
EXPORTED = ("heads-induction", "massive-surface")
PAGES = figure_pages()


@pytest.fixture(scope="module")
def rendered(
    smollm2: ModelHandle, moefied: ModelHandle, gemma3: ModelHandle, shared_cache: ResultCache
) -> dict[str, Rendered]:
    """Every preset rendered once on its own models (the session's models shared)."""
    handles = {smollm2.name: smollm2, moefied.name: moefied, gemma3.name: gemma3}

    def loaded(name: str) -> ModelHandle:
        if name not in handles:
            handles[name] = load(name)
        return handles[name]

    return {
        name: render(preset, loaded(preset.model), shared_cache, others=[loaded(n) for n in preset.compare])
        for name, preset in catalog.presets().items()
    }


def _z(trace: object) -> np.ndarray:
    return np.asarray(trace.z, dtype=np.float64)


def _causal(values: np.ndarray) -> np.ndarray:
    return np.where(np.triu(np.ones(values.shape, dtype=bool), k=1), np.nan, values)


# ---- the data file ----------------------------------------------------------------------------------------


def test_sections_follow_the_lecture() -> None:
    sections = catalog.sections()
    assert [s.title for s in sections] == LECTURE_ORDER
    listed = [name for s in sections for name in s.presets]
    assert sorted(listed) == sorted(catalog.presets())  # every preset in exactly one section
    for section in sections:
        assert section.text and all(catalog.preset(name).section == section.id for name in section.presets)


def test_the_required_figures_are_there() -> None:
    drawn = {p.figure for p in catalog.presets().values()}
    assert {
        "corpus_average_maps",
        "magnitude_surface",
        "magnitude_lines",
        "ablation_bars",
        "specialised_head",
        "head_atlas",
        "mask_panel",
        "window_loss",
        "budget_loss",
        "attention_cost",
        "weight_histogram",
        "esd",
        "alpha_by_layer",
        "pruning_tradeoff",
        "rank_loss",
        "moe_routing",
        "moe_load",
        "moe_loss_by_k",
    } <= drawn
    scores = {p.options["score"] for p in catalog.presets().values() if p.figure == "specialised_head"}
    assert scores == {"previous_token_random", "induction", "delimiter_share"}
    assert set(figures()) == drawn  # no figure without a preset
    assert set(CHECKS) == drawn  # and every one checks its caption


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(LmscopeError, match="Unknown preset 'nope'.*sinks-average-logits"):
        catalog.preset("nope")


def _names_read(page: Path) -> set[str]:
    """The URL query parameters a page reads: its Settings that the URL carries, and the head and matrix choosers'
    (layer, head; matrix); model and text are read by every page."""
    names = {"model", "text"}
    for node in ast.walk(ast.parse(page.read_text())):
        if isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            carried = not any(k.arg == "url" and ast.unparse(k.value) == "False" for k in node.keywords)
            if func == "Setting" and carried and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
            names |= {"head_inputs": {"layer", "head"}, "matrix_input": {"matrix"}, "compare_section": {"compare"}}.get(
                func, set()
            )
    return names


@pytest.mark.parametrize("name", list(catalog.presets()))
def test_the_query_is_what_the_page_reads(name: str) -> None:
    preset = catalog.preset(name)
    read = _names_read(ROOT / preset.page)
    assert set(preset.query) <= read, f"{preset.page} does not read {set(preset.query) - read}"
    assert preset.query["model"] == preset.model
    assert preset.query.get("text") == preset.text


BROKEN = {
    'figure = "esd"': ('figure = "spectrum"', "unknown figure 'spectrum'"),
    'figure = "weight_histogram"': ('view = "weight_histogram"', "unknown field\\(s\\) view"),
    'name = "weights-alpha"': ('name = "weights-esd"', "duplicate preset name 'weights-esd'"),
    'section = "lottery-tickets"': ('section = "lottery"', "unknown section 'lottery'"),
    'text = "massive"\noptions = { layer = "peak" }': (
        'text = "nothing"\noptions = { layer = "peak" }',
        "text 'nothing' is not in \\[texts\\]",
    ),
    'query = { score = "induction" }': (
        'query = { score = "induction", model = "gemma3-270m" }',
        "query may not set model",
    ),
    'caption = """\nThe power-law': ('captoin = """\nThe power-law', "unknown field\\(s\\) captoin"),
    "version = 1": ("version = 0", "version must be a whole number"),
    'model = "smollm2-135m-instruct"': ('model = "gpt-5"', "model 'gpt-5' is not a built-in"),
    '[[preset]]\nname = "weights-histogram"': ('[[preset]\nname = "weights-histogram"', "not valid TOML"),
}


@pytest.mark.parametrize("original", list(BROKEN))
def test_a_broken_data_file_is_refused_at_load(original: str, tmp_path: Path) -> None:
    replacement, message = BROKEN[original]
    source = presets.PATH.read_text()
    assert original in source
    broken = tmp_path / "presets.toml"
    broken.write_text(source.replace(original, replacement, 1))
    with pytest.raises(LmscopeError, match=message):
        presets.load(broken, PAGES)


def test_the_real_file_loads(tmp_path: Path) -> None:
    copy = tmp_path / "presets.toml"
    copy.write_text(presets.PATH.read_text())
    assert list(presets.load(copy, PAGES).presets) == list(catalog.presets())


# ---- every preset renders and shows what its caption says --------------------------------------------------


@pytest.mark.parametrize("name", list(catalog.presets()))
def test_every_preset_renders_with_its_settings(name: str, rendered: dict[str, Rendered]) -> None:
    preset, done = catalog.preset(name), rendered[name]
    assert done.figure.layout.title.text == preset.title
    assert done.model == preset.model and done.handle.fingerprint
    assert done.settings["preset"] == name and done.settings["version"] == preset.version
    assert done.settings["text"] == preset.text and done.settings["probe_versions"]
    assert set(done.settings["options"]) == set(preset.options)
    picked = done.settings["picked"]
    assert {k: v for k, v in done.query.items() if k not in picked} == {
        k: v for k, v in preset.query.items() if k not in picked
    }
    assert all(done.query[k] == str(v) for k, v in picked.items())
    json.dumps(done.settings)  # what the index stores
    assert judge(done).ok  # the caption's claim, recomputed from the probe results


def test_sinks_first_column_dominates_beyond_the_first_layers(rendered: dict[str, Rendered]) -> None:
    done = rendered["sinks-average-logits"]
    value = done.results["corpus"]
    layers = done.settings["options"]["layers"]
    assert (value.n_sentences, value.n_tokens) == (256, 16)
    assert len(done.figure.data) == len(layers)
    local = {10, 11}  # the caption's exceptions: SmolLM2 looks at nearby tokens again there
    for trace, layer in zip(done.figure.data, layers):
        z = _z(trace)
        np.testing.assert_allclose(z, _causal(value.layer_logits[layer].astype(np.float64)), rtol=1e-6)
        means = np.array([np.nanmean(z[max(k, 1) :, k]) for k in range(z.shape[1])])  # queries that see key k
        assert (means[0] > means[1:].max()) == (layer >= 2 and layer not in local), f"layer {layer}"
    every = [
        np.nanmean(_causal(m.astype(np.float64))[1:, 0]) > np.nanmax(np.nanmean(m[1:, 1:], axis=0))
        for m in value.layer_logits
    ]
    assert {i for i in range(2, value.n_layers) if not every[i]} == local


def test_the_sink_share_lines_are_the_probe_shares(rendered: dict[str, Rendered]) -> None:
    done = rendered["sinks-share-by-layer"]
    result = done.results["attention"]
    shares = np.asarray(done.figure.data[0].y, dtype=float)
    np.testing.assert_allclose(shares, result.sink_share.mean(axis=1), rtol=1e-6)
    n = len(result.tokens)
    even = np.mean(1 / np.arange(2, n + 1))  # query q spreading evenly over its q + 1 keys gives token 0 1/(q+1)
    assert {i for i in range(2, len(shares)) if shares[i] <= 2 * even} == {10, 11}  # the caption's exceptions


def _head(done: Rendered) -> tuple[int, int]:
    return int(done.query["layer"]), int(done.query["head"])


def test_the_induction_head_is_the_top_scorer_and_draws_its_stripe(rendered: dict[str, Rendered]) -> None:
    done = rendered["heads-induction"]
    scores = done.results["random"].scores["induction"]
    layer, head = _head(done)
    assert scores[layer, head] == scores.max() > 0.3
    z = _z(done.figure.data[0])  # the map drawn: random tokens R + R (SmolLM2 adds no BOS)
    n = done.settings["options"]["seq_len"]
    second = np.arange(n, 2 * n)
    assert z[second, second - n + 1].mean() == pytest.approx(scores[layer, head], abs=2e-3)  # float16 maps


def test_the_previous_token_head_looks_one_back_on_the_text(rendered: dict[str, Rendered]) -> None:
    done = rendered["heads-previous-token"]
    random_scores = done.results["random"].previous_token
    layer, head = _head(done)
    assert random_scores[layer, head] == random_scores.max() > 0.5
    z = _z(done.figure.data[0])
    q = np.arange(1, len(z))
    assert z[q, q - 1].mean() > 0.5  # on the text too, most weight goes one token back
    assert np.mean(np.nanargmax(z[1:], axis=1) == q - 1) > 0.9  # "almost every token"
    assert z[q, q - 1].mean() == pytest.approx(done.results["text"].previous_token[layer, head], abs=2e-3)


def test_the_delimiter_head_looks_at_punctuation(rendered: dict[str, Rendered]) -> None:
    done = rendered["heads-delimiter"]
    result = done.results["text"]
    layer, head = _head(done)
    assert result.delimiter_share[layer, head] == result.delimiter_share.max() > 0.5
    z = np.nan_to_num(_z(done.figure.data[0]))
    marks = [i for i, t in enumerate(result.tokens) if i > 0 and t.strip() in {",", ".", ";"}]
    assert marks and z[1:, marks].sum(axis=1).mean() > 0.5


def test_the_atlas_is_the_induction_scores_with_types(rendered: dict[str, Rendered]) -> None:
    done = rendered["heads-atlas"]
    on_random, on_text = done.results["random"], done.results["text"]
    np.testing.assert_allclose(_z(done.figure.data[0]), on_random.scores["induction"], rtol=1e-6)
    kinds = heads.classify(on_text, on_random, done.results["reversed"])
    assert [row[1] for row in done.figure.data[1].customdata] == kinds.labels.ravel().tolist()
    assert (kinds.dominant == "induction").sum() >= 1


def test_the_masks_keep_what_their_titles_say(rendered: dict[str, Rendered]) -> None:
    done = rendered["structured-masks"]
    result = done.results["attention"]
    layer, head = _head(done)
    assert result.sink_share[layer, head] == result.sink_share.max()
    real = np.nan_to_num(_z(done.figure.data[0]))
    kept = [float((real * np.nan_to_num(_z(trace))).sum(axis=1).mean()) for trace in done.figure.data[1:]]
    titles = [a.text for a in done.figure.layout.annotations][1 : 1 + len(kept)]
    for share, title in zip(kept, titles):
        assert f"keeps {share:.0%}" in title
    full, sliding, dilated, global_sliding, block = kept
    assert full == pytest.approx(1.0, abs=2e-3) and min(global_sliding, block) > 0.8 > max(sliding, dilated)


def test_the_budget_chart_draws_every_pattern_with_and_without_sinks(rendered: dict[str, Rendered]) -> None:
    done = rendered["structured-budget"]
    sweep = done.results["patterns"]
    lines = done.figure.data[:-1]
    assert len(lines) == 2 * len(structured.PATTERNS) == 2 * len(sweep.patterns)
    for trace, (i, k) in zip(lines, np.ndindex(sweep.nll.shape[0], 2)):
        np.testing.assert_allclose(np.asarray(trace.x, dtype=float), sweep.budget[i, :, k])
        np.testing.assert_allclose(np.asarray(trace.y, dtype=float), sweep.nll[i, :, k])
    sunk, plain = sweep.nll[..., 1], sweep.nll[..., 0]
    assert np.all(sunk < plain)  # at every pattern and size the sinks help
    assert float(done.figure.data[-1].y[0]) == pytest.approx(sweep.nll_full)


def test_the_cost_chart_draws_each_way_of_computing_attention(rendered: dict[str, Rendered]) -> None:
    done = rendered["structured-cost"]
    cost = done.results["cost"]
    assert cost.lengths.tolist() == [256, 512, 1024, 2048] and str(done.query["cost"]) == "1"
    legend = [trace for trace in done.figure.data if trace.showlegend is not False]
    for i, kind in enumerate(cost.kinds):
        assert f"attention time ∝ n^{cost.exponent(kind):.2f}" in legend[i].name
        np.testing.assert_allclose(np.asarray(legend[i].y, dtype=float), cost.attention_seconds[i])
    assert cost.peak_bytes[0, -1] > cost.peak_bytes[2, -1]  # at the longest, eager needs more memory than the window


def test_sink_tokens_recover_the_windowed_loss(rendered: dict[str, Rendered]) -> None:
    done = rendered["structured-loss-by-window"]
    sweep = done.results["sweep"]
    without, with_sinks, full = (np.asarray(trace.y, dtype=float) for trace in done.figure.data)
    np.testing.assert_allclose(without, sweep.nll_window.mean(axis=1))
    assert np.all(with_sinks < without) and np.all(with_sinks > full[0] - 0.05)
    assert without[0] - full[0] > 2 * (with_sinks[0] - full[0])  # the sinks recover most of the gap


def test_the_surface_labels_the_largest_activation(rendered: dict[str, Rendered], smollm2: ModelHandle) -> None:
    done = rendered["massive-surface"]
    result = done.results["activations"]
    layer = int(done.query["layer"])
    assert layer == int(np.argmax(result.max_abs))
    peak = done.figure.layout.scene.annotations[0]
    assert float(peak.z) == pytest.approx(float(result.max_abs[layer]), rel=1e-6)
    assert f"{result.max_abs[layer]:,.0f}" in peak.text
    ids = encode(smollm2, done.preset.text, 4096).token_ids
    hidden = direct(smollm2, ids, output_hidden_states=True).hidden_states[layer + 1][0]  # the output of block `layer`
    assert float(hidden.abs().max()) == pytest.approx(float(peak.z), rel=1e-4)
    assert float(peak.z) > 100 and float(peak.z) > 1000 * float(hidden.abs().median())


def test_the_lines_are_the_top_magnitudes(rendered: dict[str, Rendered]) -> None:
    done = rendered["massive-lines"]
    result = done.results["activations"]
    np.testing.assert_allclose(np.asarray(done.figure.data[0].y), result.max_abs, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(done.figure.data[3].y), result.median_abs, rtol=1e-6)
    assert (result.max_abs / result.median_abs).max() > 1000


def test_zeroing_the_massive_activations_breaks_the_model(rendered: dict[str, Rendered]) -> None:
    done = rendered["massive-ablation"]
    bars = np.asarray(done.figure.data[0].y, dtype=float)
    ablated = done.results["ablation"]
    expected = [np.exp(ablated.nll_base.mean()), np.exp(ablated.nll_zeroed.mean()), np.exp(ablated.nll_mean.mean())]
    np.testing.assert_allclose(bars[:3], expected, rtol=1e-6)
    unchanged, zeroed, mean, random = bars
    assert zeroed > 10 * unchanged and abs(mean / unchanged - 1) < 0.05 and abs(random / unchanged - 1) < 0.05


def _histogram_matches(figure: object, values: np.ndarray) -> None:
    """The drawn bars are the density histogram of the values, on the figure's own bins."""
    bars = figure.data[0]
    centers, density = np.asarray(bars.x, dtype=float), np.asarray(bars.y, dtype=float)
    width = float(bars.width)
    edges = np.concatenate([centers - width / 2, centers[-1:] + width / 2])
    counts = np.array([np.sum((values >= lo) & (values < hi)) for lo, hi in zip(edges[:-1], edges[1:])])
    np.testing.assert_allclose(density, counts / (values.size * width), rtol=2e-3, atol=1e-12)


def test_the_weight_histogram_is_the_matrix(rendered: dict[str, Rendered], smollm2: ModelHandle) -> None:
    done = rendered["weights-histogram"]
    name = done.settings["options"]["matrix"]
    weight = smollm2.model.get_submodule(name).weight.detach().double().numpy().ravel()
    _histogram_matches(done.figure, weight)
    standard = (weight - weight.mean()) / weight.std()
    assert abs(np.mean(standard**4) - 3) < 3 and np.mean(np.abs(standard) > 6) < 1e-3  # near-Gaussian
    assert 0.0027 < np.mean(np.abs(standard) > 3) < 0.02  # heavier tails, about 1 in 100 beyond 3 std


def test_the_activation_histogram_has_far_outliers(rendered: dict[str, Rendered], smollm2: ModelHandle) -> None:
    done = rendered["activations-histogram"]
    layer = int(done.query["layer"])
    ids = encode(smollm2, done.preset.text, 4096).token_ids
    hidden = direct(smollm2, ids, output_hidden_states=True).hidden_states[layer + 1][0].double().numpy().ravel()
    _histogram_matches(done.figure, hidden)
    robust = 1.4826 * np.median(np.abs(hidden - np.median(hidden)))
    assert np.abs(hidden - np.median(hidden)).max() > 20 * robust


def test_the_esd_fit_and_the_spectrum(rendered: dict[str, Rendered], smollm2: ModelHandle) -> None:
    done = rendered["weights-esd"]
    name = done.settings["options"]["matrix"]
    chosen = done.results["spectra"].get(name)
    weight = smollm2.model.get_submodule(name).weight.detach().double()
    singular = torch.linalg.svdvals(weight).numpy()
    np.testing.assert_allclose(chosen.singular_values, singular, rtol=1e-6)
    fit = next(t for t in done.figure.data if t.name and t.name.startswith("power law"))
    assert f"alpha = {chosen.alpha:.2f}" in fit.name and 1 < chosen.alpha < 10
    mp_x, mp_density = spectra.marchenko_pastur(chosen.shape, float(weight.std()) ** 2)
    assert singular.max() ** 2 > mp_x[mp_density > 0].max()  # the top eigenvalue leaves the random bulk


def test_alpha_lines_are_every_block_matrix(rendered: dict[str, Rendered]) -> None:
    done = rendered["weights-alpha"]
    matrices = [m for m in done.results["spectra"].matrices if m.layer >= 0]
    drawn = sum(len(t.y) for t in done.figure.data)
    assert drawn == len(matrices) == 30 * 7
    alphas = np.array([m.alpha for m in matrices])
    assert np.mean((alphas >= 2) & (alphas <= 6)) > 0.5
    above = {t.name: np.mean(np.asarray(t.y, dtype=float) > 6) for t in done.figure.data}
    assert {kind for kind, share in above.items() if share > MOSTLY} == {"v", "up"}  # "mostly lie above it"


def test_energy_curves_are_the_singular_values(rendered: dict[str, Rendered], smollm2: ModelHandle) -> None:
    done = rendered["rank-energy"]
    q = [smollm2.model.get_submodule(f"model.layers.{i}.self_attn.q_proj").weight.detach().double() for i in range(30)]
    held = [float(np.cumsum(s**2)[57] / np.sum(s**2)) for s in (torch.linalg.svdvals(w).numpy() for w in q)]
    curve = next(t for t in done.figure.data if t.name == "q")
    assert float(curve.y[9]) == pytest.approx(np.mean(held), rel=1e-6)  # x = 10%: the top 58 of 576
    assert float(curve.y[9]) > 0.1  # above the flat spectrum


def _text_nll(handle: ModelHandle, text: str) -> float:
    ids = encode(handle, text, 4096).token_ids
    logits = direct(handle, ids).logits[0, :-1]
    return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(ids[1:])))


def test_quantization_beats_pruning_per_byte(rendered: dict[str, Rendered], smollm2: ModelHandle) -> None:
    done = rendered["pruning-vs-quantization"]
    tradeoff = done.results["tradeoff"]
    points = {p.label: p for p in tradeoff.points}
    assert points["8-bit"].bytes_per_weight < points["50% pruned"].bytes_per_weight
    assert points["8-bit"].nll_text < points["50% pruned"].nll_text
    assert points["8-bit"].nll_text < points["2:4"].nll_text
    assert tradeoff.base_nll_text == pytest.approx(_text_nll(smollm2, done.preset.text), rel=1e-4)
    assert tradeoff.n_sentences == 16
    star = next(t for t in done.figure.data if t.name and t.name.startswith("unchanged"))
    assert float(star.y[0]) == pytest.approx(tradeoff.base_nll_text)


def test_full_rank_is_the_model_and_low_rank_is_not(rendered: dict[str, Rendered], smollm2: ModelHandle) -> None:
    done = rendered["rank-truncation"]
    sweep = done.results["sweep"]
    y = np.asarray(done.figure.data[0].y, dtype=float)
    assert int(sweep.ranks[-1]) == 576 and y[-1] == pytest.approx(sweep.base_nll, abs=1e-9)
    assert sweep.base_nll == pytest.approx(_text_nll(smollm2, done.preset.text), rel=1e-4)
    assert np.all(y[:-1] > sweep.base_nll + 0.5)  # "only at full rank"


def test_routing_rings_each_tokens_top_k(rendered: dict[str, Rendered]) -> None:
    done = rendered["moe-routing"]
    layer = done.results["routing"].router(int(done.query["layer"]))
    assert (layer.n_experts, layer.top_k) == (16, 4)
    top1, others = done.figure.data[1], done.figure.data[2:]
    np.testing.assert_array_equal(np.asarray(top1.x), np.argmax(layer.logits, axis=1))
    chosen = np.stack([np.asarray(top1.x)] + [np.asarray(t.x) for t in others], axis=1)
    assert all(len(set(row)) == 4 for row in chosen.tolist())
    np.testing.assert_array_equal(chosen, layer.experts)


def test_the_trained_routing_check_reads_the_softmax_gates(rendered: dict[str, Rendered]) -> None:
    done = rendered["moe-trained-routing"]
    verdict = judge(done)
    assert verdict.ok and "by Softmax(x·W_g)" in verdict.finding
    routing = copy.deepcopy(done.results["routing"])
    layer = routing.router(int(done.query["layer"]))
    layer.weights[:] = 1 / layer.top_k  # equal gates: not the router's
    broken = judge(dataclasses.replace(done, results={**done.results, "routing": routing}))
    assert broken.ok is False and "renormalised" in broken.finding


def _moved_to_layer_2(delta: np.ndarray) -> np.ndarray:
    moved = delta.copy()
    moved[2, 0], moved[1] = delta.max(), 0.0
    return moved


@pytest.mark.parametrize(
    ("name", "key", "broken"),
    [
        # a spike at the second token, not the first
        ("massive-surface", "layer", lambda v: dataclasses.replace(v, values=np.roll(v.values, 1, axis=0))),
        # the trained MoE as good as dense: the caption says "though not to dense"
        ("moe-capacity", "training", lambda v: dataclasses.replace(v, dense_nll=float(v.trained_nll.max()) + 1)),
        # the routed experts used less evenly than by the untrained router: the caption says more evenly
        ("moe-training", "training", lambda v: dataclasses.replace(v, trained_cv=v.untrained_cv + 1)),
        # the top head outside layer 1, which the caption names
        ("head-drop-grid", "dropped_heads", lambda v: dataclasses.replace(v, delta=_moved_to_layer_2(v.delta))),
    ],
)
def test_a_caption_check_fails_when_the_claim_it_checks_does_not_hold(
    rendered: dict[str, Rendered], name: str, key: str, broken
) -> None:
    done = rendered[name]
    assert judge(done).ok
    verdict = judge(dataclasses.replace(done, results={**done.results, key: broken(done.results[key])}))
    assert verdict.ok is False


def test_the_load_bars_are_the_routed_shares(rendered: dict[str, Rendered]) -> None:
    done = rendered["moe-load"]
    layer = done.results["routing"].router(int(done.query["layer"]))
    counts = np.bincount(layer.experts.ravel(), minlength=16)
    np.testing.assert_allclose(np.asarray(done.figure.data[0].y), counts / counts.sum())
    assert f"CV {counts.std() / counts.mean():.2f}" in done.figure.layout.title.subtitle.text


def test_all_experts_active_is_the_dense_model(rendered: dict[str, Rendered], smollm2: ModelHandle) -> None:
    done = rendered["moe-loss-by-k"]
    loss = done.results["loss"]
    dense = _text_nll(smollm2, done.preset.text)
    assert loss.dense_nll == pytest.approx(dense, rel=1e-5)
    for trace in done.figure.data:
        x, y = np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
        assert x[-1] == 1.0 and y[-1] == loss.dense_nll  # k = E: exactly the dense model
        assert y[0] > y[-1]
    for experts in (8, 16, 32):  # the oracle router never loses more than the fitted one
        assert np.all(loss.nll["oracle"][experts] <= loss.nll["fitted"][experts])


def test_the_atlas_page_opens_on_the_induction_head(rendered: dict[str, Rendered]) -> None:
    done = rendered["heads-induction"]
    at = open_page(done.preset.page, **done.query)
    assert not at.exception and not at.error and not texts(at.warning)
    layer, head = _head(done)
    assert (at.session_state["heads_layer"], at.session_state["heads_head"]) == (layer, head)
    assert at.session_state["heads_score"] == "induction"


def test_the_sinks_page_opens_on_the_same_corpus_figure(rendered: dict[str, Rendered]) -> None:
    done = rendered["sinks-average-logits"]
    at = open_page(done.preset.page, **done.query)
    assert not at.exception and not at.error
    spec = json.loads(at.get("plotly_chart")[-1].proto.spec)
    for drawn, trace in zip(spec["data"], done.figure.data):
        np.testing.assert_allclose(plotly_array(drawn["z"]), _z(trace), rtol=1e-6)


COMPARING = ("sinks-every-decoder", "massive-every-decoder")


@pytest.mark.parametrize("name", COMPARING)
def test_a_comparing_preset_draws_and_checks_every_model(name: str, rendered: dict[str, Rendered]) -> None:
    done = rendered[name]
    models = [done.model, *done.preset.compare]
    assert [o.name for o in done.others] == list(done.preset.compare) and done.settings["compare"] == models[1:]
    assert list(dict.fromkeys(trace.legendgroup for trace in done.figure.data)) == models  # each model's lines
    assert set(done.results) == set(models)  # each model's result kept for the check
    assert all(model.split("@")[0] in judge(done).finding for model in models)  # checked on each model
    at = open_page(done.preset.page, **done.query)  # the page opens on the same comparison
    assert not at.exception and not at.error
    spec = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if "relative depth" in json.loads(c.proto.spec)["layout"].get("xaxis", {}).get("title", {}).get("text", "")
    )
    for drawn, trace in zip(spec["data"], done.figure.data, strict=True):
        np.testing.assert_allclose(plotly_array(drawn["y"]), np.asarray(trace.y, dtype=np.float64), rtol=1e-9)


def test_export_compares_the_models_it_is_given(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--preset", "massive-every-decoder,heads-induction", "--out", str(tmp_path), "--format", "svg"]
    assert export.main([*argv, "--compare", "gemma3-270m,smollm2-135m-instruct"]) == 1  # heads-induction: one model
    index = json.loads((tmp_path / "index.json").read_text())
    (figure,) = index["figures"]
    assert figure["settings"]["model"] == "gemma3-270m" and figure["settings"]["compare"] == ["smollm2-135m-instruct"]
    assert "compare=smollm2-135m-instruct" in figure["url"]
    assert "Measured on gemma3-270m" in figure["caption"]  # written for SmolLM2, checked on each model drawn
    assert "heads-induction draws one model: run it on another with --model" in index["errors"][0]["error"]
    assert "gemma3-270m" in (tmp_path / "massive-every-decoder.svg").read_text()
    capsys.readouterr()


# ---- slides -------------------------------------------------------------------------------------------------


ON_GEMMA = ("sinks-share-by-layer", "massive-lines", "heads-induction", "weights-histogram")


@pytest.mark.gguf
@pytest.mark.parametrize("name", ON_GEMMA)
def test_a_caption_on_another_model_is_measured_there_or_says_it_does_not_apply(
    name: str, gemma3: ModelHandle, shared_cache: ResultCache
) -> None:
    preset = catalog.preset(name)
    done = render(preset, gemma3, shared_cache)
    verdict = judge(done)
    written = caption(done, verdict)
    assert not done.own_model and preset.caption not in written  # SmolLM2's numbers never appear under Gemma's figure
    assert f"written for {preset.model}" in written
    if verdict.ok:
        assert written.startswith(f"Measured on {gemma3.name}: {verdict.finding}")
    else:
        assert f"does not hold on {gemma3.name}" in written and verdict.finding in written


def test_slides_scale_the_fonts_and_keep_the_colours(rendered: dict[str, Rendered]) -> None:
    done = rendered["structured-masks"]
    big = slide(done.figure, 1920, 1080, caption=done.preset.caption)
    small = slide(done.figure, 960, 540, titles=False)
    assert (big.layout.width, big.layout.height) == (1920, 1080)
    assert big.layout.font.size == 2 * small.layout.font.size > done.figure.layout.template.layout.font.size
    assert big.layout.coloraxis.colorscale == done.figure.layout.coloraxis.colorscale
    assert big.layout.title.text == done.preset.title and not small.layout.title.text
    caption = big.layout.annotations[-1]
    assert caption.text.replace("<br>", " ") == " ".join(done.preset.caption.split())
    assert done.figure.layout.width is None  # the original is untouched


# ---- the export command -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "nope", "--out", "{tmp}"], "Unknown preset 'nope'"),
        (["--preset", "heads-induction", "--out", "{tmp}", "--size", "0x10"], "--size must be WIDTHxHEIGHT"),
        (["--preset", "heads-induction", "--out", "{tmp}", "--size", "big"], "--size must be WIDTHxHEIGHT"),
        (["--preset", "heads-induction", "--out", "{tmp}", "--format", "png,gif"], "--format takes png, svg, pdf"),
        (["--preset", "heads-induction", "--out", "{tmp}/file/sub"], "Cannot write to the output folder"),
        (["--out", "{tmp}"], "the following arguments are required: --preset"),
        (
            ["--preset", "heads-induction", "--out", "{tmp}", "--model", "no-such-model"],
            "Unknown model 'no-such-model'",
        ),
    ],
)
def test_export_errors_are_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    assert export.main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not (tmp_path / "index.json").exists()


def _run_export(out: Path, cache: Path) -> subprocess.CompletedProcess:
    argv = ["--preset", ",".join(EXPORTED), "--out", str(out), "--format", "png,svg,pdf", "--size", "1280x720"]
    env = {**os.environ, "LMSCOPE_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "lecture.export", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two exports of the same presets into one fresh cache: the first computes, the second reads the cache."""
    root = tmp_path_factory.mktemp("export")
    for run in ("first", "second"):
        done = _run_export(root / run, root / "cache")
        assert done.returncode == 0, done.stderr
    return root / "first", root / "second"


def test_export_writes_png_svg_and_pdf_at_the_size(exports: tuple[Path, Path]) -> None:
    out = exports[0]
    for name in EXPORTED:
        png = (out / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (1280, 720)
        svg = (out / f"{name}.svg").read_text()
        root = re.search(r"<svg[^>]*>", svg).group(0)
        assert 'width="1280"' in root and 'height="720"' in root
        assert html.escape(catalog.preset(name).title, quote=False) in svg
        pdf = (out / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF")
        box = [float(v) for v in re.search(rb"/MediaBox\s*\[([^\]]+)\]", pdf).group(1).split()]
        assert (box[2] - box[0]) / (box[3] - box[1]) == pytest.approx(1280 / 720, rel=1e-3)


def test_export_index_says_what_produced_each_figure(exports: tuple[Path, Path]) -> None:
    index = json.loads((exports[0] / "index.json").read_text())
    assert index["size"] == "1280x720" and index["formats"] == ["png", "svg", "pdf"] and index["errors"] == []
    assert [f["preset"] for f in index["figures"]] == list(EXPORTED)
    for figure in index["figures"]:
        preset = catalog.preset(figure["preset"])
        assert (figure["title"], figure["caption"], figure["version"]) == (preset.title, preset.caption, preset.version)
        assert figure["files"] == {fmt: f"{preset.name}.{fmt}" for fmt in ("png", "svg", "pdf")}
        assert figure["model"] == preset.model and len(figure["fingerprint"]) >= 16
        assert figure["settings"]["options"] and figure["settings"]["text"] == preset.text
        assert figure["check"]["ok"] and figure["seconds"] >= 0 and figure["cached"] is False
        assert figure["url"].startswith("/Head_atlas?" if preset.name == "heads-induction" else "/Massive_activations?")
    markdown = (exports[0] / "index.md").read_text()
    assert all(f"({name}.png)" in markdown for name in EXPORTED)


def test_a_second_export_comes_from_the_cache(exports: tuple[Path, Path]) -> None:
    first, second = (json.loads((out / "index.json").read_text())["figures"] for out in exports)
    assert all(f["cached"] for f in second) and not any(f["cached"] for f in first)
    assert [f["fingerprint"] for f in first] == [f["fingerprint"] for f in second]
    assert sum(f["seconds"] for f in second) < sum(f["seconds"] for f in first)
