"""Attention: one head's map and a layer x head overview of sink, previous-token and entropy summaries."""

from __future__ import annotations

import streamlit as st

from probes import attention
from ui.compare import compare_section
from ui.head_choice import grid_click, head_inputs
from ui.models import probe_or_stop, result_cache
from ui.scaffold import Need, Setting, start
from viz.attention import SUMMARY_LABELS, attention_heatmap, head_summary_grid
from viz.tokens import token_chips_html

page = start(__file__, Need.MODEL, Need.TEXT)
handle = page.handle
page.settings(Setting("logits", "bool", False), Setting("summary", "choice", "sink_share", options=attention.SUMMARIES))
show_logits = page.value("logits")
cached = probe_or_stop(
    "Running the model and summarising every head...",
    lambda: attention.run(handle, page.text, result_cache(), with_logits=show_logits),
)
result = cached.value

controls = st.columns([1, 1, 1, 3])
layer, head = head_inputs(page, result.n_layers, result.n_heads, controls[0], controls[1])
page.widget(
    "logits",
    controls[2].toggle,
    "Logits",
    help="Show pre-softmax scores (q·k scaled, before the softmax) instead of weights.",
)
summary = page.widget("summary", controls[3].selectbox, "Overview colour", format_func=lambda s: SUMMARY_LABELS[s])

left, right = st.columns([3, 2])
with left:
    kind = "logits" if show_logits else "attention"
    page.show(
        attention_heatmap(result, layer, head, logits=show_logits),
        "map",
        f"{result.model}-{kind}-L{layer}-H{head}",
    )
with right:
    st.markdown("Click a cell to show that head.")
    page.show(
        head_summary_grid(result, summary),
        "grid",
        f"{result.model}-{summary}-grid",
        on_select=grid_click(page),
        selection_mode="points",
    )

st.markdown(f"**Tokens** ({len(result.tokens)})" + (" · from the result cache" if cached.hit else ""))
st.html(token_chips_html(result.tokens, result.token_ids))

compare_section(
    page,
    "attention",
    "head_grid",
    text=page.text,
    options={
        "depth": layer / max(result.n_layers - 1, 1),
        "head": head,
        "logits": show_logits,
        "summary": summary,
    },
)
