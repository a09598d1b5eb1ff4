"""A page's first view on a fresh server: with an empty result cache, and with one the warm step filled.

    python bench/warm_start.py

For each page: `python -m ui.warm` fills a result cache for it (SmolLM2, the default text); then two fresh
servers, one on an empty cache and one on the warmed cache, each get one browser session opening the page with the
default text. The time runs from opening the page to its settled charts (the model load included: the server is
fresh). Prints a markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.classroom import serving, visit_all  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from ui.state import DEFAULT_TEXT  # noqa: E402

MODEL = "smollm2-135m-instruct"
PAGES = {  # page URL name: page file
    "Attention": "1_Attention.py",
    "Attention_sinks": "4_Attention_sinks.py",
    "Massive_activations": "5_Massive_activations.py",
    "Weight_spectra": "8_Weight_spectra.py",
    "Pruning_vs_quantization": "9_Pruning_vs_quantization.py",
}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="lmscope-warm-start-"))
    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for page, file in PAGES.items():
            warmed = work / f"warmed-{page}"
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "ui.warm", "--model", MODEL, "--page", file],
                cwd=ROOT,
                env={**os.environ, "LMSCOPE_CACHE_DIR": str(warmed)},
                check=True,
                capture_output=True,
            )
            warm_step = time.perf_counter() - started
            seconds = {}
            for name, cache in (("cold", work / f"cold-{page}"), ("warm", warmed)):
                with serving(cache) as server:
                    charts_to = work / "charts" / f"{name}-{page}"
                    visit = visit_all(browser, server.url, [(page, {}, DEFAULT_TEXT)], charts_to)[0]
                    assert visit.exceptions == visit.errors == 0, (page, name)
                    seconds[name] = visit.seconds
            rows.append(
                f"| {page} | {seconds['cold']:.1f} | {seconds['warm']:.1f} | {seconds['warm'] / seconds['cold']:.3f}x | "
                f"{warm_step:.0f} |"
            )
            print(rows[-1], flush=True)
        browser.close()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    print(
        f"\n## First view on a fresh server, cold and warmed cache ({when}, {platform.machine()}, {os.cpu_count()} "
        f"cores; `python bench/warm_start.py`)\n\n{MODEL}, the default text, one browser session; the server is "
        "fresh each time, so the model load is included.\n"
    )
    print("| page | empty cache (s) | warmed cache (s) | warm / cold | warm step for it (s) |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
