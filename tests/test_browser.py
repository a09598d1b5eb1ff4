"""End to end: a real `streamlit run app.py` on loopback, driven by Playwright in Debian's chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from lecture.presets import sections
from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
WAIT_MS = 240_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not become healthy within {seconds} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard served on a free loopback port."""
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address", "127.0.0.1"]
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, 120)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1500, "height": 2400})
    yield context.new_page()
    context.close()


def _settle(page: Page) -> None:
    """Wait until the script has finished its run."""
    page.wait_for_timeout(500)
    page.wait_for_selector(IDLE, timeout=WAIT_MS)


def _no_exception(page: Page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def _location(page: Page) -> str:
    """The address bar now (Streamlit rewrites it with history.replaceState, which page.url can miss)."""
    return page.evaluate("location.href")


def _click_cell(page: Page, grid: Locator, layer: int, head: int) -> None:
    """Click the centre of a layer x head grid cell, located through Plotly's own axis mapping."""
    x, y = grid.evaluate(
        """(el, [layer, head]) => {
            const l = el._fullLayout, box = el.getBoundingClientRect();
            return [box.left + l.xaxis._offset + l.xaxis.l2p(head), box.top + l.yaxis._offset + l.yaxis.l2p(layer)];
        }""",
        [layer, head],
    )
    page.mouse.click(x, y)


def _open(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(IDLE, timeout=WAIT_MS)


def test_type_text_then_open_the_attention_view(server: str, page: Page, artifacts: Path) -> None:
    _open(page, server)
    page.wait_for_selector("text=Tokens", timeout=WAIT_MS)
    area = page.get_by_role("textbox", name="Text")
    area.fill("Induction heads copy what followed the last time: red apple, green pear, red apple.")
    area.press("Control+Enter")
    page.wait_for_selector('span[title^="position"]:has-text("pear")', timeout=WAIT_MS)
    _settle(page)
    page.screenshot(path=str(artifacts / "home.png"), full_page=True)
    _no_exception(page)
    page.get_by_role("link", name="Attention: heatmaps").click()
    page.wait_for_selector(".js-plotly-plot >> nth=1", timeout=WAIT_MS)
    _settle(page)
    page.screenshot(path=str(artifacts / "attention-typed.png"), full_page=True)
    _no_exception(page)
    assert "pear" in page.locator(".js-plotly-plot").first.inner_text()
    assert "text=" in _location(page) and "pear" in _location(page)


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "gemma3-270m", "all-minilm-l6-v2"])
def test_attention_page_on_each_builtin(server: str, page: Page, artifacts: Path, model: str) -> None:
    query = urlencode({"model": model, "text": "The sink takes what nobody else wants. Then it rests.", "layer": 2, "head": 1})
    _open(page, f"{server}/Attention?{query}")
    page.wait_for_selector(".js-plotly-plot >> nth=1", timeout=WAIT_MS)
    _settle(page)
    page.screenshot(path=str(artifacts / f"attention-{model}.png"), full_page=True)
    _no_exception(page)
    assert "Layer 2, head 1" in page.locator(".js-plotly-plot").first.inner_text()


def test_clicking_a_grid_cell_selects_that_head(server: str, page: Page, artifacts: Path) -> None:
    _open(page, f"{server}/Attention?{urlencode({'text': 'One head looks back; another looks at the start.'})}")
    grid = page.locator(".js-plotly-plot").nth(1)
    grid.wait_for(timeout=WAIT_MS)
    _settle(page)
    _click_cell(page, grid, layer=12, head=5)
    page.wait_for_selector('text="Layer 12, head 5: attention weights"', timeout=WAIT_MS)
    _settle(page)
    page.screenshot(path=str(artifacts / "attention-clicked.png"), full_page=True)
    _no_exception(page)
    assert "layer=12" in _location(page) and "head=5" in _location(page)


def test_clicking_an_atlas_cell_opens_that_head(server: str, page: Page, artifacts: Path) -> None:
    _open(page, f"{server}/Head_atlas")
    grid = page.locator(".js-plotly-plot").first
    grid.wait_for(timeout=WAIT_MS)
    _settle(page)
    _click_cell(page, grid, layer=18, head=6)
    page.wait_for_selector('text="Layer 18, head 6: attention weights"', timeout=WAIT_MS)
    _settle(page)
    page.get_by_role("tab", name="random tokens").click()
    page.screenshot(path=str(artifacts / "atlas-clicked.png"), full_page=True)
    _no_exception(page)
    assert "layer=18" in _location(page) and "head=6" in _location(page)


def test_structured_attention_page_draws_masks_and_losses(server: str, page: Page, artifacts: Path) -> None:
    text = "The first tokens soak up attention. A window that hides them costs the model dearly, sinks keep it calm."
    _open(page, f"{server}/Structured_attention?{urlencode({'text': text, 'layer': 3, 'head': 2, 'window': 6, 'sinks': 2})}")
    page.wait_for_selector(".js-plotly-plot >> nth=3", timeout=WAIT_MS)
    _settle(page)
    page.screenshot(path=str(artifacts / "structured-attention.png"), full_page=True)
    _no_exception(page)
    plots = page.locator(".js-plotly-plot")
    assert "keeps" in plots.nth(0).inner_text() and "dilated w=6, d=2" in plots.nth(0).inner_text()
    assert "full attention" in plots.nth(2).inner_text()


def test_bad_url_gets_messages_not_tracebacks(server: str, page: Page) -> None:
    _open(page, f"{server}/Attention?layer=400&head=abc")
    page.wait_for_selector("text=is out of range", timeout=WAIT_MS)
    _no_exception(page)
    _open(page, f"{server}/?model=no/such-model")
    page.wait_for_selector("text=Unknown model", timeout=WAIT_MS)
    _no_exception(page)


def test_attention_sinks_page_draws_its_charts(server: str, page: Page, artifacts: Path) -> None:
    query = urlencode({"text": "The first token soaks up attention. Later tokens have nowhere else to look.", "sentences": 16})
    _open(page, f"{server}/Attention_sinks?{query}")
    page.wait_for_selector(".js-plotly-plot >> nth=3", timeout=WAIT_MS)
    _settle(page)
    page.screenshot(path=str(artifacts / "attention-sinks.png"), full_page=True)
    _no_exception(page)
    plots = page.locator(".js-plotly-plot")
    assert "Sink share by layer" in plots.nth(0).inner_text()
    assert "over 16 sentences of 16 tokens" in plots.nth(3).inner_text()


def test_massive_activations_surface_renders_in_webgl(server: str, page: Page, artifacts: Path) -> None:
    query = urlencode({"text": "The first token and the first period carry huge values. Then nothing does.", "sentences": 8})
    _open(page, f"{server}/Massive_activations?{query}")
    surface = page.locator(".js-plotly-plot").first
    surface.wait_for(timeout=WAIT_MS)
    page.wait_for_selector(".js-plotly-plot >> nth=4", timeout=WAIT_MS)
    _settle(page)
    page.screenshot(path=str(artifacts / "massive-activations.png"), full_page=True)
    _no_exception(page)
    # The 3D scene drew into a WebGL canvas with its labelled peak, and the lines chart has its log axis.
    assert surface.locator("canvas").count() > 0
    assert surface.evaluate("el => el._fullLayout.scene.annotations.length") == 3
    assert "dim " in surface.evaluate("el => el._fullLayout.scene.annotations[0].text")
    assert page.locator(".js-plotly-plot").nth(1).evaluate("el => el._fullLayout.yaxis.type") == "log"
    assert "layer=" in _location(page)


def test_weight_spectra_page_draws_the_esd_and_alpha(server: str, page: Page, artifacts: Path) -> None:
    query = urlencode({"matrix": "model.layers.5.mlp.down_proj", "ranks": "64"})
    _open(page, f"{server}/Weight_spectra?{query}")
    page.wait_for_selector(".js-plotly-plot >> nth=4", timeout=WAIT_MS)
    _settle(page)
    page.screenshot(path=str(artifacts / "weight-spectra.png"), full_page=True)
    _no_exception(page)
    plots = page.locator(".js-plotly-plot")
    assert "Spectrum of model.layers.5.mlp.down_proj" in plots.nth(0).inner_text()
    assert plots.nth(0).evaluate("el => el._fullLayout.xaxis.type") == "log"
    assert "alpha across layers" in plots.nth(1).inner_text()
    assert "matrix=model.layers.5.mlp.down_proj" in _location(page)


def test_expert_routing_page_on_the_derived_moe(server: str, page: Page, artifacts: Path) -> None:
    query = urlencode(
        {
            "model": "smollm2-135m-moefied",
            "text": "The river flows past the old mill, and children throw stones into the water.",
            "layer": 12,
            "experts": 16,
            "k": 4,
        }
    )
    _open(page, f"{server}/Expert_routing?{query}")
    page.wait_for_selector(".js-plotly-plot >> nth=4", timeout=WAIT_MS)
    _settle(page)
    _no_exception(page)
    plots = page.locator(".js-plotly-plot")
    assert "Routing of layer 12: top-4 of 16 experts per token" in plots.nth(0).inner_text()
    # Four chosen experts per token: the top-1 markers plus three more ranks, on top of the heatmap.
    assert plots.nth(0).evaluate("el => el.data.length") == 5
    chips = page.locator('span[title*="expert"]')
    assert chips.count() > 10 and "rgba(" in (chips.first.get_attribute("style") or "")
    page.get_by_text("Sankey diagram").click()
    _settle(page)
    page.wait_for_selector(".js-plotly-plot .sankey", timeout=WAIT_MS)
    page.screenshot(path=str(artifacts / "expert-routing.png"), full_page=True)
    _no_exception(page)
    assert "experts=16" in _location(page) and "k=4" in _location(page)
    with page.expect_download(timeout=WAIT_MS) as download:
        page.get_by_role("button", name="Export this page's figures").click()
    archive = zipfile.ZipFile(download.value.path())
    titles = [entry["title"] for entry in json.loads(archive.read("index.json"))]
    assert len(titles) == plots.count() and titles[0].startswith("Routing of layer 12")
    assert archive.read(json.loads(archive.read("index.json"))[0]["files"][0]).startswith(b"\x89PNG")


def test_lecture_tour_steps_through_every_section_in_presenter_mode(server: str, page: Page, artifacts: Path) -> None:
    _open(page, f"{server}/Lecture_tour?presenter=1&section=0")
    for index, section in enumerate(sections()):
        page.wait_for_selector(f"h2:has-text('{index + 1}. ')", timeout=WAIT_MS)
        if section.presets:
            page.wait_for_selector(f".js-plotly-plot >> nth={len(section.presets) - 1}", timeout=WAIT_MS)
        _settle(page)
        _no_exception(page)
        assert page.locator(".js-plotly-plot").count() == len(section.presets)
        assert not page.locator('[data-testid="stSidebar"]').is_visible(), "presenter mode hides the sidebar"
        page.screenshot(path=str(artifacts / f"tour-{index + 1:02d}.png"), full_page=True)
        page.mouse.click(5, 5)  # focus the page, then step with the keyboard as a presenter would
        page.keyboard.press("ArrowRight")
    assert f"section={len(sections()) - 1}" in _location(page)
