"""The views that read a dense MLP, opened on the trained MoE: each says what it needs (an information, never an
error), shows what does not need it, and offers the dense model the MoE was built from."""

from __future__ import annotations

import pytest

from runtime.builtin import TRAINED_MOE
from runtime.handle import ModelHandle
from tests.helpers import chart, open_page, texts

TEXT = "The quick brown fox jumps over the lazy dog. Then it ran home."
NEEDS_DENSE = "instead of one dense MLP"


def test_neurons_page_counts_no_neurons_but_draws_the_hidden_states(smollm2: ModelHandle) -> None:
    page = "app_pages/6_Distributions_and_neurons.py"
    at = open_page(page, model=TRAINED_MOE.name, text=TEXT, layer="3", sentences="4")
    assert not at.exception and not at.error, texts(at.error)
    assert f"{NEEDS_DENSE}, and counting MLP neurons needs a dense MLP" in texts(at.info)
    assert "excess kurtosis" in chart(at, 0)["layout"]["title"]["subtitle"]["text"]  # the hidden states still are
    at.button[0].click().run()  # back to the dense model it was built from
    assert not at.exception and at.session_state["lm_model"] == smollm2.name
    assert "z > 0" in chart(at, 1)["layout"]["title"]["text"]


def test_pruning_page_stops_before_any_work() -> None:
    at = open_page("app_pages/9_Pruning.py", model=TRAINED_MOE.name, text=TEXT)
    assert not at.exception and not at.error, texts(at.error)
    assert f"{NEEDS_DENSE}, and this view needs a dense MLP" in texts(at.info) and not at.get("plotly_chart")
    assert at.button[0].label.startswith(f"Use {TRAINED_MOE.base}")


@pytest.mark.slow  # the spectra of every matrix of the MoE
def test_weight_spectra_page_says_the_experts_are_left_out() -> None:
    at = open_page("app_pages/8_Weight_spectra.py", model=TRAINED_MOE.name, text=TEXT)
    assert not at.exception and not at.error, texts(at.error)
    assert "listing the MLP matrices" in texts(at.info)
    assert "mlp.experts" not in str(chart(at, 1)) and "self_attn" in str(chart(at, 2))
