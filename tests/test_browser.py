"""End to end: a real `streamlit run app.py` on loopback, driven by Playwright in Debian's chromium."""

from __future__ import annotations

import json
import zipfile
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page

from tests.browser import ARTIFACTS, WAIT_MS, click_cell, location, look, open_view


def test_type_text_then_open_the_attention_view(server: str, page: Page) -> None:
    open_view(page, server)
    page.wait_for_selector("text=Tokens", timeout=WAIT_MS)
    area = page.get_by_role("textbox", name="Text")
    area.fill("Induction heads copy what followed the last time: red apple, green pear, red apple.")
    area.press("Control+Enter")
    look(page, shows='span[title^="position"]:has-text("pear")', name="home")
    page.get_by_role("link", name="Attention: heatmaps").click()
    look(page, charts=2, name="attention-typed")
    assert "pear" in page.locator(".js-plotly-plot").first.inner_text()
    assert "text=" in location(page) and "pear" in location(page)


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "gemma3-270m", "all-minilm-l6-v2"])
def test_attention_page_on_each_builtin(server: str, page: Page, model: str) -> None:
    query = urlencode(
        {"model": model, "text": "The sink takes what nobody else wants. Then it rests.", "layer": 2, "head": 1}
    )
    look(page, f"{server}/Attention?{query}", charts=2, name=f"attention-{model}")
    assert "Layer 2, head 1" in page.locator(".js-plotly-plot").first.inner_text()


def test_clicking_a_grid_cell_selects_that_head(server: str, page: Page) -> None:
    text = "One head looks back; another looks at the start."
    look(page, f"{server}/Attention?{urlencode({'text': text})}", charts=2)
    click_cell(page, page.locator(".js-plotly-plot").nth(1), layer=12, head=5)
    look(page, shows='text="Layer 12, head 5: attention weights"', name="attention-clicked")
    assert "layer=12" in location(page) and "head=5" in location(page)


def test_clicking_an_atlas_cell_opens_that_head(server: str, page: Page) -> None:
    look(page, f"{server}/Head_atlas", charts=1)
    click_cell(page, page.locator(".js-plotly-plot").first, layer=18, head=6)
    look(page, shows='text="Layer 18, head 6: attention weights"')
    page.get_by_role("tab", name="repeated").click()
    look(page, name="atlas-clicked")
    assert "layer=18" in location(page) and "head=6" in location(page)
    page.get_by_role("tab", name="Attention by offset").click()
    look(page, shows='text="Layer 18, head 6: attention by offset"')
    assert "induction + sink" in page.locator(".js-plotly-plot", has_text="attention by offset").inner_text()
    assert "heads pass more than one" in page.locator(".js-plotly-plot", has_text="Head types of").inner_text()


def test_sparse_and_low_rank_page_draws_the_opening_slide(server: str, page: Page) -> None:
    look(page, f"{server}/Sparse_and_low_rank?layer=15&matrix=q", charts=2, name="sparse-low-rank")
    plots = page.locator(".js-plotly-plot")
    assert "an image is, a trained weight matrix is not" in plots.nth(0).inner_text()
    assert "layer 15 q" in plots.nth(0).inner_text() and "Gaussian" in plots.nth(0).inner_text()
    assert "5% of the DCT coefficients" in plots.nth(1).inner_text()


def test_neurons_page_shows_dead_relu_neurons(server: str, page: Page) -> None:
    look(page, f"{server}/Distributions_and_neurons?sentences=8", charts=3, name="neurons-relu")
    relu = page.locator(".js-plotly-plot", has_text="Dead ReLU neurons")
    relu.scroll_into_view_if_needed()
    assert "72 of its 400 hidden neurons" in relu.inner_text() and "never" in relu.inner_text()


def test_structured_attention_page_draws_masks_and_losses(server: str, page: Page) -> None:
    text = "The first tokens soak up attention. A window that hides them costs the model dearly, sinks keep it calm."
    query = urlencode({"text": text, "layer": 3, "head": 2, "window": 6, "sinks": 2})
    look(page, f"{server}/Structured_attention?{query}", charts=5, name="structured-attention")
    plots = page.locator(".js-plotly-plot")
    assert "keeps" in plots.nth(0).inner_text() and "dilated w=6, d=2" in plots.nth(0).inner_text()
    assert "block-sparse b=6, r=1" in plots.nth(0).inner_text()
    assert "full attention" in plots.nth(2).inner_text()
    budget = plots.nth(4).inner_text()
    assert "block-sparse + 2 sinks" in budget and "attention budget" in budget


def test_gemmas_sliding_window_layers_are_marked(server: str, page: Page) -> None:
    query = urlencode({"model": "gemma3-270m", "text": "Local layers see 512 tokens, global layers see them all."})
    look(page, f"{server}/Attention_sinks?{query}", charts=2, name="gemma-sliding-layers")
    share = page.locator(".js-plotly-plot").nth(0).inner_text()
    assert "sliding window: sees only the last 512 tokens" in share and "4*" in share


def test_bad_url_gets_messages_not_tracebacks(server: str, page: Page) -> None:
    look(page, f"{server}/Attention?layer=400&head=abc", shows="text=is out of range")
    look(page, f"{server}/?model=no/such-model", shows="text=Unknown model")


def test_attention_sinks_page_draws_its_charts(server: str, page: Page) -> None:
    query = urlencode(
        {"text": "The first token soaks up attention. Later tokens have nowhere else to look.", "sentences": 16}
    )
    look(page, f"{server}/Attention_sinks?{query}", charts=8, name="attention-sinks")
    plots = page.locator(".js-plotly-plot")
    assert "Sink share by layer" in plots.nth(0).inner_text()
    assert "Why sinks form" in plots.nth(2).inner_text()
    assert "the first key takes" in plots.nth(3).inner_text()  # the softmax toy
    assert "The sink takes the weight, not the output" in plots.nth(4).inner_text()
    assert "Take the sink away" in plots.nth(5).inner_text()
    assert "over 16 sentences of 16 tokens" in plots.nth(7).inner_text()


def test_compare_mode_overlays_two_and_three_models_by_relative_depth(server: str, page: Page) -> None:
    text = "The first token soaks up attention. Later tokens have nowhere else to look."
    query = urlencode({"text": text, "sentences": 8, "compare": "gemma3-270m,smollm2-135m-instruct@untrained"})
    look(page, f"{server}/Massive_activations?{query}", charts=6, name="compare-massive-three")
    chart = page.locator(".js-plotly-plot", has_text="relative depth")
    drawn = chart.evaluate("el => el.calcdata.map(c => [c[0].trace.name, c.length, c[c.length - 1].x])")
    layers = {"smollm2-135m-instruct": 30, "gemma3-270m": 18, "smollm2-135m-instruct@untrained": 30}
    assert drawn == [  # top 1, top 2 and the median of each model, by relative depth
        [f"{model} ({n} layers): {series}", n, 1]
        for model, n in layers.items()
        for series in ("top 1", "top 2", "median")
    ]
    assert "compare=gemma3-270m" in location(page)  # the choice stays in the URL
    look(page, f"{server}/Attention_sinks?{urlencode({'text': text, 'compare': 'gemma3-270m'})}", charts=9)
    chart = page.locator(".js-plotly-plot", has_text="relative depth")
    assert chart.evaluate("el => el.data.length") == 2
    chart.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "compare-sinks-two.png"))


def test_massive_activations_surface_renders_in_webgl(server: str, page: Page) -> None:
    query = urlencode(
        {"text": "The first token and the first period carry huge values. Then nothing does.", "sentences": 8}
    )
    look(page, f"{server}/Massive_activations?{query}", charts=5, name="massive-activations")
    surface = page.locator(".js-plotly-plot").first
    # The 3D scene drew into a WebGL canvas with its labelled peak, and the lines chart has its log axis.
    assert surface.locator("canvas").count() > 0
    assert surface.evaluate("el => el._fullLayout.scene.annotations.length") == 3
    assert "dim " in surface.evaluate("el => el._fullLayout.scene.annotations[0].text")
    assert page.locator(".js-plotly-plot").nth(1).evaluate("el => el._fullLayout.yaxis.type") == "log"
    assert "layer=" in location(page)


def test_weight_spectra_page_draws_the_esd_and_alpha(server: str, page: Page) -> None:
    query = urlencode({"matrix": "model.layers.5.mlp.down_proj", "ranks": "64"})
    look(page, f"{server}/Weight_spectra?{query}", charts=5, name="weight-spectra")
    plots = page.locator(".js-plotly-plot")
    assert "Spectrum of model.layers.5.mlp.down_proj" in plots.nth(0).inner_text()
    assert plots.nth(0).evaluate("el => el._fullLayout.xaxis.type") == "log"
    assert "alpha across layers" in plots.nth(1).inner_text()
    assert "matrix=model.layers.5.mlp.down_proj" in location(page)


def test_expert_routing_page_on_the_derived_moe(server: str, page: Page) -> None:
    query = urlencode(
        {
            "model": "smollm2-135m-moefied",
            "text": "The river flows past the old mill, and children throw stones into the water.",
            "layer": 12,
            "experts": 16,
            "k": 4,
        }
    )
    look(page, f"{server}/Expert_routing?{query}", charts=5)
    plots = page.locator(".js-plotly-plot")
    assert "Routing of layer 12: top-4 of 16 experts per token" in plots.nth(0).inner_text()
    # Four chosen experts per token: the top-1 markers plus three more ranks, on top of the heatmap.
    assert plots.nth(0).evaluate("el => el.data.length") == 5
    chips = page.locator('span[title*="expert"]')
    assert chips.count() > 10 and "rgba(" in (chips.first.get_attribute("style") or "")
    page.get_by_text("Sankey diagram").click()
    look(page, shows=".js-plotly-plot .sankey", name="expert-routing")
    assert "experts=16" in location(page) and "k=4" in location(page)
    with page.expect_download(timeout=WAIT_MS) as download:
        page.get_by_role("button", name="Export this page's figures").click()
    archive = zipfile.ZipFile(download.value.path())
    titles = [entry["title"] for entry in json.loads(archive.read("index.json"))]
    assert len(titles) == plots.count() and titles[0].startswith("Routing of layer 12")
    assert archive.read(json.loads(archive.read("index.json"))[0]["files"][0]).startswith(b"\x89PNG")


def test_expert_routing_page_on_the_trained_moe(server: str, page: Page) -> None:
    text = "The river flows past the old mill, and children throw stones into the water."
    query = urlencode({"model": "smollm2-135m-moe", "text": text, "layer": 12, "token": 3})
    look(page, f"{server}/Expert_routing?{query}", charts=7, name="expert-routing-trained")
    plots = page.locator(".js-plotly-plot")
    assert "Routing of layer 12: top-2 of 14 experts per token" in plots.nth(0).inner_text()
    assert "plus 2 shared expert(s) every token uses" in plots.nth(0).inner_text()
    body = page.inner_text("body")
    assert "y = Σ G(x)ᵢ Eᵢ(x) for one token" in body and "Token ␣past (position 3), block 12" in body
    shown = plots.count()
    titles = " | ".join(plots.nth(i).inner_text() for i in range(shown))
    assert "Loss against active parameters" in titles and "How the MoE was trained" in titles
    page.get_by_text("Measure the loss of your text").click()
    look(page, charts=shown + 1)
    titles = " | ".join(plots.nth(i).inner_text() for i in range(plots.count()))
    assert "Loss against the number of active experts" in titles


def test_concepts_page_draws_a_words_equation(server: str, page: Page) -> None:
    look(page, f"{server}/Concepts?{urlencode({'word': 'king', 'atoms': 4})}", charts=1, name="concepts")
    figure = page.locator(".js-plotly-plot").first
    assert "“king” as 4 of 256 atoms: reconstruction error" in figure.inner_text()
    assert figure.evaluate("el => el.data.length") == 6  # four atoms' blocks, the residual's, the coefficients
    assert "word=king" in location(page) and "layer=embeddings" in location(page)


def test_lottery_tickets_page_draws_its_three_lines(server: str, page: Page) -> None:
    look(page, f"{server}/Lottery_tickets?{urlencode({'rounds': 3, 'seeds': 2})}", charts=1, name="lottery-tickets")
    figure = page.locator(".js-plotly-plot").first
    assert "Winning tickets" in figure.inner_text() and "dense network" in figure.inner_text()
    axis = figure.evaluate("el => [el._fullLayout.xaxis.type, ...el._fullLayout.xaxis.range]")
    assert axis[0] == "log" and axis[1] > axis[2]  # reversed: sparser to the right
    assert figure.evaluate("el => el.data.filter(t => t.mode === 'lines+markers').length") == 3
    assert "rounds=3" in location(page) and "seeds=2" in location(page)


def test_fine_tuning_page_compares_lora_with_full_fine_tuning(server: str, page: Page) -> None:
    # The default runs: read from the model store when tests/test_finetune.py or the lecture trained them.
    matrix = "model.layers.15.self_attn.v_proj"
    query = urlencode({"rank": 8, "steps": 30, "matrix": matrix})
    look(page, f"{server}/Fine_tuning?{query}", charts=3, name="fine-tuning")
    plots = page.locator(".js-plotly-plot")
    assert "LoRA against full fine-tuning" in plots.nth(0).inner_text()
    assert plots.nth(0).evaluate("el => el.data.filter(t => t.name.endsWith('held-out')).length") == 2
    assert matrix in plots.nth(1).inner_text() and plots.nth(1).evaluate("el => el._fullLayout.yaxis.type") == "log"
    assert "subspace similarity" in plots.nth(2).inner_text()
    assert "rank=8" in location(page) and "steps=30" in location(page) and "matrix=model.layers.15" in location(page)


def test_pruning_page_drops_heads(server: str, page: Page) -> None:
    # tests/test_dropped_heads.py's text and settings: in a full run the probes' results come from the cache.
    query = urlencode(
        {
            "text": "The cat sat on the mat. Then the cat slept, and the dog watched.",
            "methods": "prune,quantize",
            "sparsities": "50",
            "bits": "8, 4",
            "sentences": 3,
            "seeds": 2,
            "drop_heads": 1,
        }
    )
    look(page, f"{server}/Pruning?{query}", charts=4, name="dropped-heads")
    plots = page.locator(".js-plotly-plot")
    assert "Robustness" in plots.nth(1).inner_text()
    assert "Loss increase when one head is dropped" in plots.nth(2).inner_text()
    assert plots.nth(2).evaluate("el => el.data[0].colorbar.title.text") == "NLL increase (nats)"
    assert "least important first" in plots.nth(3).inner_text()
    assert "drop_heads=1" in location(page) and "seeds=2" in location(page)


def test_logit_lens_page_names_each_layers_prediction(server: str, page: Page) -> None:
    text = "The Colosseum is in Rome, the capital of Italy."
    look(page, f"{server}/Logit_lens?{urlencode({'model': 'gemma3-270m', 'text': text})}", charts=2, name="logit-lens")
    grid = page.locator(".js-plotly-plot").first
    rows = grid.evaluate("el => el._fullData[0].z.length")
    assert rows == 19  # the embeddings and Gemma 3's 18 blocks
    top = grid.evaluate("el => el.data[0].text[el.data[0].text.length - 1]")  # the model's own prediction
    assert "␣Italy" in top or "␣Rome" in top  # read where the model names the city or the country
    assert "colour=top_prob" in location(page)


def test_attention_compares_two_texts_side_by_side(server: str, page: Page) -> None:
    query = urlencode(
        {
            "text": "The cat sat on the mat. The cat sat on the mat.",
            "compare_by": "texts",
            "compare_text": "Once upon a time there was a fox.",
            "layer": "20",
            "head": "1",
        }
    )
    look(page, f"{server}/Attention?{query}", charts=4, name="compare-attention-texts")
    maps = page.locator(".js-plotly-plot", has_text="side by side").first
    assert maps.evaluate("el => el.data.length") == 2
    assert maps.evaluate("el => new Set(el.data.map(t => t.zmax)).size") == 1  # one colour scale
    assert "compare_by=texts" in location(page)


def test_a_links_values_show_as_typed_with_no_link_or_image(server: str, page: Page) -> None:
    """Values from a link reach warnings and the sidebar: the browser shows them as typed, with no link (not even a
    bare URL, which Markdown would link by itself) and no image for every reader's browser to fetch."""
    link, image = "[log in](http://evil.example/)", "![x](http://127.0.0.1:9/p.png)"
    query = urlencode({"summary": link, "head": image, "text": f"Mail a@b.example or see www.evil.example: {link}"})
    look(page, f"{server}/Attention?{query}", shows='[data-testid="stAlertContentWarning"]', charts=1, name="md-link")
    alerts, sidebar = page.get_by_test_id("stAlertContentWarning"), page.get_by_test_id("stSidebar")
    shown = " ".join(alerts.nth(i).inner_text() for i in range(alerts.count())).replace("\u2060", "")
    assert link in shown and image in shown
    assert "[log in](http://evil.example/)" in sidebar.inner_text().replace("\u2060", "")
    for where in (alerts, sidebar.get_by_test_id("stMarkdownContainer")):
        assert where.locator("a").count() == 0 and where.locator("img").count() == 0
