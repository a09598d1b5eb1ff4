"""The warm step: it opens every page and every tour section, and afterwards a first view computes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lecture import catalog
from runtime import jobs
from tests.conftest import ROOT
from tests.helpers import open_page, texts
from ui import warm

PAGES = ["1_Attention.py", "4_Attention_sinks.py", "5_Massive_activations.py"]


def test_views_cover_every_page_on_every_model_and_every_tour_section() -> None:
    found = warm.visits(["a", "b"])
    pages = sorted(p.name for p in (ROOT / "app_pages").glob("*.py"))
    on_models = {(Path(v.page).name, v.params["model"]) for v in found if "model" in v.params}
    assert on_models == {(page, model) for page in pages if page != Path(warm.TOUR).name for model in ("a", "b")}
    sections = [v.params["section"] for v in found if v.page == warm.TOUR]
    assert sections == [str(i) for i in range(len(catalog.sections()))]


@pytest.mark.slow  # three pages, cold
def test_after_warming_a_first_view_computes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = warm.visits(["smollm2-135m-instruct"], PAGES)
    assert [w.problems for w in warm.warm(chosen, lambda index, warmed: None)] == [[]] * len(PAGES)

    def computes(key: str, compute: object, around: object) -> None:
        raise AssertionError("a first view computed after the warm step")

    monkeypatch.setattr(jobs.executor(), "run", computes)
    for visit in chosen:
        at = open_page(visit.page, **visit.params)
        assert not at.exception and not at.error, texts(at.error)
        assert at.get("plotly_chart"), visit.label


def _warm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ui.warm", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # two subprocesses that import torch
def test_the_command_reports_progress_and_fails_on_a_broken_view() -> None:
    done = _warm("--model", "all-minilm-l6-v2", "--page", "1_Attention.py")
    assert done.returncode == 0, done.stderr
    assert "[##############################] 1/1 1_Attention model=all-minilm-l6-v2" in done.stderr
    broken = _warm("--model", "no-such-model", "--page", "1_Attention.py")
    assert broken.returncode == 1 and "error: Unknown model 'no-such-model'" in broken.stderr
