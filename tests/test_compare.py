"""Compare mode on the pages: up to two more models beside the page's own, chosen in the URL, their per-layer
measure on one chart by relative depth; bad choices in a link are a warning, not an error."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from runtime.cache import ResultCache
from runtime.handle import ModelHandle
from tests.helpers import chart, open_page, plotly_array, texts
from views.compare import MEASURES
from views.registry import views
from viz.compare import relative_depth

TEXT = "The cat sat on the mat. The cat sat on the mat again."


def _compared(at: AppTest) -> dict:
    charts = [chart(at, i) for i in range(len(at.get("plotly_chart")))]
    found = [c for c in charts if "relative depth" in str(c["layout"].get("xaxis", {}).get("title", ""))]
    assert len(found) <= 1
    return found[0] if found else {}


def test_relative_depth_puts_the_first_block_at_0_and_the_last_at_1() -> None:
    np.testing.assert_allclose(relative_depth(30)[[0, 15, 29]], [0, 15 / 29, 1])
    np.testing.assert_allclose(relative_depth(18)[[0, 17]], [0, 1])
    assert list(relative_depth(1)) == [0.0]


@pytest.mark.parametrize(
    ("page", "view"),
    [
        ("app_pages/4_Attention_sinks.py", "sinks"),
        ("app_pages/5_Massive_activations.py", "massive"),
        ("app_pages/6_Distributions_and_neurons.py", "neurons"),
        ("app_pages/7_Weight_distributions.py", "weights"),
        ("app_pages/8_Weight_spectra.py", "spectra"),
    ],
)
def test_each_page_compares_its_per_layer_measure(
    page: str, view: str, smollm2: ModelHandle, minilm: ModelHandle
) -> None:
    at = open_page(page, model=smollm2.name, text=TEXT, compare=minilm.name)
    assert not at.exception and not at.error
    drawn = _compared(at)
    measure = MEASURES[view]
    expected = [  # each model's series in order: (its name and layers, the values)
        (handle, label, values)
        for handle in (smollm2, minilm)
        for label, values in measure.values(measure.probe(handle, TEXT, ResultCache(), None).value).items()
    ]
    assert len(drawn["data"]) == len(expected)
    for trace, (handle, label, values) in zip(drawn["data"], expected, strict=True):
        assert (
            trace["name"].startswith(f"{handle.name} ({handle.n_layers} layers)")
            and trace["legendgroup"] == handle.name
        )
        np.testing.assert_allclose(plotly_array(trace["y"]), values, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(plotly_array(trace["x"]), relative_depth(handle.n_layers))
    key = next(v.key for v in views() if v.page == page)
    assert at.session_state[f"{key}_compare"] == [minilm.name]  # kept per page, as every setting


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
