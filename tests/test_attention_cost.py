"""The cost of attention against the context length: the chunked kernel equals eager attention on the real
decoders, and the live measurement (in its child process) times and weighs every pass; the CLI and the page."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probes import attention_cost
from probes.nll import token_nll
from probes.structured import masked_nll, sliding_window_mask
from probes.text import encode
from runtime.cache import ResultCache
from runtime.capture import Chunking, capturing, chunking, timing
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import chart, cli, open_page, plotly_array

TEXT = "The quick brown fox jumps over the lazy dog, and the dog sleeps on. " * 12
PAGE = "app_pages/3_Structured_attention.py"


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_chunked_attention_equals_the_models_eager_attention(model: str, request: pytest.FixtureRequest) -> None:
    """Full attention in chunks is the same computation in other blocks (float32 sums in another order); under a
    window it is the sliding-window mask imposed on the eager attention. Gemma's massive activations amplify the
    rounding of the blocked sums at the odd token, hence its wider tolerance."""
    handle: ModelHandle = request.getfixturevalue(model)
    ids = encode(handle, TEXT, 4096).token_ids
    n, tolerance = len(ids), 5e-3 if model == "gemma3" else 1e-4
    assert n > 3 * 64
    eager = token_nll(handle, ids)
    with chunking(handle.model, Chunking(None, 64)):
        chunked = token_nll(handle, ids)
    np.testing.assert_allclose(chunked, eager, atol=tolerance)
    windowed = masked_nll(handle, ids, sliding_window_mask(n, 16))
    with chunking(handle.model, Chunking(16, 64)):
        chunked_window = token_nll(handle, ids)
    np.testing.assert_allclose(chunked_window, windowed, atol=tolerance)
    assert np.median(np.abs(chunked_window - windowed)) < 1e-5 and np.abs(chunked_window - eager).max() > 0.1


def test_chunking_builds_no_mask_and_reports_no_maps(smollm2: ModelHandle) -> None:
    ids = encode(smollm2, TEXT, 4096).token_ids
    seen: list[int] = []
    seconds: list[float] = []
    with capturing(smollm2.model, lambda layer, *_: seen.append(layer)):
        token_nll(smollm2, ids)
    with chunking(smollm2.model, Chunking(None, 64), seconds):
        token_nll(smollm2, ids)
    assert seen == list(range(smollm2.n_layers)) and len(seconds) == smollm2.n_layers and min(seconds) > 0
    timed: list[float] = []
    with timing(smollm2.model, timed):
        token_nll(smollm2, ids)
    assert len(timed) == smollm2.n_layers


@pytest.mark.slow  # a child process times passes
def test_the_measurement_times_and_weighs_every_pass(smollm2: ModelHandle, cache: ResultCache) -> None:
    calls: list[tuple[int, int]] = []
    first = attention_cost.measure(smollm2, [512, 128, 256], 32, cache, lambda *c: calls.append(c))
    cost = first.value
    assert not first.hit and calls[-1] == (9, 9) and cost.lengths.tolist() == [128, 256, 512]
    assert cost.kinds == ["eager", "chunked", "window"] and cost.window == 32 and cost.device == "cpu"
    assert np.all(cost.seconds > cost.attention_seconds) and np.all(cost.attention_seconds > 0)
    assert np.all(cost.peak_bytes > 0)
    # Eager attention holds a layer's (2 x heads + 1) n x n float32 arrays at once: the measured peak covers them.
    assert cost.peak_bytes[0, -1] > 0.8 * attention_cost.eager_bytes(smollm2, 512)
    again = attention_cost.measure(smollm2, [128, 256, 512], 32, cache)
    assert again.hit and again.value.seconds.tolist() == cost.seconds.tolist()


@pytest.mark.parametrize(
    ("lengths", "window", "message"),
    [
        ([], 64, "at least one context length"),
        ([8], 64, "context length .* must be from 16 to 8192"),
        ([16384], 64, "must be from 16 to 8192"),
        (list(range(100, 1000, 100)), 64, "At most 8 context lengths"),
        ([128], 0, "window must be from 1"),
    ],
)
def test_bad_cost_settings_get_clear_messages(
    smollm2: ModelHandle, cache: ResultCache, lengths: list[int], window: int, message: str
) -> None:
    with pytest.raises(LmscopeError, match=message):
        attention_cost.measure(smollm2, lengths, window, cache)


def test_an_encoder_has_no_causal_cost(minilm: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="needs a decoder"):
        attention_cost.measure(minilm, [128], 64, cache)


@pytest.mark.slow  # a child process times passes
def test_cli_attention_cost_prints_the_measurement(cache: ResultCache) -> None:
    done = cli("attention-cost", "--model", "smollm2-135m-instruct", "--lengths", "64, 256", "--window", "32")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["lengths"] == [64, 256] and out["kinds"] == ["eager", "chunked", "window"] and out["window"] == 32
    assert len(out["seconds"]) == 3 and all(len(row) == 2 for row in out["peak_bytes"])
    assert set(out["exponents"]["eager"]) == {"attention_seconds", "seconds", "peak_bytes"}
    done = cli("attention-cost", "--model", "smollm2-135m-instruct", "--lengths", "64, 9000")
    assert done.returncode == 1 and "must be from 16 to 8192" in done.stderr


@pytest.mark.slow  # a child process times passes
def test_the_page_measures_when_asked(smollm2: ModelHandle) -> None:
    quiet = open_page(PAGE, text="A short text for the page.", windows="2")
    assert not quiet.exception and len(quiet.get("plotly_chart")) == 5  # nothing timed unless asked
    # The CLI test's lengths and window: whichever asks first times the passes, the other reads the measurement.
    at = open_page(PAGE, text="A short text for the page.", windows="2", cost="1", lengths="64, 256", cost_window="32")
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 6
    drawn = chart(at, 5)["data"]
    assert drawn[0]["name"].startswith("full attention, eager") and "attention time ∝ n^" in drawn[0]["name"]
    np.testing.assert_array_equal(plotly_array(drawn[0]["x"]).ravel(), [64, 256])
    assert all(np.isfinite(plotly_array(drawn[i]["y"])).all() for i in range(3))
    bad = open_page(PAGE, text="A short text for the page.", windows="2", cost="1", lengths="64, many")
    assert not bad.exception and "whole numbers" in " ".join(e.value for e in bad.error)
