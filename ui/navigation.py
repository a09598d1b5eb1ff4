"""The dashboard's navigation, read from the view registry: the home page, then every view's page by group, all
of them shown (none folded away), and each view's old URL paths still opening it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

import views  # noqa: F401  (registers every view)
from runtime.errors import LmscopeError
from views.registry import View
from views.registry import views as registered

ROOT = Path(__file__).resolve().parents[1]
HOME = "app_pages/home.py"
HOME_VIEW = View(
    key="home",
    title="lmscope",
    summary="choose a model and a text",
    icon="edit",
    group="",
    page=HOME,
    caption="See inside language models: attention, activations, experts and weights, live on your text.",
)


def view_of(page_file: str) -> View:
    """The view whose page is this file: the home page's, or a registered view's."""
    path = Path(page_file).resolve()
    found = next((v for v in (HOME_VIEW, *registered()) if (ROOT / v.page).resolve() == path), None)
    if found is None:
        raise LmscopeError(f"No view has the page {page_file}; declare one in views/ (views.registry.register).")
    return found


def routes() -> dict[str, View]:
    """Every URL path a view opens at, its own and its old ones (aliases), with that view."""
    return {path: view for view in registered() for path in (view.url_path, *view.aliases)}


def _redirect(view: View) -> Callable[[], None]:
    def redirect() -> None:  # an old URL path: the view's own page, with the link's settings
        st.switch_page(view.page, query_params=st.query_params.to_dict())

    return redirect


def navigation() -> StreamlitPage:
    """Register the home page and every view's page with Streamlit (each view's old URL paths as hidden pages that
    switch to it); returns the page the URL asks for."""
    groups: dict[str, list[StreamlitPage]] = {
        "": [st.Page(HOME, title="Model and text", icon=f":material/{HOME_VIEW.icon}:", default=True)]
    }
    for view in registered():
        page = st.Page(view.page, title=view.title, icon=f":material/{view.icon}:", url_path=view.url_path)
        groups.setdefault(view.group, []).append(page)
    for path, view in routes().items():
        if path != view.url_path:
            groups[view.group].append(st.Page(_redirect(view), title=view.title, url_path=path, visibility="hidden"))
    return st.navigation(groups, expanded=True)
