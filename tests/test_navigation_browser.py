"""The navigation on a fresh server: a visitor whose first request is a view's own URL gets the registry's
navigation (st.navigation), not Streamlit's older pages-folder one (its own module, so its server is fresh)."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browser import look
from views.registry import views


def test_a_views_url_on_a_fresh_server_shows_the_registry_navigation(server: str, page: Page) -> None:
    look(page, f"{server}/Head_atlas", charts=1, name="navigation-first-visit")
    navigation = page.get_by_test_id("stSidebarNav")
    expanded = navigation.get_by_text("View", exact=False).filter(has_text="more")
    if expanded.count():
        expanded.first.click()
    text = navigation.inner_text()
    assert "Model and text" in text and "app" not in text.split()
    assert all(view.title in text for view in views())
    assert all(group in text for group in {view.group for view in views()})
