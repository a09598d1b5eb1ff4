"""A class on one server: N browser sessions opened at the same moment, each with its own text, spread over the
pages a lecture uses; time to a settled page, errors, peak server memory, and whether every session's charts equal
the single-user answer.

    python bench/classroom.py [--sessions 1,4,8,16] [--same 6]

For each N: a fresh server and a fresh result cache; the N sessions open at once (cold), then again with the
same texts (warm: the results are in the cache). The single-user answer of each (page, text) comes from a
separate server with its own fresh cache, one session at a time. Then `--same` sessions ask the same cold corpus
view at once, against one session alone. Prints a markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SETTLE_MS = 1_800_000
TEXTS = [
    "The cat sat on the mat because the mat was warm.",
    "Attention sinks appear when a model has nowhere else to look.",
    "My favourite lecture explained why weights look Gaussian.",
    "A sliding window keeps memory small but forgets the start.",
    "Massive activations sit on the first token and the first period.",
    "Pruning removes weights; quantization rounds them instead.",
    "Experts in a mixture each take a share of the tokens.",
    "The induction head copies what came after the last match.",
    "Low rank updates are how LoRA fine-tunes a large model.",
    "Dead neurons never fire on any sentence of the corpus.",
    "Students in the back row typed a question about softmax.",
    "Power laws in the spectrum say the layer learned something.",
    "We met at the station at nine, then walked to the museum.",
    "Paris is the capital of France, and Rome is the capital of Italy.",
    "One two three four five six seven eight nine ten.",
    "The quick brown fox jumps over the lazy dog again and again.",
]
# (page path, extra URL parameters); the routing page runs on the MoE derived from SmolLM2
PAGES = [
    ("Attention", {}),
    ("Attention_sinks", {}),
    ("Massive_activations", {}),
    ("Weight_spectra", {}),
    ("Expert_routing", {"model": "smollm2-135m-moefied"}),
    ("Pruning_vs_quantization", {}),
]
CORPUS_VIEW = ("Attention_sinks", {"sentences": "400", "tokens": "20"})


@dataclass
class Visit:
    page: str
    text: str
    seconds: float
    exceptions: int
    errors: int
    charts: str  # a digest of every chart's data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(cache: Path):
    """A fresh `streamlit run app.py` on loopback with its own result cache; yields (url, peak memory reader)."""
    port = _free_port()
    env = {**os.environ, "LMSCOPE_CACHE_DIR": str(cache), "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    log = open(cache.parent / f"server-{port}.log", "w")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)

    def peak_gb() -> float:
        status = Path(f"/proc/{server.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 2**20

    try:
        yield url, peak_gb
    finally:
        server.terminate()
        server.wait(60)
        log.close()


def _charts(page: Page) -> str:
    """A digest of the data of every chart on the page, in order (what the numbers are, not how they look)."""
    data = page.evaluate(
        """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => JSON.stringify(
            (el.data || []).map(t => ['x', 'y', 'z', 'values', 'text'].map(k => t[k] === undefined ? null
                : Array.from(t[k] && t[k].length !== undefined && typeof t[k] !== 'string' ? t[k] : [t[k]],
                    v => (v && v.length !== undefined && typeof v !== 'string') ? Array.from(v) : v)))))"""
    )
    return hashlib.sha256("\n".join(data).encode()).hexdigest()[:16]


def visit_all(browser: Browser, url: str, visits: list[tuple[str, dict, str]]) -> list[Visit]:
    """Open every visit in its own session at the same moment; wait for each to settle."""
    pages = []
    for page_name, params, text in visits:
        page = browser.new_context(viewport={"width": 1400, "height": 2000}).new_page()
        pages.append((page, time.perf_counter()))
        page.goto(f"{url}/{page_name}?{urlencode({'text': text, **params})}", wait_until="commit")
    state = """() => [
        document.querySelectorAll('.js-plotly-plot, [data-testid="stException"]').length,
        document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state')]"""
    done: list[Visit | None] = [None] * len(pages)
    idle_since: dict[int, float] = {}
    deadline = time.monotonic() + SETTLE_MS / 1000
    # Playwright's sync API is bound to this thread: poll every page in turn. A page is settled once it shows a
    # chart (or an exception) and its script has stopped, twice in a row; its time is the first of the two.
    while any(v is None for v in done):
        assert time.monotonic() < deadline, "sessions did not settle"
        for i, (page, started) in enumerate(pages):
            if done[i] is not None:
                continue
            charts, script = page.evaluate(state)
            if not (charts and script == "notRunning"):
                idle_since.pop(i, None)
            elif i not in idle_since:
                idle_since[i] = time.perf_counter()
            else:
                done[i] = Visit(
                    visits[i][0],
                    visits[i][2],
                    idle_since[i] - started,
                    page.locator('[data-testid="stException"]').count(),
                    page.locator('[data-testid="stAlertContentError"]').count(),
                    _charts(page),
                )
        time.sleep(0.25)
    for page, _ in pages:
        page.context.close()
    return [v for v in done if v is not None]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _assignments(n: int) -> list[tuple[str, dict, str]]:
    return [(PAGES[i % len(PAGES)][0], PAGES[i % len(PAGES)][1], TEXTS[i % len(TEXTS)]) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", default="1,4,8,16")
    parser.add_argument("--same", type=int, default=6)
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    work = Path(tempfile.mkdtemp(prefix="lmscope-classroom-"))
    rows, summary = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        reference: dict[tuple[str, str], str] = {}
        with serving(work / "reference") as (url, _):
            for page_name, params, text in _assignments(max(counts)):
                reference[(page_name, text)] = visit_all(browser, url, [(page_name, params, text)])[0].charts
        for n in counts:
            with serving(work / f"n{n}") as (url, peak_gb):
                for phase in ("cold", "warm"):
                    started = time.perf_counter()
                    visits = visit_all(browser, url, _assignments(n))
                    wall = time.perf_counter() - started
                    wrong = sum(v.charts != reference[(v.page, v.text)] for v in visits)
                    for page_name in sorted({v.page for v in visits}):
                        times = [v.seconds for v in visits if v.page == page_name]
                        rows.append(
                            f"| {n} | {phase} | {page_name} | {len(times)} | {statistics.median(times):.1f} | "
                            f"{_percentile(times, 0.95):.1f} |"
                        )
                    all_times = [v.seconds for v in visits]
                    summary.append(
                        f"| {n} | {phase} | {statistics.median(all_times):.1f} | {_percentile(all_times, 0.95):.1f} | "
                        f"{wall:.0f} | {sum(v.exceptions for v in visits)} | {sum(v.errors for v in visits)} | "
                        f"{wrong} | {peak_gb():.2f} |"
                    )
                    print(summary[-1], flush=True)
        same = []
        for k in (1, args.same):
            with serving(work / f"same{k}") as (url, _):
                started = time.perf_counter()
                visits = visit_all(browser, url, [(CORPUS_VIEW[0], CORPUS_VIEW[1], TEXTS[0])] * k)
                same.append((k, time.perf_counter() - started, len({v.charts for v in visits})))
        browser.close()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    print(
        f"\n## A class on one server ({when}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; `python bench/classroom.py`)\n"
    )
    print("| sessions | cache | median (s) | p95 (s) | all settled (s) | exceptions | error boxes | wrong charts | peak server memory (GB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(summary))
    print("\n| sessions | cache | page | sessions on it | median (s) | p95 (s) |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    (one, t1, _), (k, tk, distinct) = same
    print(
        f"\nSame cold corpus view ({CORPUS_VIEW[0]}, {CORPUS_VIEW[1]}): 1 session {t1:.1f} s; {k} sessions at once "
        f"{tk:.1f} s ({tk / t1:.2f}x), {distinct} distinct chart set(s)."
    )


if __name__ == "__main__":
    main()
