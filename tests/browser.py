"""What the browser tests share: a real `streamlit run app.py` on loopback, and Debian's chromium through Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

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
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
    ]
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


def settle(page: Page) -> None:
    """Wait until the script has finished its run."""
    page.wait_for_timeout(500)
    page.wait_for_selector(IDLE, timeout=WAIT_MS)


def no_exception(page: Page) -> None:
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
    page.goto(url)
    page.wait_for_selector(IDLE, timeout=WAIT_MS)
