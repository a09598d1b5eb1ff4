"""Show a figure with PNG and SVG downloads rendered only on click."""

from __future__ import annotations

import re
from collections.abc import Callable

import plotly.graph_objects as go
import streamlit as st

from viz.export import FORMATS, browser_path, figure_bytes


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:80] or "figure"


def _renderer(fig: go.Figure, fmt: str) -> Callable[[], bytes]:
    return lambda: figure_bytes(fig, fmt)


def show_figure(fig: go.Figure, key: str, name: str, **chart_options) -> object:
    """Draw the chart and its PNG/SVG download buttons; returns what st.plotly_chart returns."""
    event = st.plotly_chart(fig, key=key, theme=None, width="stretch", **chart_options)
    if browser_path() is None:
        st.caption("PNG/SVG downloads need chromium on the server (Debian package `chromium`).")
        return event
    row = st.container(horizontal=True)
    for fmt in ("png", "svg"):
        row.download_button(
            fmt.upper(),
            icon=":material/download:",
            data=_renderer(fig, fmt),
            file_name=f"{_slug(name)}.{fmt}",
            mime=FORMATS[fmt],
            key=f"{key}-{fmt}",
            on_click="ignore",
        )
    return event
