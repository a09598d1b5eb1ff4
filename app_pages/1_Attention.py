"""Attention: one head's map and a layer x head overview of sink, previous-token and entropy summaries."""

from __future__ import annotations

import streamlit as st

from probes import attention
from ui import state
from ui.charts import show_figure
from ui.head_choice import grid_click, head_inputs
from ui.layout import page
from ui.models import current_model, probe_or_stop, result_cache
from viz.attention import SUMMARY_LABELS, attention_heatmap, head_summary_grid
from viz.tokens import token_chips_html

page(
    "Attention",
    "Where each token looks. Rows are queries (the attending token), columns keys; each row sums to 1.",
)

handle = current_model()
st.session_state.setdefault("attn_logits", st.query_params.get("logits") == "1")
show_logits = st.session_state["attn_logits"]
cached = probe_or_stop(
    "Running the model and summarising every head...",
    lambda: attention.run(handle, state.text(), result_cache(), with_logits=show_logits),
)
result = cached.value

st.session_state.setdefault("attn_summary", state.url_choice("summary", attention.SUMMARIES, "sink_share"))
controls = st.columns([1, 1, 1, 3])
layer, head = head_inputs("attn", result.n_layers, result.n_heads, controls[0], controls[1])
controls[2].toggle(
    "Logits", key="attn_logits", help="Show pre-softmax scores (q·k scaled, before the softmax) instead of weights."
)
summary = controls[3].selectbox(
    "Overview colour", attention.SUMMARIES, key="attn_summary", format_func=lambda s: SUMMARY_LABELS[s]
)
state.sync_url(layer=layer, head=head, summary=summary, logits=int(show_logits))

left, right = st.columns([3, 2])
with left:
    kind = "logits" if show_logits else "attention"
    show_figure(
        attention_heatmap(result, layer, head, logits=show_logits),
        "attn_map",
        f"{result.model}-{kind}-L{layer}-H{head}",
    )
with right:
    st.markdown("Click a cell to show that head.")
    show_figure(
        head_summary_grid(result, summary),
        "attn_grid",
        f"{result.model}-{summary}-grid",
        on_select=grid_click("attn"),
        selection_mode="points",
    )

st.markdown(f"**Tokens** ({len(result.tokens)})" + (" · from the result cache" if cached.hit else ""))
st.html(token_chips_html(result.tokens, result.token_ids))
