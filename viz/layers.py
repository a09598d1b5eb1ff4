"""Per-layer axes that say which layers attend through a sliding window (Gemma 3: five of every six layers see only
the last 512 tokens). Any figure can be marked: every axis titled "layer" ("layer (output of block)", ...) gets a
tick per layer with the sliding-window layers starred and, in a model that mixes both kinds, a grey band behind
each full-attention layer (hidden under heatmaps, visible behind lines); the subtitle says what both mean."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from viz.theme import TEMPLATE, layout_of, set_properties

BAND = "rgba(120, 120, 120, 0.12)"
NOTE = "* sliding window"
LINE = 24  # pixels of top margin the note's subtitle line takes
MOST_TICKS = 48  # above this many layers, only every few layers is labelled (each band still drawn)


def _is_layer_axis(axis: Any) -> bool:
    title = (axis.title.text or "").strip().lower()
    return title == "layer" or title.startswith("layer ")


def mark_sliding_layers(fig: go.Figure, windows: Sequence[int | None]) -> go.Figure:
    """Star the sliding-window layers (`windows[i]`: layer i's window, None for full attention) and shade the
    full-attention ones on every per-layer axis of the figure; a figure without one, or a model without sliding
    layers, is left as it is."""
    sliding = [i for i, window in enumerate(windows) if window]
    if not sliding:
        return fig
    full = [i for i, window in enumerate(windows) if not window]
    n = len(windows)
    step = -(-n // MOST_TICKS)
    ticks = {
        "tickvals": list(range(0, n, step)),
        "ticktext": [f"{i}*" if windows[i] else str(i) for i in range(0, n, step)],
    }
    layout = layout_of(fig)
    if NOTE in (layout.title.subtitle.text or ""):
        return fig  # marked already (a preset's figure shown on a page)
    marked = False
    for letter, other in (("x", "y"), ("y", "x")):
        for name in set_properties(fig, f"{letter}axis"):
            axis = layout[name]
            if not _is_layer_axis(axis):
                continue
            marked = True
            axis.update(tickmode="array", **ticks)
            ref = letter + name.removeprefix(f"{letter}axis")
            across = f"{axis.anchor or other} domain"
            for i in full:
                band = (
                    {"x0": i - 0.5, "x1": i + 0.5, "y0": 0, "y1": 1}
                    if letter == "x"
                    else {"y0": i - 0.5, "y1": i + 0.5, "x0": 0, "x1": 1}
                )
                fig.add_shape(
                    type="rect",
                    xref=ref if letter == "x" else across,
                    yref=across if letter == "x" else ref,
                    fillcolor=BAND,
                    line_width=0,
                    layer="below",
                    **band,
                )
    if marked:
        widest = max(w for w in windows if w)
        note = f"{NOTE}: sees only the last {widest:,} tokens ({len(sliding)} of {n} layers)"
        if full:
            note += "; shaded: full attention"
        subtitle = layout.title.subtitle.text
        top = layout.margin.t if layout.margin.t is not None else layout_of(TEMPLATE).margin.t
        fig.update_layout(title_subtitle_text=f"{subtitle}<br>{note}" if subtitle else note, margin_t=top + LINE)
    return fig
