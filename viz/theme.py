"""The one theme of lmscope's figures, set explicitly so Streamlit's default template never leaks into exports."""

from __future__ import annotations

import html
import math
import re
import textwrap
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

FONT = "DejaVu Sans, Arial, sans-serif"
SEQUENTIAL = "Viridis"
TEMPLATE = go.layout.Template(pio.templates["plotly_white"])


def layout_of(fig: go.Figure | go.layout.Template) -> Any:
    """The layout of a figure or template, read as the dynamic object it is: plotly's generated properties carry
    no annotations, so a type checker would infer each as a union of their internal return paths."""
    return fig.layout


layout_of(TEMPLATE).update(
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


def title_on_top(fig: go.Figure) -> go.Figure:
    """Pin the title and subtitle to the top of the figure and make the top margin tall enough for them and the
    subplot titles above the plot, however many lines the subtitle has (returns the same figure)."""
    layout, base = layout_of(fig), layout_of(TEMPLATE)
    body = layout.font.size or base.font.size
    subtitle = layout.title.subtitle.text
    lines = str(subtitle).count("<br>") + 1 if subtitle else 0
    needed = 12 + base.title.font.size * _LINE + lines * body * _LINE + _top_labels(fig, body) + 12
    current = layout.margin.t if layout.margin.t is not None else base.margin.t
    fig.update_layout(
        title={"y": 1, "yref": "container", "yanchor": "top", "pad": {"t": 12}}, margin_t=max(current, needed)
    )
    if layout.height is not None and needed > current:  # the plot keeps its height
        fig.update_layout(height=layout.height + needed - current)
    return fig


_MARKUP = re.compile(r"&lt;(/?)(b|i|em|sup|sub)&gt;|&lt;br\s*/?&gt;")


def title_html(fig: go.Figure) -> str:
    """The figure's title and subtitle as HTML that wraps to any width (for a page that shows them above the plot):
    Plotly's markup for line breaks, bold, italics, super- and subscripts kept, everything else as plain text."""

    def markup(text: str) -> str:
        return _MARKUP.sub(lambda m: f"<{m[1]}{m[2]}>" if m[2] else "<br>", html.escape(text, quote=False))

    layout = layout_of(fig)
    parts = [("lm-title", layout.title.text), ("lm-subtitle", layout.title.subtitle.text)]
    return "".join(f'<div class="{name}">{markup(str(text))}</div>' for name, text in parts if text)


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


# ---- slides -------------------------------------------------------------------------------------------------

SLIDE_WIDTH, SLIDE_HEIGHT = 1920, 1080
# Font sizes in pixels on a 1920 x 1080 slide, scaled with the slide: readable from the back of a lecture hall.
SLIDE_FONT = 26
SLIDE_TITLE = 46
SLIDE_SUBTITLE = 26
SLIDE_CAPTION = 30
_EM_WIDTH = 0.56  # DejaVu Sans' mean glyph width in ems: how many characters fit on a line
_LINE = 1.3  # line height in ems
_NO_AXES = {"surface", "scatter3d", "mesh3d", "sankey", "pie"}  # traces drawn without cartesian axes
_LEGEND_TRACES = {"scatter", "scattergl", "bar", "histogram", "box", "violin"}


def wrap(text: str, chars: int) -> list[str]:
    """Lines of at most `chars` characters (words kept whole), the text's own <br> breaks kept."""
    lines: list[str] = []
    for part in re.split(r"<br\s*/?>", text):
        lines += textwrap.wrap(part, max(10, chars)) or [""]
    return lines


def _fits(px: float, width: float) -> int:
    """How many characters of a px-sized font fit in width pixels."""
    return int(width / (px * _EM_WIDTH))


def set_properties(fig: go.Figure, prefix: str) -> list[str]:
    """The layout's set properties named prefix, prefix2, ... (the subplots' axes or 3D scenes)."""
    return [name for name in layout_of(fig).to_plotly_json() if re.fullmatch(rf"{prefix}\d*", name)]


def _grow(fig: go.Figure, grow: float, body: float) -> None:
    """Scale every explicitly sized font (subplot titles, annotations, trace text) by `grow`, and the lines and
    markers of line charts by its square root (thicker, not as much as the text); 3D axis labels get a size of
    their own, since WebGL draws them larger than the same size in 2D."""
    layout = layout_of(fig)
    for scene in (layout[name] for name in set_properties(fig, "scene")):
        for annotation in scene.annotations:
            annotation.font.size = (annotation.font.size or layout_of(TEMPLATE).font.size) * grow
        for axis in (scene.xaxis, scene.yaxis, scene.zaxis):
            axis.tickfont.size, axis.title.font.size = 0.55 * body, 0.7 * body
            _thin(axis, 8)
        eye = scene.camera.eye
        if eye.x is not None and scene.aspectratio.x is None:  # a flatter box seen closer fills the wide slide
            scene.camera.eye = {"x": eye.x * 0.8, "y": eye.y * 0.8, "z": eye.z * 0.8}
            scene.aspectmode, scene.aspectratio = "manual", {"x": 1.0, "y": 1.0, "z": 0.7}
    for annotation in layout.annotations:
        if annotation.font.size:
            annotation.font.size *= grow
    thicker = math.sqrt(grow)
    for trace in fig.data:
        textfont = getattr(trace, "textfont", None)
        if textfont is not None and isinstance(textfont.size, (int, float)):
            textfont.size *= grow
        if trace.type != "scatter":
            continue
        mode = trace.mode or "lines+markers"
        if "lines" in mode and trace.line.width != 0:
            trace.line.width = (trace.line.width or 2) * thicker
        if "markers" in mode:
            size = trace.marker.size
            trace.marker.size = (np.asarray(size) * thicker).tolist() if size is not None else 6 * thicker


def _thin(axis: Any, most: int) -> None:
    """Keep at most `most` labels of an axis labelled by an array of ticks (every k-th), or widen its step."""
    if axis.tickvals is not None and axis.ticktext is not None and len(axis.tickvals) > most:
        step = -(-len(axis.tickvals) // most)
        axis.tickvals, axis.ticktext = list(axis.tickvals)[::step], list(axis.ticktext)[::step]
    elif isinstance(axis.dtick, (int, float)) and axis.range is not None:
        count = abs(axis.range[1] - axis.range[0]) / axis.dtick
        if count > most:
            axis.dtick = next(d for d in (1, 2, 5, 10, 20, 50, 100) if count * axis.dtick / d <= most or d == 100)


def _fit_ticks(fig: go.Figure, body: float, plot_width: float, plot_height: float) -> None:
    """Thin the labels of every 2D axis to what its length holds at the slide's font: token labels (arrays of
    ticks) a little smaller than the body text, one label per 1.6 lines along a y axis or per label width along
    an x axis; square maps (scaleanchor) measured by their shorter side."""
    layout = layout_of(fig)
    names = set_properties(fig, "xaxis") + set_properties(fig, "yaxis")
    squares = {layout[n].scaleanchor for n in names if n.startswith("yaxis") and layout[n].scaleanchor}
    for name in names:
        axis = layout[name]
        start, end = axis.domain or (0.0, 1.0)
        along = (plot_width if name.startswith("x") else plot_height) * (end - start)
        if name.startswith("y") and axis.scaleanchor or name.replace("axis", "") in squares:
            along = min(along, plot_height if name.startswith("x") else plot_width * (end - start))
        font = 0.75 * body if axis.ticktext is not None else body
        if axis.ticktext is not None:
            axis.tickfont.size = font
        width = font * 1.6
        if name.startswith("x") and not axis.tickangle and axis.ticktext is not None:
            width = max(len(str(t)) for t in axis.ticktext) * font * _EM_WIDTH + font
        _thin(axis, max(2, int(along / width)))


def _top_labels(fig: go.Figure, body: float) -> float:
    """Height of the annotations standing on top of the plot area (subplot titles), which live in the margin."""
    heights = [
        (str(a.text).count("<br>") + 1) * (a.font.size or body) * _LINE
        for a in layout_of(fig).annotations
        if a.yref == "paper" and a.y is not None and a.y >= 0.99 and a.yanchor == "bottom"
    ]
    return max(heights, default=0.0)


def _legend_rows(fig: go.Figure, body: float, width: float) -> int:
    """Rows a horizontal legend of these traces takes across `width` pixels (0 when no legend shows)."""
    names = [t.name for t in fig.data if t.type in _LEGEND_TRACES and t.showlegend is not False and t.name]
    showlegend = layout_of(fig).showlegend
    if showlegend is False or (showlegend is None and len(names) < 2):
        return 0
    rows, used = 1, 0.0
    for name in names:
        item = 2.6 * body + len(re.sub(r"<[^>]+>", "", name)) * body * _EM_WIDTH
        if used and used + item > width:
            rows, used = rows + 1, 0.0
        used += item
    return rows


def _axis_labels(fig: go.Figure, body: float) -> float:
    """Height under the plot for x tick labels and the axis title, rotated token labels included."""
    axes = [layout_of(fig)[name] for name in set_properties(fig, "xaxis")]
    if not axes and all(trace.type in _NO_AXES for trace in fig.data):
        return 0.0
    longest = 0.0
    for axis in axes:
        labels = [re.sub(r"<[^>]+>", "", str(t)) for t in (axis.ticktext or ())]
        if labels and axis.tickangle:  # token labels, drawn at 0.75 of the body size (see _fit_ticks)
            slant = abs(math.sin(math.radians(axis.tickangle)))
            longest = max(longest, max(map(len, labels)) * 0.75 * body * _EM_WIDTH * slant)
    return longest + 3.0 * body * _LINE


def _square_maps_height(fig: go.Figure, plot_width: float) -> float | None:
    """The plot height at which every map fills its subplot's width, for a figure of heatmaps whose y axes are
    anchored to the x scale (square cells); None when a trace is not such a map, or there is none."""
    layout = layout_of(fig)
    needed: list[float] = []
    for trace in fig.data:
        if not isinstance(trace, go.Heatmap) or trace["z"] is None:
            return None
        x_axis, y_axis = (
            layout[f"{axis}axis{str(name)[1:]}"]
            for axis, name in (("x", trace["xaxis"] or "x"), ("y", trace["yaxis"] or "y"))
        )
        if y_axis.scaleanchor is None:
            return None
        rows, cols = np.asarray(trace["z"], dtype=object).shape[:2]
        x_share, y_share = (a.domain[1] - a.domain[0] if a.domain else 1.0 for a in (x_axis, y_axis))
        needed.append(x_share * plot_width * rows / cols / y_share)
    return max(needed, default=None)


def slide(
    fig: go.Figure,
    width: int = SLIDE_WIDTH,
    height: int = SLIDE_HEIGHT,
    titles: bool = True,
    caption: str | None = None,
    fit_height: bool = False,
) -> go.Figure:
    """A copy of the figure as a width x height slide: fonts sized for 1920 x 1080 and scaled with the slide,
    colour scales untouched, the title and subtitle (wrapped to the width) only when `titles`, and the caption
    as a text block under the plot when given. With `fit_height`, a figure of square-celled maps (heatmaps whose
    axes keep one scale) is made only as tall as its maps need, where a 16:9 page would leave it blank below."""
    out = go.Figure(fig)
    scale = min(width / SLIDE_WIDTH, height / SLIDE_HEIGHT)
    body = SLIDE_FONT * scale
    layout, base = layout_of(out), layout_of(TEMPLATE)
    grow = body / base.font.size
    pad = 24 * scale
    left = (layout.margin.l or base.margin.l) * grow
    right = (layout.margin.r or base.margin.r) * grow
    usable = width - left - right
    out.update_layout(template=TEMPLATE, width=width, height=height, autosize=False, font_size=body)
    _grow(out, grow, body)
    out.update_xaxes(automargin=True)
    out.update_yaxes(automargin=True)

    top = pad + _top_labels(out, body)
    if titles and layout.title.text:
        title_px, subtitle_px = SLIDE_TITLE * scale, SLIDE_SUBTITLE * scale
        title = wrap(str(layout.title.text), _fits(title_px, usable))
        subtitle = (
            wrap(str(layout.title.subtitle.text or ""), _fits(subtitle_px, usable))
            if layout.title.subtitle.text
            else []
        )
        out.update_layout(
            title={
                "text": "<br>".join(title),
                "font": {"size": title_px},
                "subtitle": {"text": "<br>".join(subtitle), "font": {"size": subtitle_px}},
                "x": 0,
                "xref": "paper",
                "xanchor": "left",
                "y": 1 - pad / height,
                "yref": "container",
                "yanchor": "top",
            }
        )
        top += pad + len(title) * title_px * 1.2 + len(subtitle) * subtitle_px * _LINE + pad
    else:
        out.update_layout(title_text="", title_subtitle_text="")

    below = _axis_labels(out, body)
    caption_height = 0.0
    if caption:
        caption_px = SLIDE_CAPTION * scale
        lines = wrap(caption, _fits(caption_px, usable))
        caption_height = len(lines) * caption_px * _LINE + 2 * pad
    rows = _legend_rows(out, body, usable) if layout.legend.orientation == "h" else 0
    legend_height = rows * body * 1.5 + (pad if rows else 0)
    bottom = below + legend_height + caption_height + pad
    maps = _square_maps_height(out, usable) if fit_height else None
    if maps is not None and top + maps + bottom < height:
        height = math.ceil(top + maps + bottom)
        out.update_layout(height=height)
    if rows:  # horizontal legends go under the plot, above the caption, whatever the builder chose
        out.update_layout(
            legend={
                "orientation": "h",
                "x": 0,
                "xanchor": "left",
                "y": (caption_height + legend_height) / height,
                "yref": "container",
                "yanchor": "top",
            }
        )
    if caption:
        out.add_annotation(
            text="<br>".join(lines),
            xref="paper",
            x=0,
            xanchor="left",
            yref="paper",
            y=0,
            yanchor="top",
            yshift=-(below + legend_height + pad),
            align="left",
            showarrow=False,
            font={"size": caption_px, "color": "#222222"},
        )
    out.update_layout(margin={"l": left, "r": right, "t": top, "b": bottom})
    _fit_ticks(out, body, usable, height - top - bottom)
    return out
