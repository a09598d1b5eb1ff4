"""What the browser tests share: a real `streamlit run app.py` on loopback, and Debian's chromium through Playwright."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from tests.server import ROOT, serving

ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots of the browser tests' pages, for a look after a run
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard served on a free loopback port; its log must show no traceback."""
    with serving(tmp_path_factory.mktemp("streamlit") / "server.log") as running:
        yield running.url
    assert "Traceback" not in running.output(), running.output()[-3000:]


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


def settle(page: Page) -> None:
    """Wait until the script has finished its run."""
    page.wait_for_timeout(500)
    page.wait_for_selector(IDLE, timeout=WAIT_MS)


def no_exception(page: Page) -> None:
    """Assert that the page shows no exception box."""
    assert page.locator('[data-testid="stException"]').count() == 0


def location(page: Page) -> str:
    """The address bar now (Streamlit rewrites it with history.replaceState, which page.url can miss)."""
    return page.evaluate("location.href")


def click_cell(page: Page, grid: Locator, layer: int, head: int) -> None:
    """Click the centre of a layer x head grid cell, located through Plotly's own axis mapping."""
    x, y = grid.evaluate(
        """(el, [layer, head]) => {
            const l = el._fullLayout, box = el.getBoundingClientRect();
            return [box.left + l.xaxis._offset + l.xaxis.l2p(head), box.top + l.yaxis._offset + l.yaxis.l2p(layer)];
        }""",
        [layer, head],
    )
    page.mouse.click(x, y)


def open_view(page: Page, url: str) -> None:
    """Go to `url` and wait until its script is idle."""
    page.goto(url)
    page.wait_for_selector(IDLE, timeout=WAIT_MS)


def look(page: Page, url: str | None = None, *, charts: int = 0, shows: str | None = None, name: str = "") -> None:
    """Open `url` (or stay where the page is), wait for `shows` (a selector) and for its `charts`-th chart, let the
    script finish, save a full-page screenshot as tests/artifacts/<name>.png (when named), assert no exception."""
    if url is not None:
        open_view(page, url)
    if shows is not None:
        page.wait_for_selector(shows, timeout=WAIT_MS)
    if charts:
        page.wait_for_selector(f".js-plotly-plot >> nth={charts - 1}", timeout=WAIT_MS)
    settle(page)
    if name:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    no_exception(page)
