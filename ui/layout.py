"""The frame every page shares: page config, title, and the current choice in the sidebar."""

from __future__ import annotations

import streamlit as st

from ui import state


def page(title: str, caption: str) -> None:
    """Configure the page and draw its title, caption and the sidebar summary of the choice."""
    st.set_page_config(page_title=f"{title} · lmscope", page_icon=":material/biotech:", layout="wide")
    st.title(title)
    st.caption(caption)
    with st.sidebar:
        st.markdown(f"**Model:** `{state.model_name()}`")
        preview = state.text()
        st.markdown(f"**Text:** {preview[:120]}{'…' if len(preview) > 120 else ''}")
        st.page_link("app.py", label="Change model or text", icon=":material/edit:")
