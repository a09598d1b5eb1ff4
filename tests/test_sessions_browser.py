"""Several students on one server at the same moment: real browser sessions opened together, each with its own text,
get the numbers a single user gets, and a session asking what another is already computing says it is sharing."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page

from probes import ablation, corpus, moe_loss, pruning
from results.activations import Thresholds
from runtime.cache import ResultCache
from runtime.handle import ModelHandle
from tests.browser import WAIT_MS, look
from viz.pruning import SERIES

TEXTS = (
    "The first token soaks up attention. Massive values sit there, and removing them breaks the model.",
    "Students each typed their own sentence, and every one of them expects an honest answer.",
)
SENTENCES = 40


def _open_together(browser: Browser, urls: list[str]) -> list[Page]:
    """One browser context (a session) per URL, all navigating before any is waited for."""
    pages = []
    for url in urls:
        page = browser.new_context(viewport={"width": 1400, "height": 2400}).new_page()
        page.goto(url, wait_until="commit")
        pages.append(page)
    return pages


def _one_says(pages: list[Page], text: str) -> None:
    """Wait until one of the pages shows `text` (at most WAIT_MS)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not any(page.locator(f"text={text}").count() for page in pages):
        assert time.monotonic() < deadline, f"no page said {text!r}"
        pages[0].wait_for_timeout(200)


def _mean_nlls(caption: str) -> list[str]:
    return re.findall(r"(\d+\.\d{3})", caption.split("Mean NLL per token:")[1])[:3]


def test_sessions_at_once_get_their_own_answers(
    server: str, browser: Browser, smollm2: ModelHandle, tmp_path: Path
) -> None:
    urls = [f"{server}/Massive_activations?{urlencode({'text': t, 'sentences': SENTENCES})}" for t in TEXTS]
    urls.append(f"{server}/Attention?{urlencode({'text': TEXTS[0], 'layer': 3, 'head': 1})}")
    pages = _open_together(browser, urls)
    captions = []
    for i, page in enumerate(pages):
        if i < len(TEXTS):
            look(page, shows="text=Mean NLL per token", name=f"sessions-{i}")
        else:
            look(page, charts=2, name=f"sessions-{i}")
        if i < len(TEXTS):
            captions.append(page.locator("text=Mean NLL per token").inner_text())
        page.context.close()
    alone = ResultCache(tmp_path / "alone")  # the single-user answer, computed after the sessions, in this process
    for text, caption in zip(TEXTS, captions):
        done = ablation.run(smollm2, text, Thresholds(), alone, corpus.sentences()[:SENTENCES]).value
        expected = [f"{float(n.mean()):.3f}" for n in (done.nll_base, done.nll_zeroed, done.nll_mean)]
        assert _mean_nlls(caption) == expected


# The pruning page at its lightest calibrated setting: magnitude pruning and Wanda at 50%, 2 calibration sequences.
PRUNING = {"methods": "prune,wanda", "sparsities": "50", "sentences": 2, "calibration": 2, "length": 32}


def test_pruning_sessions_at_once_get_what_one_user_gets(
    server: str, browser: Browser, smollm2: ModelHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sessions compress SmolLM2 at the same moment, each scoring its own text: each chart's losses equal a
    single user's, computed afterwards here with an empty result cache and an empty store of compressed models."""
    pages = _open_together(browser, [f"{server}/Pruning?{urlencode({'text': t, **PRUNING})}" for t in TEXTS])
    shown = []
    for i, page in enumerate(pages):
        look(page, charts=2, name=f"pruning-sessions-{i}")
        traces = page.locator(".js-plotly-plot").first.evaluate("el => el.data.map(t => [t.name, Array.from(t.y)])")
        drawn: dict[str, list[float]] = {}
        for name, y in traces:  # a method's trace on the text, then on the corpus
            drawn.setdefault(name, []).extend(y)
        shown.append(drawn)
        page.context.close()
    monkeypatch.setenv("LMSCOPE_COMPRESSED_DIR", str(tmp_path / "compressed"))
    alone = ResultCache(tmp_path / "alone")
    for text, traces in zip(TEXTS, shown):
        done = pruning.tradeoff(
            smollm2,
            text,
            corpus.sentences()[:2],
            [0.5],
            [],
            alone,
            methods=["prune", "wanda"],
            patterns=[],
            calibration=(2, 32),
        ).value
        for point in done.points:
            assert traces[SERIES[point.method]] == pytest.approx([point.nll_text, point.nll_corpus], rel=1e-6)


def test_a_session_asking_what_another_computes_shares_it(server: str, browser: Browser) -> None:
    # Settings no other test asks for, so that the corpus pass is not in the suite's cache already.
    url = f"{server}/Attention_sinks?{urlencode({'sentences': 290, 'tokens': 23, 'text': TEXTS[1] + ' Shared.'})}"
    first, second = _open_together(browser, [url, url])
    # Whichever session's script asks first computes; the other says it shares (on a busy machine the second page's
    # script can start first).
    _one_says([first, second], "sharing its computation")
    for page in (first, second):
        look(page, shows="text=sentences cut to 23 tokens")
    captions = [page.locator("text=sentences cut to 23 tokens").inner_text() for page in (first, second)]
    assert captions[0].split(" · ")[0] == captions[1].split(" · ")[0]
    for page in (first, second):
        page.context.close()


def test_trained_moe_sessions_at_once_get_what_one_user_gets(
    server: str, browser: Browser, trained_moe: ModelHandle, tmp_path: Path
) -> None:
    """Two sessions measure the trained MoE's loss against k at the same moment (each call overrides the routers'
    k for itself only): each chart equals a single user's, computed afterwards here with an empty result cache."""
    query = {"model": trained_moe.name, "layer": 12, "token": 2}
    urls = [f"{server}/Expert_routing?{urlencode({**query, 'text': t})}" for t in TEXTS]
    pages = _open_together(browser, urls)
    for page in pages:
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
    charts = [page.locator(".js-plotly-plot").count() for page in pages]
    for page in pages:  # both switched on before either is waited for
        page.get_by_text("Measure the loss of your text").click()
    alone = ResultCache(tmp_path / "alone")
    for i, (page, text, shown) in enumerate(zip(pages, TEXTS, charts, strict=True)):
        look(page, charts=shown + 1, name=f"sessions-moe-{i}")
        drawn = page.locator(".js-plotly-plot").evaluate_all(
            "plots => plots.filter(p => p.layout.title.text.startsWith('Loss against the number'))"
            ".map(p => p.calcdata[0].map(point => point.y))"
        )
        expected = moe_loss.trained_loss_by_k(trained_moe, text, alone).value.nll[moe_loss.TRAINED_ROUTER][16]
        assert len(drawn) == 1 and drawn[0] == pytest.approx(list(expected), abs=1e-9)
        page.context.close()
