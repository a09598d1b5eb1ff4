"""Figure builders: the data they draw is the probe's data; exports are real PNG/SVG/PDF files."""

from __future__ import annotations

import io
import json
import warnings
import zipfile

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from plotly.subplots import make_subplots

from probes import attention
from results.attention import AttentionResult
from runtime.cache import ResultCache
from runtime.handle import ModelHandle
from viz.attention import attention_heatmap, head_summary_grid
from viz.export import figure_bytes, figures_zip
from viz.layers import LINE, mark_sliding_layers
from viz.theme import TEMPLATE, slide, themed, title_html, title_on_top, token_axis, visible
from viz.tokens import token_chips_html

TEXT = "The cat sat on the mat.\nThe dog sat on the log."


@pytest.fixture(scope="module")
def smollm2_attention(smollm2: ModelHandle, tmp_path_factory: pytest.TempPathFactory) -> AttentionResult:
    return attention.run(smollm2, TEXT, ResultCache(tmp_path_factory.mktemp("cache"))).value


def test_heatmap_draws_the_head_and_blanks_the_future(smollm2_attention: AttentionResult) -> None:
    fig = attention_heatmap(smollm2_attention, 4, 2)
    z = np.asarray(fig.data[0].z, dtype=float)
    n = len(smollm2_attention.tokens)
    expected = smollm2_attention.maps[4, 2].astype(float)
    lower = np.tril(np.ones((n, n), dtype=bool))
    np.testing.assert_array_equal(z[lower], expected[lower])
    assert np.isnan(z[~lower]).all()
    step = -(-n // 24)  # at most 24 labels; the hover names every cell
    assert list(fig.layout.xaxis.ticktext) == [visible(t) for t in smollm2_attention.tokens[::step]]
    assert "Layer 4, head 2" in fig.layout.title.text


def test_encoder_heatmap_has_no_mask(minilm: ModelHandle, cache: ResultCache) -> None:
    result = attention.run(minilm, TEXT, cache).value
    z = np.asarray(attention_heatmap(result, 0, 0).data[0].z, dtype=float)
    assert not np.isnan(z).any()


def test_grid_cells_carry_layer_and_head(smollm2_attention: AttentionResult) -> None:
    fig = head_summary_grid(smollm2_attention, "previous_token")
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), smollm2_attention.previous_token)
    markers = fig.data[1]
    assert len(markers.x) == len(markers.y) == len(markers.customdata) == 30 * 9
    index = 7 * 9 + 5
    assert (markers.y[index], markers.x[index]) == (7, 5)
    assert markers.customdata[index][0] == pytest.approx(smollm2_attention.previous_token[7, 5])


def test_long_axes_are_thinned() -> None:
    axis = token_axis([f"t{i}" for i in range(500)], max_labels=50)
    assert len(axis["tickvals"]) <= 50 and axis["tickvals"][0] == 0


def test_token_chips_escape_html() -> None:
    html = token_chips_html(["<b>", " x"], np.array([5, 6]))
    assert "&lt;b&gt;" in html and "␣x" in html and "<b>" not in html


def test_exports_ignore_the_default_template(smollm2_attention: AttentionResult) -> None:
    fig = attention_heatmap(smollm2_attention, 0, 0)
    pio.templates.default = "plotly_dark"  # what importing a UI library may do
    try:
        png = figure_bytes(fig, "png", width=640, height=480, scale=1)
        svg = figure_bytes(fig, "svg", width=640, height=480)
        pdf = figure_bytes(fig, "pdf", width=640, height=480)
    finally:
        pio.templates.default = "plotly"
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 640 and int.from_bytes(png[20:24], "big") == 480
    assert b"<svg" in svg[:500] and b"Layer 0, head 0" in svg
    assert b"fill: rgb(255, 255, 255)" in svg or b"fill:#fff" in svg.replace(b" ", b"")
    assert pdf.startswith(b"%PDF")
    assert go.Figure(fig).layout.template == TEMPLATE


def test_an_export_leaves_the_other_sessions_warnings_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions are threads of one process and share its warning filters: an export swaps in no blanket filter while
    it renders (kaleido's warning about the options a running server ignores is filtered once, by its message)."""
    during: list[list] = []
    monkeypatch.setattr(go.Figure, "to_image", lambda self, **_: during.append(list(warnings.filters)) or b"")
    figure_bytes(go.Figure(), "svg")
    assert during and not [f for f in during[0] if f[0] == "ignore" and f[1] is None and f[2] is UserWarning]


def test_figures_zip_holds_every_figure_in_every_format() -> None:
    first = go.Figure(go.Bar(y=[1, 2]), layout={"title": {"text": "Load"}})
    second = go.Figure(go.Scatter(y=[3, 1]), layout={"title": {"text": "Flow"}})
    archive = zipfile.ZipFile(io.BytesIO(figures_zip([("load", first), ("load", second)])))
    index = json.loads(archive.read("index.json"))
    assert [entry["files"] for entry in index] == [["load.png", "load.svg"], ["load-2.png", "load-2.svg"]]
    assert [entry["title"] for entry in index] == ["Load", "Flow"]
    assert archive.read("load-2.png").startswith(b"\x89PNG") and b"<svg" in archive.read("load.svg")


def _layer_chart(axis: str) -> go.Figure:
    fig = make_subplots(rows=2, cols=1)
    fig.add_trace(go.Scatter(x=[0, 1], y=[1, 2]), row=1, col=1)
    fig.add_trace(go.Scatter(x=[0, 1, 2, 3], y=[3, 1, 2, 0]), row=2, col=1)
    fig.update_xaxes(title_text="tokens", row=1, col=1)
    (fig.update_xaxes if axis == "x" else fig.update_yaxes)(title_text="layer (output of block)", row=2, col=1)
    return themed(fig, "A chart", "its subtitle")


@pytest.mark.parametrize("axis", ["x", "y"])
def test_sliding_window_layers_are_starred_and_shaded_on_every_layer_axis(axis: str) -> None:
    fig = mark_sliding_layers(_layer_chart(axis), [512, 512, None, 512])
    layout = fig.layout
    layer_axis = layout.xaxis2 if axis == "x" else layout.yaxis2
    assert list(layer_axis.ticktext) == ["0*", "1*", "2", "3*"] and list(layer_axis.tickvals) == [0, 1, 2, 3]
    assert layout.xaxis.ticktext is None and (layout.yaxis2.ticktext is None) == (axis == "x")
    other = "y" if axis == "x" else "x"
    bands = [(s[f"{axis}0"], s[f"{axis}1"], s[f"{axis}ref"], s[f"{other}ref"], s.layer) for s in layout.shapes]
    assert bands == [(1.5, 2.5, f"{axis}2", f"{other}2 domain", "below")]  # the full-attention layer
    assert layout.title.subtitle.text == (
        "its subtitle<br>* sliding window: sees only the last 512 tokens (3 of 4 layers); shaded: full attention"
    )
    assert layout.margin.t == TEMPLATE.layout.margin.t + LINE  # room for the note's line
    again = mark_sliding_layers(go.Figure(fig), [512, 512, None, 512])  # a preset's figure shown on a page
    assert len(again.layout.shapes) == 1 and again.layout.title.subtitle.text == layout.title.subtitle.text
    every = mark_sliding_layers(_layer_chart(axis), [4096] * 4)  # a model whose layers all slide: no band
    assert not every.layout.shapes and "shaded" not in every.layout.title.subtitle.text


def test_a_model_without_sliding_layers_or_a_figure_without_a_layer_axis_is_left_alone() -> None:
    plain = _layer_chart("x")
    assert mark_sliding_layers(go.Figure(plain), [None] * 4).to_plotly_json() == plain.to_plotly_json()
    no_layers = themed(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])), "t", "s")
    assert mark_sliding_layers(go.Figure(no_layers), [512, None]).to_plotly_json() == no_layers.to_plotly_json()


def test_the_models_windows_come_from_their_configs(smollm2: ModelHandle, gemma3: ModelHandle) -> None:
    assert smollm2.layer_windows == [None] * smollm2.n_layers
    types = gemma3.text_config.layer_types
    assert gemma3.layer_windows == [512 if t == "sliding_attention" else None for t in types]
    assert gemma3.layer_windows.count(None) == 3 and gemma3.layer_windows[5] is None


def test_title_on_top_leaves_room_for_every_subtitle_line_and_the_subplot_titles() -> None:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Layer 0<br>1.4 to 2.5", "Layer 1"))
    themed(fig, "A preset's title", "the builder's title<br>its subtitle<br>a second line<br>a third")
    fig.update_layout(height=400)
    title_on_top(fig)
    layout = fig.layout
    assert (layout.title.y, layout.title.yref, layout.title.yanchor) == (1, "container", "top")
    # Padding, the 18 px title, four 14 px subtitle lines and two lines of 16 px subplot titles, at 1.3 lines.
    assert layout.margin.t == pytest.approx(12 + (18 + 4 * 14 + 2 * 16) * 1.3 + 12)
    assert layout.height == pytest.approx(400 + layout.margin.t - TEMPLATE.layout.margin.t)  # the plot keeps its size
    short = themed(go.Figure(), "Title", "one line")
    assert title_on_top(short).layout.margin.t == TEMPLATE.layout.margin.t  # room enough already: unchanged


def test_title_html_keeps_plotlys_markup_and_shows_everything_else_as_text() -> None:
    fig = themed(go.Figure(), "W<sup>T</sup>W of <b>layer 3</b>", "first token <|im_start|> & co<br>x < y<br />a")
    assert title_html(fig) == (
        '<div class="lm-title">W<sup>T</sup>W of <b>layer 3</b></div>'
        '<div class="lm-subtitle">first token &lt;|im_start|&gt; &amp; co<br>x &lt; y<br>a</div>'
    )
    assert title_html(themed(go.Figure(), "Only a title")) == '<div class="lm-title">Only a title</div>'


def test_a_slide_of_square_maps_is_made_only_as_tall_as_the_maps_need() -> None:
    fig = make_subplots(rows=1, cols=4, horizontal_spacing=0.03)
    for col in range(1, 5):
        fig.add_trace(go.Heatmap(z=np.arange(64.0).reshape(8, 8), showscale=False), row=1, col=col)
        fig.update_yaxes(scaleanchor="x" if col == 1 else f"x{col}", row=1, col=col)
    themed(fig, "Four maps", "one row of square maps")
    fitted = slide(fig, 1600, 900, fit_height=True)
    layout = fitted.layout
    square = (fig.layout.xaxis.domain[1] - fig.layout.xaxis.domain[0]) * (1600 - layout.margin.l - layout.margin.r)
    assert layout.height == pytest.approx(layout.margin.t + square + layout.margin.b, abs=1)
    assert layout.height < 600
    assert slide(fig, 1600, 900).layout.height == 900  # a page of the slide's own shape unless asked
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1]), row=1, col=1)  # not only maps: the scale is free, nothing to fit
    assert slide(fig, 1600, 900, fit_height=True).layout.height == 900
    assert slide(themed(go.Figure(), "No maps"), 1600, 900, fit_height=True).layout.height == 900
