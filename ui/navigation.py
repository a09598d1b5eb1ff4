"""The dashboard's navigation, read from the view registry: the home page, then every view's page by group."""

from __future__ import annotations

import streamlit as st
from streamlit.navigation.page import StreamlitPage

import views  # noqa: F401  (registers every view)
from views.registry import views as registered

HOME = "app_pages/home.py"


def navigation() -> StreamlitPage:
    """Register the home page and every view's page with Streamlit; returns the page the URL asks for."""
    groups: dict[str, list[StreamlitPage]] = {
        "": [st.Page(HOME, title="Model and text", icon=":material/edit:", default=True)]
    }
    for view in registered():
        page = st.Page(view.page, title=view.title, icon=f":material/{view.icon}:", url_path=view.url_path)
        groups.setdefault(view.group, []).append(page)
    return st.navigation(groups)
