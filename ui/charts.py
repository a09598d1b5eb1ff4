"""Show a figure with PNG and SVG downloads rendered only on click."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import plotly.graph_objects as go
import streamlit as st

from viz.export import FORMATS, browser_path, figure_bytes, slug
from viz.layers import mark_sliding_layers

PAGE_FIGURES = "_lm_page_figures"


def start_page_figures() -> list[tuple[str, go.Figure]]:
    """A fresh list of the figures this run of the page shows (show_figure adds to it), for the zip export."""
    st.session_state[PAGE_FIGURES] = []
    return st.session_state[PAGE_FIGURES]


def _renderer(fig: go.Figure, fmt: str) -> Callable[[], bytes]:
    return lambda: figure_bytes(fig, fmt)


def show_figure(
    fig: go.Figure,
    key: str,
    name: str,
    windows: Sequence[int | None] = (),
    download: go.Figure | None = None,
    **chart_options,
) -> object:
    """Draw the chart and its PNG/SVG download buttons; returns what st.plotly_chart returns. `windows`: the drawn
    model's per-layer attention windows (`ModelHandle.layer_windows`), so its sliding-window layers are marked;
    `download`: what the buttons save, when not the chart as drawn."""
    mark_sliding_layers(fig, windows)
    event = st.plotly_chart(fig, key=key, theme=None, width="stretch", **chart_options)
    saved = fig if download is None else download
    st.session_state.setdefault(PAGE_FIGURES, []).append((name, saved))
    if browser_path() is None:
        st.caption("PNG/SVG downloads need chromium on the server (Debian package `chromium`).")
        return event
    row = st.container(horizontal=True)
    for fmt in ("png", "svg"):
        row.download_button(
            fmt.upper(),
            icon=":material/download:",
            data=_renderer(saved, fmt),
            file_name=f"{slug(name)}.{fmt}",
            mime=FORMATS[fmt],
            key=f"{key}-{fmt}",
            on_click="ignore",
        )
    return event
