"""The lecture tour end to end, in presenter mode, in a real server and Debian's chromium.

It runs after tests/test_lecture.py and tests/test_tour.py (files run in name order), which have put every
preset's probe results in this session's result cache, so the walk measures the page, not the probes."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

from lecture.presets import sections
from tests.browser import WAIT_MS, location, no_exception, open_view, settle


def test_lecture_tour_steps_through_every_section_in_presenter_mode(server: str, page: Page, artifacts: Path) -> None:
    open_view(page, f"{server}/Lecture_tour?presenter=1&section=0")
    for index, section in enumerate(sections()):
        page.wait_for_selector(f"h2:has-text('{index + 1}. ')", timeout=WAIT_MS)
        if section.presets:
            page.wait_for_selector(f".js-plotly-plot >> nth={len(section.presets) - 1}", timeout=WAIT_MS)
        settle(page)
        no_exception(page)
        assert page.locator(".js-plotly-plot").count() == len(section.presets)
        assert not page.locator('[data-testid="stSidebar"]').is_visible(), "presenter mode hides the sidebar"
        page.screenshot(path=str(artifacts / f"tour-{index + 1:02d}.png"), full_page=True)
        page.mouse.click(5, 5)  # focus the page, then step with the keyboard as a presenter would
        page.keyboard.press("ArrowRight")
    assert f"section={len(sections()) - 1}" in location(page)
