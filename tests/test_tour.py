"""The lecture tour page in AppTest: every section with its live figures and links, presenter mode, bad links."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from lecture import catalog
from lecture.presets import Preset
from runtime.builtin import DERIVED
from tests.helpers import chart, open_page, texts
from views import concepts, dropped_heads, finetune, lottery

TOUR = "app_pages/0_Lecture_tour.py"
SECTIONS = catalog.sections()
# Figures that train, fit or time something on first use (tens of seconds).
TRAINING = {
    f.name for f in (*lottery.VIEW.figures, *concepts.VIEW.figures, *dropped_heads.FIGURES, *finetune.VIEW.figures)
} | {"attention_cost"}


def _long(preset: Preset) -> bool:
    """A preset whose first rendering is a long computation: it trains, fits or times something, reads the corpus,
    draws several models, or runs a derived MoE."""
    return preset.figure in TRAINING or "sentences" in preset.query or bool(preset.compare) or preset.model in DERIVED


# Sections with a long preset are in the slow tier (`make test`); `make check` opens the others.
SECTION_PARAMS = [
    pytest.param(i, marks=pytest.mark.slow) if any(_long(catalog.preset(n)) for n in s.presets) else i
    for i, s in enumerate(SECTIONS)
]


@pytest.mark.parametrize("index", SECTION_PARAMS)
def test_every_section_shows_its_figures_and_links(index: int) -> None:
    section = SECTIONS[index]
    # Cold (when test_lecture has not filled the shared cache yet) the pruning section compresses SparseGPT and GPTQ
    # copies of SmolLM2: minutes on 2 cores, as a lecturer's first visit before the `warm` step.
    at = open_page(TOUR, timeout=900, section=str(index))
    assert not at.exception and not at.error, texts(at.error)
    assert at.header[0].value == f"{index + 1}. {section.title}"
    charts = at.get("plotly_chart")
    assert len(charts) == len(section.presets)
    links = at.get("link_button")
    assert len(links) == len(section.presets)
    for number, name in enumerate(section.presets):
        preset = catalog.preset(name)
        assert chart(at, number)["layout"]["title"]["text"], name
        url = urlsplit(links[number].proto.url)
        assert preset.page.endswith(f"_{url.path}.py")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert query.items() >= {k: v for k, v in preset.query.items() if k != "model"}.items()
        assert query["model"] == preset.model
    assert at.query_params["section"] == str(index)


def test_next_and_previous_step_through_the_sections() -> None:
    at = open_page(TOUR)
    assert at.header[0].value.startswith("1. ")
    at.button[1].click().run()  # Next
    assert at.header[0].value.startswith("2. ") and at.query_params["section"] == "1"
    at.button[0].click().run().button[0].click().run()  # Back twice: stays at the first section
    assert at.header[0].value.startswith("1. ") and not at.exception


def test_presenter_mode_from_the_link() -> None:
    at = open_page(TOUR, presenter="1", section="0")
    assert not at.exception
    assert at.toggle(key="tour_presenter").value is True
    assert at.query_params["presenter"] == "1"


@pytest.mark.parametrize("section", ["99", "-1", "two"])
def test_bad_section_in_the_link(section: str) -> None:
    at = open_page(TOUR, section=section)
    assert not at.exception
    assert "section" in texts(at.warning) and at.header[0].value.startswith("1. ")
