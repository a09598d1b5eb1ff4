"""The README's gallery: one screenshot of every view, from a real server on the built-in model, in headless chromium.

    python docs/screenshots.py        (make screenshots)

Starts `streamlit run app.py` on a free loopback port (tests/server.py), opens the home page and every view of the
registry as it first opens (the default model and text; QUERIES where that shows little), waits until its script
is idle and its charts stand still, and saves docs/screenshots/<URL path>.png (home.png for the home page), cut to
the first HEIGHT pixels or its last element and reduced to 256 colours. Then it rewrites the README's gallery, between GALLERY_START and GALLERY_END, from the registry's
titles and summaries. A view that shows an exception or an error box, or a server log with a traceback, is printed
and makes the command exit 1 (its screenshot is still saved, so you can see it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from PIL import Image
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import views  # noqa: E402, F401  (registers every view)
from tests.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, open_view  # noqa: E402
from tests.server import serving  # noqa: E402
from views.registry import views as registered  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
README = ROOT / "README.md"
GALLERY_START = "<!-- gallery: written by `make screenshots` (docs/screenshots.py) -->"
GALLERY_END = "<!-- /gallery -->"
WIDTH, HEIGHT = 1400, 1600  # the viewport; the screenshot is its visible part (Streamlit scrolls inside the page)
MARGIN = 32  # pixels kept below the page's last element
COLUMNS = 2  # images per row of the gallery's table
THUMBNAIL_WIDTH = 420
# Where a view's first look shows little: the routing needs an MoE (the one derived from the built-in model), and the
# tour's first sections are text alone (section 5, attention sinks, has two live figures).
QUERIES = {"Expert_routing": {"model": "smollm2-135m-moe"}, "Lecture_tour": {"section": 5}}
VIEW_TIMEOUT_S = 1800  # the first visit computes (fine-tuning trains twice when the model store has no runs)
QUIET_S = 2.0  # a page counts as settled once its script is idle and its charts stayed the same this long


@dataclass(frozen=True)
class Shot:
    """One gallery entry: the page's URL path ("" for home), its title and its one-line summary."""

    path: str
    title: str
    summary: str

    @property
    def file(self) -> str:
        """The screenshot's file name."""
        return f"{self.path or 'home'}.png"


def shots() -> list[Shot]:
    """The home page, then every registered view in the navigation's order."""
    home = Shot("", "Model and text", "choose a model and a text, see its tokens and the model's shape")
    return [home, *(Shot(v.url_path, v.title, v.summary) for v in registered())]


def wait_still(page: Page) -> None:
    """Wait until the script is idle and the number of charts, and of drawn charts, stayed the same for QUIET_S."""
    deadline = time.monotonic() + VIEW_TIMEOUT_S
    seen, since = None, time.monotonic()
    while time.monotonic() - since < QUIET_S:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{page.url} did not settle within {VIEW_TIMEOUT_S} s")
        page.wait_for_timeout(250)
        now = page.evaluate(
            """idle => [!!document.querySelector(idle), document.querySelectorAll('.js-plotly-plot').length,
                document.querySelectorAll('.js-plotly-plot .main-svg').length]""",
            IDLE,
        )
        if now != seen or not now[0]:
            seen, since = now, time.monotonic()


def problems(page: Page) -> list[str]:
    """What the page's exception and error boxes say."""
    boxes = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    return [text.strip() for text in boxes.all_inner_texts()]


def save(page: Page, path: Path) -> None:
    """The visible page down to its last element, as a 256-colour PNG."""
    bottom = page.evaluate(
        """() => Math.max(...[...document.querySelectorAll(
            '[data-testid="stElementContainer"], [data-testid="stSidebarNav"]')].map(e => e.getBoundingClientRect().bottom))"""
    )
    raw = path.with_suffix(".raw.png")
    page.screenshot(path=str(raw), clip={"x": 0, "y": 0, "width": WIDTH, "height": min(HEIGHT, bottom + MARGIN)})
    with Image.open(raw) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    raw.unlink()


def gallery(taken: list[Shot]) -> str:
    """The README's gallery: a table of thumbnails, each linking to its screenshot, with the view's summary."""
    cells = [
        f'<a href="docs/screenshots/{s.file}"><img src="docs/screenshots/{s.file}" width="{THUMBNAIL_WIDTH}" '
        f'alt="{s.title}"></a><br>**{s.title}**: {s.summary}'
        for s in taken
    ]
    cells += [""] * (-len(cells) % COLUMNS)
    rows = ["| " + " | ".join(cells[i : i + COLUMNS]) + " |" for i in range(0, len(cells), COLUMNS)]
    return "\n".join([GALLERY_START, "", "|" + " |" * COLUMNS, "|" + "---|" * COLUMNS, *rows, "", GALLERY_END])


def write_gallery(readme: Path, text: str) -> None:
    """Replace the gallery between its markers in the README."""
    current = readme.read_text()
    start, end = current.find(GALLERY_START), current.find(GALLERY_END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme} has no gallery markers ({GALLERY_START} ... {GALLERY_END})")
    readme.write_text(current[:start] + text + current[end + len(GALLERY_END) :])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="URL paths to take (default: every view and home)")
    args = parser.parse_args()
    wanted = [s for s in shots() if args.only is None or (s.path or "home") in args.only]
    OUT.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    log = Path(tempfile.mkdtemp(prefix="lmscope-screenshots-")) / "server.log"
    with serving(log) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for shot in wanted:
            started = time.monotonic()
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
            page = context.new_page()
            query = urlencode(QUERIES.get(shot.path, {}))
            open_view(page, f"{server.url}/{shot.path}" + (f"?{query}" if query else ""))
            wait_still(page)
            save(page, OUT / shot.file)
            if said := problems(page):
                found[shot.file] = said
            size = (OUT / shot.file).stat().st_size / 1024
            print(f"{shot.file}: {time.monotonic() - started:.0f} s, {size:.0f} KB", flush=True)
            context.close()
        browser.close()
        if "Traceback" in server.output():
            found["server log"] = [server.output()[-3000:]]
    if args.only is None:
        write_gallery(README, gallery(wanted))
    for where, said in found.items():
        print(f"\n{where} shows:\n" + "\n".join(said), file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
