"""The navigation on a fresh server: a visitor whose first request is a view's own URL gets the registry's
navigation (st.navigation), not Streamlit's older pages-folder one (its own module, so its server is fresh)."""

from __future__ import annotations

import re

from playwright.sync_api import Page

from tests.browser import location, look
from views.registry import views


def test_a_views_url_on_a_fresh_server_shows_the_registry_navigation(server: str, page: Page) -> None:
    look(page, f"{server}/Head_atlas", charts=1, name="navigation-first-visit")
    navigation = page.get_by_test_id("stSidebarNav")
    text = navigation.inner_text()
    assert "Model and text" in text and "app" not in text.split()
    assert all(group in text for group in {view.group for view in views()})
    # Every view is in sight without unfolding anything: no "View n more", each link visible.
    folded = navigation.get_by_text(re.compile(r"View \d+ more"))
    assert not any(folded.nth(i).is_visible() for i in range(folded.count()))
    links = navigation.get_by_role("link")
    shown = [links.nth(i).inner_text() for i in range(links.count()) if links.nth(i).is_visible()]
    assert all(any(line.strip() == view.title for link in shown for line in link.splitlines()) for view in views()), (
        shown
    )


def test_an_old_url_opens_its_view(server: str, page: Page) -> None:
    look(
        page,
        f"{server}/Pruning_vs_quantization?methods=prune,quantize&sparsities=50&bits=8&sentences=2",
        shows='h1:has-text("Pruning vs quantization")',
        charts=1,
        name="navigation-old-url",
    )
    assert "/Pruning?" in location(page) and "sparsities=50" in location(page) and "bits=8" in location(page)
