"""A class on one server: N sessions opened at the same moment, each with its own text, spread over the pages a
lecture uses; time to a settled page, errors, peak memory and CPU of every process of the compute engine, and
whether every session's charts equal the single-user answer.

    python bench/classroom.py [--sessions 1,4,8,16] [--same 6] [--engine here,workers,scheduler] [--protocol]

Engines: `here` computes in the server's process; `workers` starts the server with LMSCOPE_WORKERS=2 (a Dask
LocalCluster of two worker processes); `scheduler` starts `dask scheduler` and two `dask worker` processes before
the server, which uses them through LMSCOPE_SCHEDULER. Sessions are headless chromium pages, or with `--protocol`
websocket clients speaking Streamlit's own protocol (the server's side alone: on 2 cores the browsers' drawing
distorts the timing, so this is the mode to compare engines in).

For each engine and N: fresh engine processes, a fresh server and a fresh result cache; the home page is opened
once (the lecturer's look before class: it starts the engine); then the N sessions open at once (cold), and
again with the same texts (warm: the results are in the cache). The single-user answer of each (page, text) comes
from a separate in-process server with its own fresh cache, one session at a time. Then `--same` sessions ask the
same cold corpus view at once, against one session alone (`--same 0`: skipped). Prints a markdown section for
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import psutil
import websockets
from distributed import Client
from playwright.sync_api import Browser, Page, sync_playwright
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.typing import Subprotocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.server import HOST, check_alive, free_port, process  # noqa: E402
from tests.server import serving as serving_app  # noqa: E402

SETTLE_MS = 1_800_000
START_S = 180  # engine processes and the server must be up within this
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
# (page path, extra URL parameters); the routing page runs on the trained MoE built from SmolLM2 (the lecture's),
# with the equation written out for a token
PAGES = [
    ("Attention", {}),
    ("Attention_sinks", {}),
    ("Massive_activations", {}),
    ("Weight_spectra", {}),
    ("Expert_routing", {"model": "smollm2-135m-moe", "token": "3"}),
    ("Pruning", {}),
]
CORPUS_VIEW = ("Attention_sinks", {})  # the sinks page as it opens: its corpus pass (256 sentences) is the shared part
CLUSTER_WORKERS = 2
ENGINES = {
    "here": "in the server's process",
    "workers": f"LMSCOPE_WORKERS={CLUSTER_WORKERS}: a LocalCluster the server starts",
    "scheduler": f"LMSCOPE_SCHEDULER: `dask scheduler` + {CLUSTER_WORKERS} `dask worker --nthreads 1` started as the "
    "README does (DASK_CONFIG=deploy/dask, LMSCOPE_WORKER_THREADS = cores / workers)",
}
TRACE_KEYS = ("x", "y", "z", "values", "text")  # what a chart's numbers are, not how they look

Visits = list[tuple[str, dict, str]]  # (page, URL parameters, text) per session


@dataclass
class Visit:
    page: str
    text: str
    seconds: float
    exceptions: int
    errors: int
    charts: str  # a digest of every chart's data
    messages: list[str]  # what its exceptions and error boxes say


@dataclass
class Round:
    engine: str
    sessions: int
    phase: str
    visits: list[Visit]
    ready_s: float  # engine processes and server started, home page settled
    peak_gb: float  # the peak of the summed resident memory of every engine process during the round
    cpu_s: float  # CPU seconds of every engine process during the round
    wrong: list[tuple[str, str]]  # (page, text) whose charts differ from the single-user answer
    chromium_s: float | None = None  # CPU seconds of the browsers (browser sessions only)


class Usage:
    """Resident memory and CPU time of a changing set of processes (`roots()` and all their descendants), sampled
    in a background thread: the peak of their summed RSS, and their CPU seconds, since `mark`. A process that ends
    keeps the CPU time it was last seen with."""

    def __init__(self, roots: Callable[[], list[int]], every_s: float = 0.2) -> None:
        self._roots = roots
        self._every_s = every_s
        self._lock = threading.Lock()
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, start time) -> user + system seconds
        self._rss = self._peak = 0
        self._base_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Usage:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self._sample()

    def _processes(self) -> dict[int, psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for pid in self._roots():
            try:
                root = psutil.Process(pid)
                found |= {p.pid: p for p in (root, *root.children(recursive=True))}
            except psutil.Error:
                continue
        return found

    def _sample(self) -> None:
        rss, cpu = 0, {}
        for proc in self._processes().values():
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu[(proc.pid, proc.create_time())] = times.user + times.system
            except psutil.Error:  # gone meanwhile
                continue
        with self._lock:
            self._cpu.update(cpu)
            self._rss, self._peak = rss, max(self._peak, rss)

    def mark(self) -> None:
        """Start a measurement here."""
        self._sample()
        with self._lock:
            self._peak, self._base_cpu = self._rss, sum(self._cpu.values())

    def read(self) -> tuple[float, float]:
        """(peak GB, CPU seconds) since `mark`."""
        self._sample()
        with self._lock:
            return self._peak / 2**30, sum(self._cpu.values()) - self._base_cpu


def _base_env(cache: Path) -> dict[str, str]:
    """The operator's environment without any engine setting, with the fresh result cache."""
    env = {k: v for k, v in os.environ.items() if k not in {"LMSCOPE_WORKERS", "LMSCOPE_SCHEDULER"}}
    return {**env, "LMSCOPE_CACHE_DIR": str(cache), "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}


@contextmanager
def _engine(name: str, cache: Path) -> Iterator[tuple[dict[str, str], list[subprocess.Popen]]]:
    """The engine `name` for a server with result cache `cache`: the server's environment, and the processes
    started for the engine (stopped on the way out)."""
    env = _base_env(cache)
    if name == "here":
        yield env, []
        return
    if name == "workers":
        yield {**env, "LMSCOPE_WORKERS": str(CLUSTER_WORKERS)}, []
        return
    port = free_port()
    address = f"tcp://{HOST}:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    # as the README starts them: the scheduler too unpickles the tasks, which name lmscope's functions, so `probes`
    # must import; each worker's tasks get the cores shared among the workers, set per task (deploy/dask stops the
    # nanny from fixing torch's threads at one)
    threads = str(max(1, (os.cpu_count() or 1) // CLUSTER_WORKERS))
    cluster_env = {**env, "PYTHONPATH": str(ROOT), "DASK_CONFIG": str(ROOT / "deploy" / "dask")}
    cluster_env["LMSCOPE_WORKER_THREADS"] = threads
    with ExitStack() as stack:
        scheduler_log = cache.parent / f"scheduler-{port}.log"
        scheduler = [dask, "scheduler", "--host", HOST, "--port", str(port), "--no-dashboard"]
        procs = [stack.enter_context(process(scheduler, scheduler_log, cluster_env))]
        for i in range(CLUSTER_WORKERS):
            command = [dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--name", f"worker-{i}"]
            command += ["--local-directory", str(cache.parent / f"dask-{port}")]
            procs.append(stack.enter_context(process(command, cache.parent / f"worker-{port}-{i}.log", cluster_env)))
        with Client(address, timeout=START_S, set_as_default=False) as client:
            client.wait_for_workers(CLUSTER_WORKERS, timeout=START_S)
        check_alive(procs, scheduler_log)
        yield {**env, "LMSCOPE_SCHEDULER": address}, procs


@dataclass
class Server:
    url: str
    usage: Usage  # every process of the engine: the server (with a LocalCluster's children) and external ones
    ready_s: float


@contextmanager
def serving(cache: Path, engine: str = "here") -> Iterator[Server]:
    """A fresh `streamlit run app.py` on loopback with its own result cache and the engine `engine`, its home page
    opened once (which starts the engine)."""
    started = time.perf_counter()
    cache.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        env, procs = stack.enter_context(_engine(engine, cache))
        log = cache.parent / "server.log"
        server = stack.enter_context(serving_app(log, env=env, watch=procs, timeout_s=START_S))
        usage = stack.enter_context(Usage(lambda: [server.process.pid, *(p.pid for p in procs)]))
        home = protocol_round(server.url, [("", {}, "")])[0]
        if home.messages:
            raise RuntimeError(f"the home page failed: {home.messages}; see {log}")
        yield Server(server.url, usage, time.perf_counter() - started)


def chromium() -> list[int]:
    """The pids of this benchmark's chromium processes (the browser and its renderers)."""
    pids = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "chromium" in proc.name():
                pids.append(proc.pid)
        except psutil.Error:  # a renderer that ended after the listing
            continue
    return pids


def _record(data: Any, charts_to: Path, index: int) -> str:
    """Keep one session's chart data as charts_to/<index>.json; its digest."""
    text = json.dumps(data, separators=(",", ":"))
    (charts_to / f"{index}.json").write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _charts(page: Page) -> list:
    """The data of every chart on the page, in order (what the numbers are, not how they look)."""
    return page.evaluate(
        """keys => [...document.querySelectorAll('.js-plotly-plot')].map(el =>
            (el.data || []).map(t => keys.map(k => t[k] === undefined ? null
                : Array.from(t[k] && t[k].length !== undefined && typeof t[k] !== 'string' ? t[k] : [t[k]],
                    v => (v && v.length !== undefined && typeof v !== 'string') ? Array.from(v) : v))))""",
        list(TRACE_KEYS),
    )


def _plain(value: Any) -> Any:
    """A Plotly JSON value with its typed arrays ({"dtype", "bdata", "shape"}) decoded into nested lists."""
    if isinstance(value, dict) and isinstance(value.get("bdata"), str) and set(value) <= {"dtype", "bdata", "shape"}:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
        if shape := value.get("shape"):
            array = array.reshape([int(d) for d in (shape if isinstance(shape, list) else str(shape).split(","))])
        return array.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _spec_charts(elements: list[Element]) -> list:
    """The same data as `_charts`, from the Plotly specs of the elements a protocol session received."""

    def values(v: Any) -> list:
        return v if isinstance(v, list) else [v]

    return [
        [[None if k not in trace else values(_plain(trace[k])) for k in TRACE_KEYS] for trace in spec.get("data", [])]
        for spec in (json.loads(e.plotly_chart.spec) for e in elements if e.WhichOneof("type") == "plotly_chart")
    ]


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


def visit_all(browser: Browser, url: str, visits: Visits, charts_to: Path) -> list[Visit]:
    """Open every visit in its own browser session at the same moment; wait for each to settle; keep each page's
    chart data in charts_to/<index>.json."""
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
        exceptions = page.locator('[data-testid="stException"]')
        errors = page.locator('[data-testid="stAlertContentError"]')
        done.append(
            Visit(
                visits[i][0],
                visits[i][2],
                settled[i],
                exceptions.count(),
                errors.count(),
                _record(_charts(page), charts_to, i),
                [text.strip() for text in exceptions.all_inner_texts() + errors.all_inner_texts()],
            )
        )
        page.context.close()
    return done


async def _protocol_visit(url: str, page_name: str, query: str) -> tuple[float, list[Element]]:
    """One session in Streamlit's own protocol (what the browser sends, without drawing anything): seconds until
    the server finished the page's script (reruns included), and the elements the page then shows, in order."""
    started = time.perf_counter()
    address = url.replace("http://", "ws://") + "/_stcore/stream"
    async with websockets.connect(address, subprotocols=[Subprotocol("streamlit")], max_size=None) as socket:
        message = BackMsg()
        message.rerun_script.query_string = query
        message.rerun_script.page_name = page_name
        await socket.send(message.SerializeToString())
        received: dict[str, ForwardMsg] = {}
        shown: dict[tuple[int, ...], Element] = {}  # delta path -> the element there now
        while True:
            forward = ForwardMsg()
            data = await socket.recv()
            forward.ParseFromString(data if isinstance(data, bytes) else data.encode())
            if forward.WhichOneof("type") == "ref_hash":  # a message this session was sent before
                forward = ForwardMsg(metadata=forward.metadata, delta=received[forward.ref_hash].delta)
            elif forward.hash:
                received[forward.hash] = forward
            kind = forward.WhichOneof("type")
            if kind == "new_session":  # a script run starts: it draws the page anew
                shown.clear()
            elif kind == "page_not_found":
                raise RuntimeError(f"no page {page_name!r} on {url}")
            elif kind == "delta":
                path = tuple(forward.metadata.delta_path)
                if forward.delta.WhichOneof("type") == "new_element":
                    shown[path] = forward.delta.new_element
                elif forward.delta.WhichOneof("type") == "add_block":  # a block replaces what was at its path
                    shown = {p: e for p, e in shown.items() if p[: len(path)] != path}
            elif kind == "script_finished" and forward.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return time.perf_counter() - started, [shown[p] for p in sorted(shown)]


def protocol_round(url: str, visits: Visits, charts_to: Path | None = None) -> list[Visit]:
    """Every visit at the same moment as a protocol session: the server's side of a class whose browsers run on
    the students' own machines. Keeps each page's chart data in charts_to/<index>.json when given."""

    async def together() -> list[tuple[float, list[Element]]]:
        return await asyncio.wait_for(
            asyncio.gather(
                *(_protocol_visit(url, page, urlencode({"text": text, **params})) for page, params, text in visits)
            ),
            SETTLE_MS / 1000,
        )

    with ThreadPoolExecutor(1) as loop:  # Playwright's sync API may already run an event loop in this thread
        seen = loop.submit(asyncio.run, together()).result()
    if charts_to is not None:
        charts_to.mkdir(parents=True, exist_ok=True)
    done = []
    for i, ((page_name, _, text), (seconds, elements)) in enumerate(zip(visits, seen)):
        exceptions = [e.exception for e in elements if e.WhichOneof("type") == "exception"]
        errors = [e.alert for e in elements if e.WhichOneof("type") == "alert" and e.alert.format == Alert.ERROR]
        done.append(
            Visit(
                page_name,
                text,
                seconds,
                len(exceptions),
                len(errors),
                _record(_spec_charts(elements), charts_to, i) if charts_to is not None else "",
                [f"{e.type}: {e.message}" for e in exceptions] + [a.body for a in errors],
            )
        )
    return done


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _assignments(n: int) -> Visits:
    return [(PAGES[i % len(PAGES)][0], PAGES[i % len(PAGES)][1], TEXTS[i % len(TEXTS)]) for i in range(n)]


VisitFn = Callable[[str, Visits, Path], list[Visit]]  # (server URL, visits, where the charts go) -> visits done


def single_user(visit: VisitFn, work: Path, n: int) -> dict[tuple[str, str], str]:
    """The chart digest of each (page, text) of the first n sessions, each opened alone on a fresh in-process
    server."""
    reference: dict[tuple[str, str], str] = {}
    with serving(work / "reference" / "cache") as server:
        for i, view in enumerate(_assignments(n)):
            done = visit(server.url, [view], work / "charts" / f"reference-{view[0]}-{i}")[0]
            reference[(done.page, done.text)] = done.charts
    return reference


def class_rounds(
    visit: VisitFn, work: Path, engine: str, n: int, reference: dict[tuple[str, str], str], browsers: Usage | None
) -> Iterator[Round]:
    """The cold and warm rounds of n sessions on a fresh server with the engine `engine`."""
    with serving(work / f"{engine}-n{n}" / "cache", engine) as server:
        for phase in ("cold", "warm"):
            server.usage.mark()
            if browsers is not None:
                browsers.mark()
            visits = visit(server.url, _assignments(n), work / "charts" / f"{engine}-n{n}-{phase}")
            peak_gb, cpu_s = server.usage.read()
            wrong = [(v.page, v.text) for v in visits if v.charts != reference[(v.page, v.text)]]
            chromium_s = browsers.read()[1] if browsers is not None else None
            yield Round(engine, n, phase, visits, server.ready_s, peak_gb, cpu_s, wrong, chromium_s)
        if browsers is not None:  # the server's side alone, after the browsers' warm round
            server.usage.mark()
            visits = protocol_round(server.url, _assignments(n))
            yield Round(engine, n, "warm, protocol", visits, server.ready_s, *server.usage.read(), [])


def same_view(visit: VisitFn, kind: str, work: Path, engine: str, k: int) -> tuple[float, int]:
    """k sessions ask the same cold corpus view at once on a fresh server: (seconds until all settled, distinct
    chart sets)."""
    view = (CORPUS_VIEW[0], CORPUS_VIEW[1], TEXTS[0])
    with serving(work / f"same-{engine}-{kind}-{k}" / "cache", engine) as server:
        visits = visit(server.url, [view] * k, work / "charts" / f"same-{engine}-{kind}-{k}")
    return max(v.seconds for v in visits), len({v.charts for v in visits})


def _row(r: Round, chromium_column: bool) -> str:
    """One round as a row of the summary table."""
    times = [v.seconds for v in r.visits]
    cells = [
        r.engine,
        str(r.sessions),
        r.phase,
        f"{r.ready_s:.0f}",
        f"{statistics.median(times):.2f}",
        f"{_percentile(times, 0.95):.2f}",
        f"{max(times):.2f}",
        str(sum(v.exceptions for v in r.visits)),
        str(sum(v.errors for v in r.visits)),
        str(len(r.wrong)) if r.phase in ("cold", "warm") else "-",
        f"{r.peak_gb:.2f}",
        f"{r.cpu_s:.0f}",
    ]
    if chromium_column:
        cells.append(f"{r.chromium_s:.0f}" if r.chromium_s is not None else "-")
    return "| " + " | ".join(cells) + " |"


def _page_rows(rounds: list[Round]) -> list[str]:
    rows = []
    for r in rounds:
        for page_name in sorted({v.page for v in r.visits}):
            times = [v.seconds for v in r.visits if v.page == page_name]
            rows.append(
                f"| {r.engine} | {r.sessions} | {r.phase} | {page_name} | {len(times)} | {statistics.median(times):.1f} "
                f"| {_percentile(times, 0.95):.1f} |"
            )
    return rows


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def report(
    rounds: list[Round],
    same: dict[tuple[str, str], list[tuple[int, float, int]]],
    protocol: bool,
    command: str,
    work: Path,
) -> str:
    """The markdown section for bench/RESULTS.md."""
    memory = psutil.virtual_memory().total / 2**30
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    engines = list(dict.fromkeys(r.engine for r in rounds))
    sessions = "Streamlit-protocol websocket sessions (no browsers)" if protocol else "headless chromium sessions"
    lines = [
        f"## A class on one server, by compute engine ({when}, {platform.platform()}, {_cpu_model()}, "
        f"{os.cpu_count()} cores, {memory:.0f} GB memory, Python {platform.python_version()}; `{command}`)",
        "",
        f"Sessions: {sessions}. Engines: "
        + "; ".join(f"`{e}`: {ENGINES[e]}" for e in engines)
        + ". Each engine and N on fresh engine processes, a fresh server and a fresh result cache; the home page "
        'is opened once first (it starts the engine: "ready" is the time from starting the engine\'s processes '
        "to that page settled), then the N sessions open at once (cold), then again (warm). Times run from "
        "opening a session to its settled page. Memory is the peak of the summed RSS of every engine process "
        "(the server and a LocalCluster's nannies and workers, or the external scheduler and workers; sampled "
        "every 0.2 s; shared library pages count once per process), CPU their user + system seconds in the "
        'round. "Wrong charts" compares every chart\'s data (x, y, z, values, text of each trace) with the same '
        "page and text opened alone on a separate fresh in-process server."
        + (
            ""
            if protocol
            else ' Rows "warm, protocol": the same sessions again in Streamlit\'s own protocol (websocket clients '
            "that draw nothing) after the browsers' warm round: the server's side alone."
        ),
        "",
    ]
    header = (
        "| engine | sessions | cache | ready (s) | median (s) | p95 (s) | all settled (s) | exceptions | error boxes "
        "| wrong charts | peak memory, all engine processes (GB) | engine CPU (s) |"
    )
    columns = 12
    if not protocol:
        header += " chromium CPU (s) |"
        columns += 1
    lines += [header, "|" + "---|" * columns]
    lines += [
        _row(r, not protocol) for r in sorted(rounds, key=lambda r: (r.sessions, engines.index(r.engine), r.phase))
    ]
    lines += [
        "",
        "| engine | sessions | cache | page | sessions on it | median (s) | p95 (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += _page_rows([r for r in rounds if r.phase in ("cold", "warm")])
    mismatched = [f"- {r.engine}, {r.sessions} {r.phase}: {page} on {text!r}" for r in rounds for page, text in r.wrong]
    if mismatched:
        lines += ["", "Charts that differ from the single-user answer:", *mismatched]
    said = Counter(f"`{r.engine}` on {v.page}: {m}" for r in rounds for v in r.visits for m in v.messages)
    if said:
        lines += ["", "What the exceptions and error boxes said (times seen):"]
        lines += [f"- {message} ({count}x)" for message, count in said.items()]
    for (engine, kind), runs in same.items():
        (_, t1, _), (k, tk, distinct) = runs
        lines += [
            "",
            f"Same cold corpus view ({CORPUS_VIEW[0]} as it opens), `{engine}`, {kind} sessions, each on a fresh "
            f"server: 1 session {t1:.1f} s, {k} at once {tk:.1f} s ({tk / t1:.2f}x), {distinct} distinct chart set(s).",
        ]
    lines += ["", f"Chart data of every visit and the processes' logs: {work}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", default="1,4,8,16")
    parser.add_argument("--same", type=int, default=6, help="sessions on the same cold corpus view (0: skip)")
    parser.add_argument("--engine", default="here", help=f"comma list of {', '.join(ENGINES)}")
    parser.add_argument("--protocol", action="store_true", help="Streamlit-protocol sessions instead of browsers")
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",") if n.strip()]
    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    if unknown := set(engines) - set(ENGINES):
        parser.error(f"unknown engine(s): {', '.join(sorted(unknown))}")
    if shutil.which("dask", path=str(Path(sys.executable).parent)) is None and "scheduler" in engines:
        parser.error("the scheduler engine needs the `dask` command beside this Python")
    work = Path(tempfile.mkdtemp(prefix="lmscope-classroom-"))
    started = time.monotonic()
    rounds: list[Round] = []
    same: dict[tuple[str, str], list[tuple[int, float, int]]] = {}
    with ExitStack() as stack:
        browsers: Usage | None = None
        kinds: dict[str, VisitFn] = {"protocol": protocol_round}
        if args.protocol:
            visit: VisitFn = protocol_round
        else:
            playwright = stack.enter_context(sync_playwright())
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            stack.callback(browser.close)
            browsers = stack.enter_context(Usage(chromium))

            def in_browser(url: str, visits: Visits, charts_to: Path) -> list[Visit]:
                return visit_all(browser, url, visits, charts_to)

            visit = in_browser
            kinds = {"browser": visit, **kinds}

        reference = single_user(visit, work, max(counts, default=0))
        print(f"single-user answers: {time.monotonic() - started:.0f} s", flush=True)
        for engine in engines:
            for n in counts:
                for r in class_rounds(visit, work, engine, n, reference, browsers):
                    rounds.append(r)
                    print(_row(r, not args.protocol), f"({time.monotonic() - started:.0f} s)", flush=True)
            for kind, fn in kinds.items() if args.same > 0 else ():
                same[(engine, kind)] = [(k, *same_view(fn, kind, work, engine, k)) for k in (1, args.same)]
    command = "python bench/classroom.py " + " ".join(sys.argv[1:])
    print("\n" + report(rounds, same, args.protocol, command.strip(), work))
    print(f"\n(wall time {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
