"""The frame every page shares: page config, title, and the current choice in the sidebar."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.charts import start_page_figures
from ui.markdown import code, literal
from ui.navigation import HOME
from viz.export import browser_path, figures_zip, slug


def page(title: str, caption: str, export: bool = True) -> None:
    """Configure the page and draw its title, caption and the sidebar summary of the choice, with a button that
    exports the page's figures as one zip (unless `export` is off: a page without charts)."""
    st.set_page_config(page_title=f"{title} · lmscope", page_icon=":material/biotech:", layout="wide")
    st.title(title)
    st.caption(caption)
    cut = state.linked_text_cut()
    if cut:
        st.warning(
            f"The link's text has {cut:,} characters: it is cut to its first {state.MAX_URL_TEXT:,}. Longer texts are "
            "typed or pasted on the home page."
        )
    with st.sidebar:
        st.markdown(f"**Model:** {code(state.model_name())}")
        preview = state.text()
        st.markdown(f"**Text:** {literal(preview[:120])}{'…' if len(preview) > 120 else ''}")
        st.page_link(HOME, label="Change model or text", icon=":material/edit:")
        figures = start_page_figures()
        if export and browser_path() is not None:  # rendered on click, from the figures this run of the page showed
            st.download_button(
                "Export this page's figures",
                icon=":material/folder_zip:",
                data=lambda: figures_zip(figures),
                file_name=f"lmscope-{slug(title)}.zip",
                mime="application/zip",
                on_click="ignore",
                help="A zip of every chart on this page as PNG and SVG, with an index.json.",
            )
