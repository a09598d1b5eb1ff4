"""Warm the result cache for a class: every page's first view on every built-in model, and every section of the
lecture tour (every preset), computed before the first student arrives.

The pages are run headless as a fresh session would run them (Streamlit's AppTest, in this process, with the
default text), so the warm step asks for exactly what a first view asks for, by construction.

    python -m ui.warm [--model NAME]... [--page FILE]...
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamlit.testing.v1 import AppTest

from lecture import catalog
from runtime.builtin import BUILTINS, DERIVED
from ui.markdown import read
from ui.navigation import HOME
from views import routing, tour
from views.registry import views

ROOT = Path(__file__).resolve().parents[1]
TOUR = tour.VIEW.page
TIMEOUT_S = 3600
BAR = 30


@dataclass(frozen=True)
class Visit:
    """One page opened with these URL parameters."""

    page: str
    params: dict[str, str]

    @property
    def label(self) -> str:
        return f"{Path(self.page).stem} " + " ".join(f"{k}={v}" for k, v in self.params.items())


@dataclass(frozen=True)
class Warmed:
    """What opening a view gave: how long it took, and any message that is not a plain information."""

    visit: Visit
    seconds: float
    problems: list[str]


def visits(models: Sequence[str], pages: Sequence[str] | None = None) -> list[Visit]:
    """The home page and every view's page (but the tour) on each model, then each tour section; `pages` narrows to
    those files."""
    chosen = [HOME, *(view.page for view in views())]
    if pages:
        chosen = [p for p in chosen if Path(p).name in {Path(q).name for q in pages}]
    found = [Visit(page, {"model": model}) for model in models for page in chosen if page != TOUR]
    if TOUR in chosen:
        found += [Visit(TOUR, {"section": str(i)}) for i in range(len(catalog.sections()))]
    return found


def open_visit(visit: Visit) -> Warmed:
    """Run the page once, headless, as a new session opening its URL."""
    started = time.perf_counter()
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT_S)
    for key, value in visit.params.items():
        app.query_params[key] = value
    app.switch_page(visit.page).run()
    problems = [f"exception: {e.message}" for e in app.exception] + [f"error: {read(e.value)}" for e in app.error]
    return Warmed(visit, time.perf_counter() - started, problems)


def warm(chosen: Sequence[Visit], on_visit: Callable[[int, Warmed], None]) -> list[Warmed]:
    """Open every visit's page in turn, reporting each (its index, what it gave) as it is done."""
    done = []
    for index, visit in enumerate(chosen):
        done.append(open_visit(visit))
        on_visit(index, done[-1])
    return done


def _bar(done: int, total: int) -> str:
    filled = round(BAR * done / total)
    return f"[{'#' * filled}{'-' * (BAR - filled)}] {done}/{total}"


def main(argv: list[str] | None = None) -> int:
    """Warm the cache; one progress line per view on stderr; exit 1 if a view showed an error or failed."""
    logging.basicConfig(level=logging.WARNING, format="lmscope: %(message)s")
    # Headless runs have no browser session behind them; Streamlit says so after every page ("can be ignored").
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m ui.warm", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--model",
        action="append",
        help="a model to warm (default: every built-in, and the derived MoEs on the expert routing page)",
    )
    parser.add_argument("--page", action="append", help="a page file to warm, e.g. 4_Attention_sinks.py (default: all)")
    args = parser.parse_args(argv)
    if args.model:
        chosen = visits(args.model, args.page)
    else:  # the MoEs built from SmolLM2 exist for the expert routing page; other views on them compute when asked
        derived = [v for v in visits(list(DERIVED), args.page) if v.page == routing.VIEW.page]
        chosen = visits(list(BUILTINS), args.page) + derived
    started = time.perf_counter()

    def report(index: int, warmed: Warmed) -> None:
        state = "; ".join(warmed.problems) if warmed.problems else "ok"
        print(f"{_bar(index + 1, len(chosen))} {warmed.visit.label}: {warmed.seconds:.1f} s, {state}", file=sys.stderr)

    done = warm(chosen, report)
    failed = [w for w in done if w.problems]
    print(f"warmed {len(done)} views in {time.perf_counter() - started:.0f} s; {len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
