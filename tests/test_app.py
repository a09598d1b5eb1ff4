"""app.py and the pages in Streamlit's AppTest: real models, real probes, no server."""

from __future__ import annotations

import re
from html import unescape

import numpy as np
import pytest
from markdown_it import MarkdownIt

from probes import attention, heads
from probes.long_text import long_text
from runtime.cache import ResultCache
from runtime.handle import ModelHandle
from tests.helpers import APP, chart, open_page, plotly_array, texts
from ui.markdown import WORD_JOINER, literal, read
from ui.state import DEFAULT_TEXT

ATTENTION = "app_pages/1_Attention.py"
ATLAS = "app_pages/2_Head_atlas.py"


def test_home_shows_the_default_model_and_its_tokens(smollm2: ModelHandle) -> None:
    at = open_page(APP)
    assert not at.exception and not at.error
    assert at.selectbox[0].value == "smollm2-135m-instruct"
    assert {m.label: m.value for m in at.metric}["Layers"] == "30"
    assert "Tokens" in texts(at.markdown)
    assert at.query_params["model"] == "smollm2-135m-instruct"
    assert "float32 on cpu" in texts(at.caption) and "Computations run in this process" in texts(at.caption)


def test_home_follows_the_url(minilm: ModelHandle) -> None:
    at = open_page(APP, model="all-minilm-l6-v2", text="Encoders look both ways.")
    assert not at.exception and not at.error
    assert at.selectbox[0].value == "all-minilm-l6-v2"
    assert at.text_area[0].value == "Encoders look both ways."
    assert {m.label: m.value for m in at.metric}["Layers"] == "6"


def test_switching_model_reloads(gemma3: ModelHandle) -> None:
    at = open_page(APP)
    at.selectbox[0].set_value("gemma3-270m").run()
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["Layers"] == "18"
    assert at.query_params["model"] == "gemma3-270m"


def test_other_model_path_that_does_not_exist() -> None:
    at = open_page(APP)
    at.selectbox[0].set_value(at.selectbox[0].options[-1]).run()
    at.text_input[0].input("/no/such/model").run()
    assert not at.exception
    assert "Unknown model" in texts(at.error)


@pytest.mark.parametrize(("model", "message"), [("nobody/nothing", "Unknown model"), ("../etc", "Unknown model")])
def test_unknown_model_in_the_url(model: str, message: str) -> None:
    for script in (APP, ATTENTION):
        at = open_page(script, model=model)
        assert not at.exception
        assert message in texts(at.error)


def test_empty_text_gets_a_message() -> None:
    at = open_page(APP)
    at.text_area[0].input("   \n ").run()
    assert not at.exception
    assert "empty" in texts(at.error)


def test_long_text_offers_truncation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSCOPE_MAX_TOKENS", "16")
    monkeypatch.setenv("LMSCOPE_LONG_TOKENS", "16")
    at = open_page(APP, text="Sinks soak up attention. " * 20)
    assert not at.exception
    assert "more than the limit of 16 tokens" in texts(at.error)
    next(b for b in at.button if b.label.startswith("Truncate")).click().run()
    assert not at.exception and not at.error
    assert at.text_area[0].value.startswith("Sinks soak up attention.")
    assert "Tokens" in texts(at.markdown)


@pytest.mark.slow  # a text of 1,500 tokens through the long views: tens of seconds
def test_a_long_text_reaches_the_long_views_and_the_others_say_their_limit(
    smollm2: ModelHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMSCOPE_MAX_TOKENS", "1000")
    monkeypatch.setenv("LMSCOPE_LONG_TOKENS", "1500")  # the model's context (8,192) takes minutes on 2 cores
    at = open_page(APP)
    next(b for b in at.button if b.label.startswith("Try a long text")).click().run()
    assert not at.exception and not at.error
    assert at.text_area[0].value.startswith(long_text()[:40])
    assert "This text has 1,500 tokens. The Attention, Head atlas, Structured attention" in texts(at.info)
    assert "(the first 2,000" not in texts(at.markdown) and "1500" in texts(at.markdown)
    text = at.text_area[0].value
    attention_page = open_page("app_pages/1_Attention.py", text=text, layer="3", head="1")
    assert not attention_page.exception and not attention_page.error and len(attention_page.get("plotly_chart")) == 2
    massive = open_page("app_pages/5_Massive_activations.py", text=text, sentences="6")
    assert not massive.exception and not massive.error and "Ablation reads at most 1,000 tokens" in texts(massive.info)
    lens = open_page("app_pages/14_Logit_lens.py", text=text)
    assert not lens.exception and "more than the limit of 1000 tokens" in texts(lens.error)


def test_odd_unicode_text_works() -> None:
    at = open_page(APP, text="naïve café 🙂 \u200b שלום 中文 \x00")
    assert not at.exception and not at.error


def test_attention_page_draws_the_chosen_head(smollm2: ModelHandle, tmp_path) -> None:
    text = "Heads specialise: some look back one token."
    at = open_page(ATTENTION, text=text, layer="4", head="7")
    assert not at.exception and not at.error and not at.warning
    assert (at.number_input[0].value, at.number_input[1].value) == (4, 7)
    heatmap = chart(at, 0)["data"][0]
    expected = attention.run(smollm2, text, ResultCache(tmp_path)).value.maps[4, 7].astype(float)
    z = plotly_array(heatmap["z"]).astype(float)
    lower = np.tril(np.ones_like(expected, dtype=bool))
    np.testing.assert_allclose(z[lower], expected[lower])
    assert len(at.get("plotly_chart")) == 2
    assert at.query_params["layer"] == "4" and at.query_params["head"] == "7"


@pytest.mark.parametrize(
    ("layer", "head", "message"),
    [("99", "0", "layer=99 is out of range"), ("x", "2", "not a number"), ("1", "-3", "head=-3 is out of range")],
)
def test_bad_layer_or_head_in_the_url(smollm2: ModelHandle, layer: str, head: str, message: str) -> None:
    at = open_page(ATTENTION, layer=layer, head=head)
    assert not at.exception and not at.error
    assert message in texts(at.warning)
    assert 0 <= at.number_input[0].value < 30 and 0 <= at.number_input[1].value < 9


LINK, IMAGE = "[log in here](http://evil.example/)", "![x](http://127.0.0.1:9/pixel.png)"


@pytest.mark.parametrize(
    "typed",
    [
        LINK,
        IMAGE,
        "*a* _b_ `c` <b>d</b> $e$ :red[f] # g",
        "a\\b \\* C:\\x",
        "one\n\n    two*\n- three",
        "é ✓ a@b.example",
    ],
)
def test_literal_markdown_shows_what_was_typed(typed: str) -> None:
    """Rendered as CommonMark, ui.markdown.literal's text is the typed text: no markup, and a line break a break."""
    html = MarkdownIt().render(literal(typed))
    assert not re.search(r"<(?!/?p>|br />)", html), html  # nothing but the paragraph and its line breaks
    shown = unescape(html.removeprefix("<p>").removesuffix("</p>\n").replace("<br />\n", "\n"))
    assert shown.strip().replace(WORD_JOINER, "") == "\n".join(line.strip() for line in typed.split("\n")).strip()
    assert read(literal(typed)) == typed  # what the warm step and the tests read back


def test_a_links_values_are_shown_as_written_never_as_markdown(smollm2: ModelHandle) -> None:
    """A link's values reach warnings, errors and the sidebar: Markdown renders them as typed, with no link or image
    (an image would make every reader's browser fetch it)."""
    at = open_page(ATTENTION, summary=LINK, head=IMAGE, text=f"{LINK} **bold**")
    bad_model = open_page(ATTENTION, model=f"/{LINK}")
    shown = [*at.warning, *at.sidebar.markdown, *bad_model.error]
    assert not at.exception and not bad_model.exception and len(at.warning) == 2 and bad_model.error
    for element in shown:
        html = MarkdownIt().render(str(element.value))
        assert "<a " not in html and "<img" not in html and "<strong>bold" not in html, html
    assert LINK in texts(at.warning) and IMAGE in texts(at.warning) and LINK in texts(bad_model.error)


def test_a_links_values_are_refused_whole_or_said_to_be_cut(smollm2: ModelHandle) -> None:
    """A string setting over its length is refused with a message (never cut into another value: `1, 20` cut after
    a run of spaces once read `1, 2`); a linked text over MAX_URL_TEXT is cut, and the page says so."""
    spaced = "1," + " " * 198 + "20"
    at = open_page("app_pages/3_Structured_attention.py", **{"global": spaced})
    assert not at.exception and "is longer than 200 characters; showing global 16." in texts(at.warning)
    assert len(texts(at.warning)) < 300  # the value is quoted, not echoed whole
    at = open_page(ATTENTION, text="understanding " * 1100)  # 572 tokens once cut
    assert not at.exception and not at.error
    assert "The link's text has 15,400 characters: it is cut to its first 8,000." in texts(at.warning)
    assert "cut to its first" not in texts(at.run().warning)  # said once


@pytest.mark.parametrize("model", ["gemma3-270m", "all-minilm-l6-v2"])
def test_attention_page_on_other_builtins(model: str, request: pytest.FixtureRequest) -> None:
    at = open_page(ATTENTION, model=model, text="Sinks and delimiters.", layer="1", head="1")
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 2


def test_logits_toggle_from_the_url(smollm2: ModelHandle, tmp_path) -> None:
    text = "Logits come before the softmax."
    at = open_page(ATTENTION, text=text, layer="6", head="1", logits="1")
    assert not at.exception and not at.error
    assert at.toggle(key="attention_logits").value
    figure = chart(at, 0)
    assert "logits" in figure["layout"]["title"]["text"]
    expected = attention.run(smollm2, text, ResultCache(tmp_path), with_logits=True).value.logits[6, 1].astype(float)
    lower = np.tril(np.ones_like(expected, dtype=bool))
    np.testing.assert_allclose(plotly_array(figure["data"][0]["z"]).astype(float)[lower], expected[lower])
    at.toggle(key="attention_logits").set_value(False).run()
    assert "weights" in chart(at, 0)["layout"]["title"]["text"] and at.query_params["logits"] == "0"


def test_one_token_text_on_the_attention_page() -> None:
    at = open_page(ATTENTION, text="Hi")
    assert not at.exception
    assert "at least two tokens" in texts(at.error)


def test_summary_choice_recolours_the_grid() -> None:
    at = open_page(ATTENTION, summary="entropy")
    assert not at.exception
    assert at.selectbox(key="attention_summary").value == "entropy"
    assert "Entropy" in chart(at, 1)["layout"]["title"]["text"]


def test_atlas_colours_heads_by_induction(smollm2: ModelHandle, tmp_path) -> None:
    at = open_page(ATLAS, layer="17", head="3")
    assert not at.exception and not at.error
    grid = chart(at, 0)
    expected = heads.run(smollm2, ResultCache(tmp_path), 50, 0).value.scores["induction"]
    np.testing.assert_allclose(plotly_array(grid["data"][0]["z"]), expected, rtol=1e-6)
    assert "Layer 17, head 3" in chart(at, 1)["layout"]["title"]["text"]
    assert "Highest-scoring heads" in texts(at.markdown)


def test_atlas_shows_the_offsets_the_reversed_copy_and_the_mixed_heads(smollm2: ModelHandle) -> None:
    at = open_page(ATLAS, layer="16", head="0", score="types_passed")
    assert not at.exception and not at.error
    kinds = heads.types_of(smollm2, DEFAULT_TEXT, ResultCache()).value
    np.testing.assert_array_equal(plotly_array(chart(at, 0)["data"][0]["z"]), kinds.count)
    reversed_map = chart(at, 3)
    assert "Layer 16, head 0" in reversed_map["layout"]["title"]["text"]
    offsets = chart(at, 4)
    assert "attention by offset" in offsets["layout"]["title"]["text"]
    bars = offsets["data"][0]
    assert plotly_array(bars["x"]).tolist() == list(range(9))  # a decoder: 0 to 8 tokens back
    np.testing.assert_allclose(plotly_array(bars["y"]), kinds.profile[16, 0, 8:], rtol=1e-6)
    types = chart(at, 5)
    only, mixed = (plotly_array(trace["y"]) for trace in types["data"])
    assert list(types["data"][0]["x"]) == [*heads.THRESHOLDS, "none"]
    assert (only + mixed).sum() == kinds.passed.sum() + (kinds.count == 0).sum()
    assert f"{int((kinds.count > 1).sum())} of 270 heads pass more than one" in types["layout"]["title"]["text"]


def test_atlas_on_the_encoder_names_cls_and_sep(minilm: ModelHandle) -> None:
    at = open_page(ATLAS, model="all-minilm-l6-v2", score="special_share")
    assert not at.exception and not at.error
    assert "[SEP]" in chart(at, 0)["layout"]["title"]["text"]


def test_atlas_bad_score_in_the_url_falls_back() -> None:
    at = open_page(ATLAS, score="nonsense", layer="77")
    assert not at.exception and not at.error
    assert at.selectbox(key="heads_score").value == "induction"
    assert "layer=77 is out of range" in texts(at.warning)
