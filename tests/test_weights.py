"""Weight distributions, spectra, low rank and compression as the pages and the CLI show them, on the real
built-in models; statistics checked against direct computations on the model's own parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probes import distribution, domains, pruning, spectra
from probes.nll import token_nll
from probes.text import encode
from results.pruning import Compression
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, open_page, plotly_array, texts
from viz.pruning import tradeoff_figure
from viz.spectra import alpha_by_layer, energy_captured, esd_figure, statistic_grid

DISTRIBUTIONS = "app_pages/7_Weight_distributions.py"
SPECTRA = "app_pages/8_Weight_spectra.py"
COMPRESSION = "app_pages/9_Pruning.py"
TEXT = "The cat sat on the mat. Then the cat slept, and the dog watched."


def _parameter(handle: ModelHandle, name: str) -> np.ndarray:
    return dict(handle.model.named_parameters())[f"{name}.weight"].detach().double().numpy()


@pytest.mark.slow  # every matrix of each built-in, against numpy
def test_weight_statistics_equal_a_direct_computation(any_model: ModelHandle, shared_cache: ResultCache) -> None:
    stats = spectra.run(any_model, shared_cache).value
    assert [m.name for m in stats.matrices] == [r.name for r in spectra.block_weights(any_model)]
    for m in stats.matrices[:: max(1, len(stats.matrices) // 12)]:
        w = _parameter(any_model, m.name).ravel()
        z = (w - w.mean()) / w.std()
        assert m.std == pytest.approx(w.std(), rel=1e-9)
        assert m.kurtosis == pytest.approx(np.mean(z**4) - 3, rel=1e-6, abs=1e-9)
        assert m.beyond_3_std == pytest.approx(np.mean(np.abs(z) > 3), abs=1e-12)
        assert m.beyond_6_std == pytest.approx(np.mean(np.abs(z) > 6), abs=1e-12)
    assert spectra.run(any_model, shared_cache).hit


def test_unknown_matrix_gets_a_message(smollm2: ModelHandle) -> None:
    with pytest.raises(LmscopeError, match="model.layers.99.self_attn.q_proj"):
        distribution.describe(spectra.weight_matrix(smollm2, "model.layers.99.self_attn.q_proj"))


def test_energy_captured_matches_the_definition() -> None:
    s = np.array([4.0, 2.0, 1.0, 1.0])
    np.testing.assert_allclose(energy_captured(s, np.array([1, 2, 4])), [16 / 22, 20 / 22, 1.0])


def test_spectra_figures_draw_the_probe_numbers(smollm2: ModelHandle, shared_cache: ResultCache) -> None:
    model_spectra = spectra.run(smollm2, shared_cache).value
    chosen = model_spectra.get("model.layers.4.mlp.down_proj")
    fig = esd_figure(chosen, *spectra.marchenko_pastur(chosen.shape, chosen.std**2))
    assert f"alpha {chosen.alpha:.2f}" in fig.layout.title.subtitle.text
    assert np.asarray(fig.data[-1].y).tolist() == chosen.singular_values.tolist()
    lines = alpha_by_layer(model_spectra)
    down = next(t for t in lines.data if t.name == "down")
    expected = [m.alpha for m in model_spectra.matrices if m.kind == "down"]
    np.testing.assert_allclose(down.y, expected)
    grid = statistic_grid(model_spectra.matrices, "stable_rank", "stable rank", smollm2.name)
    assert np.asarray(grid.data[0].z).shape == (smollm2.n_layers, 7)


def test_distributions_page(smollm2: ModelHandle, tmp_path) -> None:
    at = open_page(DISTRIBUTIONS, matrix="model.layers.2.mlp.up_proj", statistic="beyond_6_std")
    assert not at.exception and not at.error and not at.warning
    assert "model.layers.2.mlp.up_proj" in chart(at, 0)["layout"]["title"]["text"]
    grid = chart(at, 1)
    stats = spectra.run(smollm2, ResultCache(tmp_path)).value
    z = plotly_array(grid["data"][0]["z"])
    up = [m.beyond_6_std for m in stats.matrices if m.kind == "up"]
    kinds = grid["data"][0]["x"]
    np.testing.assert_allclose(z[:, kinds.index("up")], up)
    at.radio(key="weights_statistic").set_value("kurtosis").run()
    assert at.query_params["statistic"] == "kurtosis"


def test_distributions_page_unknown_matrix_in_the_url(smollm2: ModelHandle) -> None:
    at = open_page(DISTRIBUTIONS, matrix="model.layers.77.nothing")
    assert not at.exception and not at.error
    assert "is not a weight matrix of this model" in texts(at.warning)


@pytest.mark.parametrize("model", ["gemma3-270m", "all-minilm-l6-v2"])
def test_distributions_page_on_other_builtins(model: str) -> None:
    at = open_page(DISTRIBUTIONS, model=model)
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 2


def test_spectra_page(smollm2: ModelHandle) -> None:
    at = open_page(SPECTRA, text=TEXT, matrix="model.layers.3.self_attn.v_proj", ranks="16, 576")
    assert not at.exception and not at.error and not at.warning
    titles = [chart(at, i)["layout"]["title"]["text"] for i in range(len(at.get("plotly_chart")))]
    assert titles[0] == "Spectrum of model.layers.3.self_attn.v_proj"
    assert "alpha across layers" in titles and "How low can the rank go?" in titles
    sweep = chart(at, titles.index("How low can the rank go?"))
    nll = (
        plotly_array(sweep["data"][0]["y"])
        if isinstance(sweep["data"][0]["y"], dict)
        else np.array(sweep["data"][0]["y"])
    )
    assert nll[0] > nll[-1]  # rank 16 costs more than full rank


@pytest.mark.parametrize("ranks", ["0", "a, b"])
def test_spectra_page_bad_ranks(smollm2: ModelHandle, ranks: str) -> None:
    at = open_page(SPECTRA, text=TEXT, ranks=ranks)
    assert not at.exception
    assert at.error and ("rank" in texts(at.error).lower())


@pytest.mark.slow  # the pruning page compresses SmolLM2 at its settings
def test_compression_page(smollm2: ModelHandle, tmp_path) -> None:
    at = open_page(
        COMPRESSION,
        text=TEXT,
        methods="prune,wanda,quantize",
        sparsities="50",
        patterns="2:4",
        bits="4",
        sentences="3",
        calibration="4",
        length="64",
    )
    assert not at.exception and not at.error and not at.warning
    fig = chart(at, 0)
    names = {trace.get("name") for trace in fig["data"]}
    assert names >= {
        "magnitude pruning",
        "magnitude pruning 2:4",
        "Wanda pruning",
        "Wanda pruning 2:4",
        "round-to-nearest quantization",
    }
    assert "calibrated on 256 other corpus tokens" in fig["layout"]["title"]["subtitle"]["text"]
    robustness = chart(at, 1)
    assert "Robustness" in robustness["layout"]["title"]["text"]
    assert {trace["name"] for trace in robustness["data"]} >= {"Wanda pruning, 50% pruned", "Wanda pruning, 2:4"}
    at.text_input(key="pruning_bits").input("1").run()
    assert "bit" in texts(at.error)


def test_compression_page_with_nothing_to_compress_says_so(smollm2: ModelHandle) -> None:
    """Pruning methods with no sparsity or pattern (the quantizers' bits do not apply to them): no empty chart."""
    at = open_page(COMPRESSION, text=TEXT, methods="prune,sparsegpt", sparsities="", patterns="", bits="4")
    assert not at.exception and not at.error and not at.get("plotly_chart")
    assert "Nothing to compress" in texts(at.info)


def test_compression_page_on_the_encoder(minilm: ModelHandle) -> None:
    at = open_page(COMPRESSION, model="all-minilm-l6-v2", text=TEXT)
    assert not at.exception and not at.error
    assert "encoder" in texts(at.info)


@pytest.mark.slow  # compresses SmolLM2 and scores it
def test_tradeoff_figure_draws_the_points(smollm2: ModelHandle, shared_cache: ResultCache) -> None:
    from probes import corpus

    done = pruning.tradeoff(smollm2, TEXT, corpus.sentences()[:2], [0.5], [8], shared_cache).value
    fig = tradeoff_figure(done)
    quant = next(t for t in fig.data if t.name == "round-to-nearest quantization")
    point = next(p for p in done.points if p.method == "quantize")
    assert quant.x[0] == pytest.approx(point.bytes_per_weight) and quant.y[0] == pytest.approx(point.nll_text)


@pytest.mark.slow  # loads a model
def test_cli_weights_and_pruning(smollm2: ModelHandle, shared_cache: ResultCache) -> None:
    done = cli("weights", "--model", "smollm2-135m-instruct")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    by_name = {m["name"]: m for m in out["matrices"]}
    blocks = [r for r in spectra.block_weights(smollm2) if r.layer >= 0]
    assert {r.name for r in blocks} <= set(by_name)
    q = by_name["model.layers.0.self_attn.q_proj"]
    assert q["shape"] == list(_parameter(smollm2, "model.layers.0.self_attn.q_proj").shape)
    assert set(q) >= {"alpha", "xmin", "ks_distance", "stable_rank", "spectral_norm", "kurtosis"}
    assert q["spectral_norm"] == pytest.approx(
        np.linalg.norm(_parameter(smollm2, "model.layers.0.self_attn.q_proj"), 2), rel=1e-5
    )
    done = cli("pruning", "--model", "smollm2-135m-instruct", "--text", TEXT, "--bits", "16")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["nll_compressed"] == out["nll_base"]
    assert out["reconstruction_error"] == [0.0] * smollm2.n_layers
    done = cli("pruning", "--model", "smollm2-135m-instruct", "--text", TEXT, "--semi-structured")
    magnitude = json.loads(done.stdout)
    assert (magnitude["method"], magnitude["pattern"]) == ("prune", "2:4")
    assert magnitude["nll_compressed"] > magnitude["nll_base"]
    calibration = ["--calibration", "4", "--length", "64"]
    done = cli(
        "pruning", "--model", "smollm2-135m-instruct", "--text", TEXT, "--nm", "2:4", "--method", "wanda", *calibration
    )
    wanda = json.loads(done.stdout)
    assert (wanda["method"], wanda["pattern"], wanda["calibration_tokens"]) == ("wanda", "2:4", 256)
    assert wanda["bytes_per_weight"] == pytest.approx(1.125)
    assert magnitude["nll_base"] < wanda["nll_compressed"] < magnitude["nll_compressed"]
    assert set(wanda["by_domain"]) == set(domains.TITLES.values())
    assert all(d["nll_compressed"] > d["nll_base"] for d in wanda["by_domain"].values())
    # Each layer's outputs on the text move less under Wanda than under magnitude pruning, and by a share of them.
    errors = {name: np.asarray(out["reconstruction_error"]) for name, out in (("mag", magnitude), ("wanda", wanda))}
    assert all(len(e) == smollm2.n_layers and ((e > 0.01) & (e < 2)).all() for e in errors.values())
    assert (errors["wanda"] < errors["mag"]).mean() > 0.9


@pytest.mark.slow  # loads a model
def test_prune_and_quantize_commands_are_the_pruning_commands_halves(
    smollm2: ModelHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prune` and `quantize` print what `pruning` prints for the same setting, under the method names of the
    literature (magnitude, rtn): one cached result, which the second command reads without computing it again."""
    text = TEXT + " Pruned once."  # a text no other test compresses, so that the first command computes
    base = ("--model", "smollm2-135m-instruct", "--text", text)
    pairs = [
        (("prune", *base, "--sparsity", "0.3"), ("pruning", *base, "--sparsity", "0.3")),
        (
            ("quantize", *base, "--bits", "4", "--method", "rtn", "--group", "64"),
            ("pruning", *base, "--bits", "4", "--group", "64"),
        ),
    ]
    for short, long in pairs:
        done = cli(*short)
        with monkeypatch.context() as patch:
            patch.setattr(pruning.SETTING, "function", lambda **_: pytest.fail("computed again"))
            expected = cli(*long)
        assert done.returncode == 0 == expected.returncode, done.stderr + expected.stderr
        assert json.loads(done.stdout) == json.loads(expected.stdout)
    # The cached losses are the model's on a copy compressed directly.
    pruned = json.loads(cli(*pairs[0][0]).stdout)
    ids = encode(smollm2, text, 512).token_ids
    with pruning.compressed(smollm2, Compression("prune", 0.3)) as small:
        assert pruned["nll_compressed"] == pytest.approx(float(np.mean(token_nll(small, ids))), rel=1e-6)
    assert pruned["nll_base"] == pytest.approx(float(np.mean(token_nll(smollm2, ids))), rel=1e-6)
    done = cli("prune", *base, "--bits", "4")
    assert done.returncode == 2 and "one of the arguments --sparsity" in done.stderr and "Traceback" not in done.stderr
    done = cli("quantize", *base, "--bits", "4", "--method", "sparsegpt")
    assert done.returncode == 2 and "invalid choice" in done.stderr


@pytest.mark.slow  # loads a model
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--sparsity", "1.0"), "sparsity"),
        (("--sparsity", "-0.1"), "sparsity"),
        (("--bits", "1"), "bits"),
        ((), "one of the arguments --sparsity --nm --semi-structured --bits"),
        (("--bits", "4", "--method", "wanda"), "sparsity"),
        (("--sparsity", "0.5", "--group", "64"), "group size"),
    ],
)
def test_cli_pruning_bad_input(args: tuple[str, ...], message: str) -> None:
    done = cli("pruning", "--model", "smollm2-135m-instruct", "--text", TEXT, *args)
    assert done.returncode in (1, 2) and "Traceback" not in done.stderr
    assert message in done.stderr
