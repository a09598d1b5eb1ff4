"""The one theme of lmscope's figures, set explicitly so Streamlit's default template never leaks into exports."""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

FONT = "DejaVu Sans, Arial, sans-serif"
SEQUENTIAL = "Viridis"
TEMPLATE = go.layout.Template(pio.templates["plotly_white"])
TEMPLATE.layout.update(
    font={"family": FONT, "size": 14},
    title={"font": {"size": 18}, "x": 0.02, "xanchor": "left"},
    margin={"l": 70, "r": 30, "t": 70, "b": 70},
)


def themed(fig: go.Figure, title: str, subtitle: str | None = None) -> go.Figure:
    """Apply the lmscope template, a title and an optional subtitle to a figure (returns the same figure)."""
    fig.update_layout(template=TEMPLATE, title_text=title)
    if subtitle:
        fig.update_layout(title_subtitle_text=subtitle)
    return fig


def legend_below(fig: go.Figure, height: int) -> go.Figure:
    """A horizontal legend under the plot, leaving the top for a two-line subtitle."""
    fig.update_layout(
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0.0}, margin={"t": 100, "b": 120}, height=height
    )
    return fig


def token_axis(tokens: list[str], max_labels: int = 48, angle: int = 0) -> dict:
    """Axis settings that label positions with their tokens (every k-th one when there are many)."""
    step = max(1, -(-len(tokens) // max_labels))
    positions = list(range(0, len(tokens), step))
    return {
        "tickmode": "array",
        "tickvals": positions,
        "ticktext": [visible(tokens[i]) for i in positions],
        "tickangle": angle,
    }


def visible(token: str) -> str:
    """A token label with its whitespace made visible (space, newline, tab) so no label is blank."""
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"
