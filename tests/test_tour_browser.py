"""The lecture tour end to end, in presenter mode, in a real server and Debian's chromium.

The warm step first puts every preset's probe results in this session's result cache (cache hits when the
lecture tests ran before), so that the walk measures the page, not the probes, whatever order the files run in."""

from __future__ import annotations

from playwright.sync_api import Page

from lecture.catalog import sections
from tests.browser import location, look, open_view
from ui import warm


def test_lecture_tour_steps_through_every_section_in_presenter_mode(server: str, page: Page) -> None:
    assert not [w.problems for w in warm.warm(warm.visits([], [warm.TOUR]), lambda *done: None) if w.problems]
    open_view(page, f"{server}/Lecture_tour?presenter=1&section=0")
    for index, section in enumerate(sections()):
        look(page, charts=len(section.presets), shows=f"h2:has-text('{index + 1}. ')", name=f"tour-{index + 1:02d}")
        assert page.locator(".js-plotly-plot").count() == len(section.presets)
        assert not page.locator('[data-testid="stSidebar"]').is_visible(), "presenter mode hides the sidebar"
        page.mouse.click(5, 5)  # focus the page, then step with the keyboard as a presenter would
        page.keyboard.press("ArrowRight")
    assert f"section={len(sections()) - 1}" in location(page)
