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
import asyncio
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import websockets
from playwright.sync_api import Browser, Page, sync_playwright
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

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
CORPUS_VIEW = ("Attention_sinks", {})  # the sinks page as it opens: its corpus pass (256 sentences) is the shared part


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
        yield url, peak_gb, server.pid
    finally:
        server.terminate()
        server.wait(60)
        log.close()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def chromium() -> list[int]:
    """The pids of every chromium process (the browser and its renderers)."""
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and "chromium" in (p / "comm").read_text(errors="ignore")
    ]


def _charts(page: Page) -> str:
    """The data of every chart on the page, in order, as JSON (what the numbers are, not how they look)."""
    return page.evaluate(
        """() => JSON.stringify([...document.querySelectorAll('.js-plotly-plot')].map(el =>
            (el.data || []).map(t => ['x', 'y', 'z', 'values', 'text'].map(k => t[k] === undefined ? null
                : Array.from(t[k] && t[k].length !== undefined && typeof t[k] !== 'string' ? t[k] : [t[k]],
                    v => (v && v.length !== undefined && typeof v !== 'string') ? Array.from(v) : v)))))"""
    )


# Runs in every page: the moment (ms since navigation started) the page last became settled, i.e. showed a chart
# or an exception with its script stopped; cleared whenever the script runs again. Timed by the page itself, so
# the harness's polling adds nothing.
SETTLE_WATCH = """
setInterval(() => {
    const app = document.querySelector('[data-testid="stApp"]');
    const shown = document.querySelectorAll('.js-plotly-plot, [data-testid="stException"]').length;
    const idle = app && app.getAttribute('data-test-script-state') === 'notRunning';
    if (!(shown && idle)) { window.__settledAt = null; }
    else if (window.__settledAt == null) { window.__settledAt = performance.now(); }
}, 50);
"""
QUIET_S = 1.5  # a page counts as settled once it has stayed settled this long


def visit_all(browser: Browser, url: str, visits: list[tuple[str, dict, str]], charts_to: Path) -> list[Visit]:
    """Open every visit in its own session at the same moment; wait for each to settle; keep each page's chart
    data in charts_to/<index>.json."""
    pages = []
    for page_name, params, text in visits:
        page = browser.new_context(viewport={"width": 1400, "height": 2000}).new_page()
        page.add_init_script(SETTLE_WATCH)
        page.goto(f"{url}/{page_name}?{urlencode({'text': text, **params})}", wait_until="commit")
        pages.append(page)
    deadline = time.monotonic() + SETTLE_MS / 1000
    settled: dict[int, float] = {}
    while len(settled) < len(pages):
        assert time.monotonic() < deadline, "sessions did not settle"
        time.sleep(0.5)
        for i, page in enumerate(pages):
            at, now = page.evaluate("[window.__settledAt, performance.now()]")
            if at is not None and now - at >= QUIET_S * 1000:
                settled[i] = at / 1000
            else:
                settled.pop(i, None)
    charts_to.mkdir(parents=True, exist_ok=True)
    done = []
    for i, page in enumerate(pages):
        data = _charts(page)
        (charts_to / f"{i}.json").write_text(data)
        done.append(
            Visit(
                visits[i][0],
                visits[i][2],
                settled[i],
                page.locator('[data-testid="stException"]').count(),
                page.locator('[data-testid="stAlertContentError"]').count(),
                hashlib.sha256(data.encode()).hexdigest()[:16],
            )
        )
        page.context.close()
    return done


async def _protocol_visit(url: str, page_name: str, query: str) -> tuple[float, int, int]:
    """One session in Streamlit's own protocol (what the browser sends, without drawing anything): seconds until
    the server finished the page's script, exceptions and error boxes it sent."""
    started = time.perf_counter()
    address = url.replace("http://", "ws://") + "/_stcore/stream"
    async with websockets.connect(address, subprotocols=["streamlit"], max_size=None) as socket:
        message = BackMsg()
        message.rerun_script.query_string = query
        message.rerun_script.page_name = page_name
        await socket.send(message.SerializeToString())
        exceptions = errors = 0
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(await socket.recv())
            if forward.WhichOneof("type") == "script_finished":
                return time.perf_counter() - started, exceptions, errors
            element = forward.delta.new_element
            exceptions += element.WhichOneof("type") == "exception"
            errors += element.WhichOneof("type") == "alert" and element.alert.format == Alert.ERROR


def protocol_visits(url: str, visits: list[tuple[str, dict, str]]) -> list[tuple[float, int, int]]:
    """Every visit at the same moment as a protocol session: the server's side of a class whose browsers run on
    the students' own machines."""

    async def together() -> list[tuple[float, int, int]]:
        return await asyncio.gather(
            *(_protocol_visit(url, page, urlencode({"text": text, **params})) for page, params, text in visits)
        )

    with ThreadPoolExecutor(1) as loop:  # Playwright's sync API already runs an event loop in this thread
        return loop.submit(asyncio.run, together()).result()


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
    counts = [int(n) for n in args.sessions.split(",") if n.strip()]
    work = Path(tempfile.mkdtemp(prefix="lmscope-classroom-"))
    rows, summary, mismatched, protocol = [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        reference: dict[tuple[str, str], str] = {}
        with serving(work / "reference") as (url, _, _):
            for page_name, params, text in _assignments(max(counts, default=0)):
                reference[(page_name, text)] = visit_all(
                    browser,
                    url,
                    [(page_name, params, text)],
                    work / "charts" / f"reference-{page_name}-{len(reference)}",
                )[0].charts
        for n in counts:
            with serving(work / f"n{n}") as (url, peak_gb, pid):
                for phase in ("cold", "warm"):
                    server_cpu, browser_cpu = cpu_seconds([pid]), cpu_seconds(chromium())
                    visits = visit_all(browser, url, _assignments(n), work / "charts" / f"n{n}-{phase}")
                    wall = max(v.seconds for v in visits)  # the last session to settle, from the moment all opened
                    server_cpu, browser_cpu = cpu_seconds([pid]) - server_cpu, cpu_seconds(chromium()) - browser_cpu
                    wrong = [(v.page, v.text) for v in visits if v.charts != reference[(v.page, v.text)]]
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
                        f"{len(wrong)} | {peak_gb():.2f} | {server_cpu:.0f} | {browser_cpu:.0f} |"
                    )
                    mismatched += [f"{n} {phase}: {page} on {text!r}" for page, text in wrong]
                    print(summary[-1], flush=True)
                server_cpu = cpu_seconds([pid])
                seen = protocol_visits(url, _assignments(n))
                times = [t for t, _, _ in seen]
                protocol.append(
                    f"| {n} | warm | {statistics.median(times):.2f} | {_percentile(times, 0.95):.2f} | {max(times):.2f} | "
                    f"{sum(e for _, e, _ in seen)} | {sum(e for _, _, e in seen)} | {cpu_seconds([pid]) - server_cpu:.1f} |"
                )
                print(protocol[-1], flush=True)
        same, same_protocol = [], []
        view = (CORPUS_VIEW[0], CORPUS_VIEW[1], TEXTS[0])
        for k in (1, args.same):
            with serving(work / f"same{k}") as (url, _, _):
                visits = visit_all(browser, url, [view] * k, work / "charts" / f"same{k}")
                same.append((k, max(v.seconds for v in visits), len({v.charts for v in visits})))
            with serving(work / f"same{k}-protocol") as (url, _, _):
                same_protocol.append(max(t for t, _, _ in protocol_visits(url, [view] * k)))
        browser.close()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    print(
        f"\n## A class on one server ({when}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; `python bench/classroom.py`)\n"
    )
    print(
        "| sessions | cache | median (s) | p95 (s) | all settled (s) | exceptions | error boxes | wrong charts | "
        "peak server memory (GB) | server CPU (s) | chromium CPU (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(summary))
    print(
        "\nThe server's side alone: the same sessions in Streamlit's own protocol (websocket clients that draw "
        "nothing), all at once, after the browsers' warm round.\n\n| sessions | cache | median (s) | p95 (s) | "
        "slowest (s) | exceptions | error boxes | server CPU (s) |\n|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(protocol))
    print("\n| sessions | cache | page | sessions on it | median (s) | p95 (s) |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nChart data of every visit: {work / 'charts'}")
    if mismatched:
        print("\nCharts that differ from the single-user answer:\n" + "\n".join(f"- {m}" for m in mismatched))
    (one, t1, _), (k, tk, distinct) = same
    p1, pk = same_protocol
    print(
        f"\nSame cold corpus view ({CORPUS_VIEW[0]}, {CORPUS_VIEW[1]}), each on a fresh server: browsers, 1 session "
        f"{t1:.1f} s, {k} sessions at once {tk:.1f} s ({tk / t1:.2f}x), {distinct} distinct chart set(s); "
        f"protocol sessions, 1 session {p1:.1f} s, {k} at once {pk:.1f} s ({pk / p1:.2f}x)."
    )


if __name__ == "__main__":
    main()
