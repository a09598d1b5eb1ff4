"""Structured attention: sliding, dilated and global masks beside a head's real attention, and the loss of the
text when every layer of the model is limited to a sliding window, with and without sink tokens."""

from __future__ import annotations

import streamlit as st

from probes import attention, structured
from ui import state
from ui.charts import show_figure
from ui.head_choice import grid_click, head_inputs
from ui.layout import page
from ui.models import current_model, probe_or_stop, probe_with_progress, result_cache
from viz.attention import head_grid
from viz.structured import METRICS, extra_loss_by_token, loss_by_window, mask_panel

page(
    "Structured attention",
    "Sparse attention patterns for long contexts (sliding window, dilated, global + sliding), drawn beside a "
    "real head and then imposed on every layer of the model to see what they cost.",
)

handle = current_model()
cached = probe_or_stop(
    "Running the model and reading every head's attention...",
    lambda: attention.run(handle, state.text(), result_cache()),
)
result = cached.value
n = len(result.tokens)


def _text_choice(name: str, default: str) -> None:
    """Fill a text control from the URL once; it is parsed, with a clear message, where it is used."""
    if f"st_{name}" not in st.session_state:
        st.session_state[f"st_{name}"] = st.query_params.get(name, default)[:200]


state.init_number("st_window", "window", min(8, n - 1), n, lower=1)
state.init_number("st_dilation", "dilation", 2, n, lower=1)
state.init_number("st_sinks", "sinks", min(4, n - 1), n)
_text_choice("global", str(n // 2))
_text_choice("windows", ", ".join(str(w) for w in structured.DEFAULT_WINDOWS if w < n) or "1")
if "st_metric" not in st.session_state:
    st.session_state["st_metric"] = state.url_choice("metric", list(METRICS), "nll")

controls = st.columns(6)
layer, head = head_inputs("st", result.n_layers, result.n_heads, controls[0], controls[1])
window = controls[2].number_input(
    "Window w", 1, n - 1, key="st_window", help="Each query sees itself and the w - 1 tokens before it."
)
dilation = controls[3].number_input(
    "Dilation d", 1, n - 1, key="st_dilation", help="The dilated window sees q, q-d, q-2d, ...: w keys, d apart."
)
global_text = controls[4].text_input(
    "Global positions g",
    key="st_global",
    help=f"Token positions (0 to {n - 1}, commas between) that see every earlier token and are seen by every later one.",
)
sinks = controls[5].number_input(
    "Sink tokens k",
    0,
    n - 1,
    key="st_sinks",
    help="The first k tokens stay visible to every query (StreamingLLM's attention sinks).",
)
windows_text = st.session_state["st_windows"]
metric = st.session_state["st_metric"]
view_options = {
    "window": window,
    "dilation": dilation,
    "global": global_text,
    "sinks": sinks,
    "windows": windows_text,
    "metric": metric,
}
state.sync_url(layer=layer, head=head, **view_options)

view = probe_or_stop(
    "Measuring how much of every head's attention each mask keeps...",
    lambda: structured.mask_view(
        handle,
        state.text(),
        window,
        dilation,
        structured.parse_ints(global_text, "global positions"),
        sinks,
        result_cache(),
    ),
).value

show_figure(mask_panel(result, view, layer, head), "st_masks", f"{result.model}-masks-L{layer}-H{head}-w{window}")

st.markdown(
    "**Every head under one mask.** Heads whose attention is local keep almost everything; heads that look far back "
    "(or at the first token) lose most of it. Click a cell to show that head above."
)
shown = st.selectbox("Mask", range(1, len(view.titles)), format_func=lambda i: view.titles[i], key="st_grid_mask")
show_figure(
    head_grid(view.kept[shown], f"Share of each head's attention kept by: {view.titles[shown]}", "kept", zmax=1.0),
    "st_grid",
    f"{result.model}-kept-mass",
    on_select=grid_click("st"),
    selection_mode="points",
)

st.divider()
st.subheader("Applied for real: the loss under a sliding window")
if not handle.is_causal:
    st.info(
        f"{handle.name} is an encoder: it does not predict the next token, so it has no loss to measure. "
        "The masks above still show what each structure would keep; pick a decoder on the home page for the loss."
    )
    st.stop()
also_sinks = f", then once more per window with the first {sinks} tokens kept visible (sink tokens k)" if sinks else ""
st.markdown(
    "The model runs once with full attention and once per window, with the window imposed on **every layer** "
    f"(on top of the causal mask){also_sinks}."
)
left, right = st.columns([3, 1])
left.text_input("Window sizes to sweep", key="st_windows", help=f"Whole numbers from 1 to {n - 1}, commas between.")
right.radio(
    "Show",
    list(METRICS),
    key="st_metric",
    format_func=lambda m: "mean NLL" if m == "nll" else "perplexity",
    horizontal=True,
)
sweep = probe_with_progress(
    "Running the model once per window, forward passes",
    lambda progress: structured.window_sweep(
        handle, state.text(), structured.parse_ints(windows_text, "window sizes"), sinks, result_cache(), progress
    ),
).value

show_figure(loss_by_window(sweep, metric), "st_loss", f"{sweep.model}-loss-by-window-k{sweep.sinks}")
rows = sweep.rows()
formats = {k: st.column_config.NumberColumn(format="%.3f" if "NLL" in k else "%.1f") for k in rows[0] if k != "window"}
st.dataframe(rows, hide_index=True, column_config=formats)
swept = [int(w) for w in sweep.windows]
if st.session_state.get("st_token_window") not in swept:
    st.session_state["st_token_window"] = window if window in swept else swept[len(swept) // 2]
picked = st.selectbox("Window to inspect token by token", swept, key="st_token_window")
show_figure(extra_loss_by_token(sweep, picked), "st_tokens", f"{sweep.model}-extra-loss-w{picked}-k{sweep.sinks}")
