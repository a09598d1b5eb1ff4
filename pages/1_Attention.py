"""Attention: one head's map and a layer x head overview of sink, previous-token and entropy summaries."""

from __future__ import annotations

import streamlit as st

from probes import attention
from probes.errors import LmscopeError
from ui import state
from ui.charts import show_figure
from ui.layout import page
from ui.models import loaded_model, result_cache
from viz.attention import SUMMARY_LABELS, attention_heatmap, head_summary_grid
from viz.tokens import token_chips_html

page(
    "Attention",
    "Where each token looks. Rows are queries (the attending token), columns keys; each row sums to 1.",
)

handle = loaded_model(state.model_name())
if handle is None:
    st.stop()
if "attn_logits" not in st.session_state:
    st.session_state["attn_logits"] = st.query_params.get("logits") == "1"
show_logits = st.session_state["attn_logits"]
try:
    with st.spinner("Running the model and summarising every head..."):
        cached = attention.run(handle, state.text(), result_cache(), with_logits=show_logits)
except LmscopeError as exc:
    st.error(str(exc))
    st.page_link("app.py", label="Change the model or text", icon=":material/edit:")
    st.stop()
if cached.warning:
    st.warning(cached.warning)
result = cached.value

for key, upper in (("layer", result.n_layers), ("head", result.n_heads)):
    widget = f"attn_{key}"
    if widget not in st.session_state:
        st.session_state[widget], problem = state.url_int(key, 0, upper)
        if problem:
            st.warning(problem)
    elif st.session_state[widget] >= upper:  # the model changed under a kept choice
        st.session_state[widget] = 0
if "attn_summary" not in st.session_state:
    asked = st.query_params.get("summary", "sink_share")
    st.session_state["attn_summary"] = asked if asked in attention.SUMMARIES else "sink_share"


def _pick_head() -> None:
    points = st.session_state["attn_grid"]["selection"]["points"]
    if points:  # the grid's markers sit at x = head, y = layer
        st.session_state["attn_layer"], st.session_state["attn_head"] = int(points[0]["y"]), int(points[0]["x"])


controls = st.columns([1, 1, 1, 3])
layer = controls[0].number_input("Layer", 0, result.n_layers - 1, key="attn_layer")
head = controls[1].number_input("Head", 0, result.n_heads - 1, key="attn_head")
controls[2].toggle("Logits", key="attn_logits", help="Show pre-softmax scores (q·k scaled, before the softmax) instead of weights.")
summary = controls[3].selectbox("Overview colour", attention.SUMMARIES, key="attn_summary", format_func=lambda s: SUMMARY_LABELS[s])
state.sync_url(layer=layer, head=head, summary=summary, logits=int(show_logits))

left, right = st.columns([3, 2])
with left:
    kind = "logits" if show_logits else "attention"
    show_figure(
        attention_heatmap(result, layer, head, logits=show_logits), "attn_map", f"{result.model}-{kind}-L{layer}-H{head}"
    )
with right:
    st.markdown("Click a cell to show that head.")
    show_figure(
        head_summary_grid(result, summary),
        "attn_grid",
        f"{result.model}-{summary}-grid",
        on_select=_pick_head,
        selection_mode="points",
    )

st.markdown(f"**Tokens** ({len(result.tokens)})" + (" · from the result cache" if cached.hit else ""))
st.html(token_chips_html(result.tokens, result.token_ids))
