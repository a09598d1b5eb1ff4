"""Head atlas: every head scored for a type (induction, previous-token, sink, delimiter), click to see it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from probes import attention, heads
from ui.compare import compare_section
from ui.head_choice import grid_click, head_inputs
from ui.models import probe_or_stop, result_cache
from ui.scaffold import Need, Setting, start
from views.heads import SCORES, atlas_figure, score_label, score_values
from viz.attention import attention_heatmap

page = start(__file__, Need.MODEL, Need.TEXT)
handle = page.handle
page.settings(
    Setting("score", "choice", "induction", options=SCORES),
    Setting("n", "int", 50, lower=heads.MIN_SEQ_LEN, upper=heads.MAX_SEQ_LEN, url=False),
    Setting("seed", "int", 0, lower=0, upper=2**31 - 1, url=False),
)
controls = st.columns([3, 1, 1, 1, 1])
score = page.widget(
    "score", controls[0].selectbox, "Colour heads by", format_func=lambda s: score_label(s, handle.is_causal)
)
seq_len = page.widget("n", controls[1].number_input, "Random tokens N")
seed = page.widget("seed", controls[2].number_input, "Seed")
text_result = probe_or_stop(
    "Scoring every head on your text...", lambda: attention.run(handle, page.text, result_cache())
).value
random_result = probe_or_stop(
    "Scoring every head on random tokens repeated twice...",
    lambda: heads.run(handle, result_cache(), int(seq_len), int(seed)),
).value
layer, head = head_inputs(page, text_result.n_layers, text_result.n_heads, controls[3], controls[4])

values = score_values(score, text_result, random_result)
types = heads.head_types(text_result, random_result)

left, right = st.columns([2, 3])
with left:
    st.markdown("Click a cell to open that head. Hover shows its score and type.")
    page.show(
        atlas_figure(score, text_result, random_result, handle.is_causal),
        "grid",
        f"{handle.name}-atlas-{score}",
        on_select=grid_click(page),
        selection_mode="points",
    )
    counts = {t: int((types == t).sum()) for t in heads.TYPES}
    st.markdown(
        "**Head types** (a head takes the type whose score is furthest above its threshold: "
        + ", ".join(f"{name} ≥ {limit}" for name, limit in heads.THRESHOLDS.items())
        + "; induction and previous-token on random tokens, sink and delimiter on your text): "
        + ", ".join(f"{name} {count}" for name, count in counts.items())
    )
with right:
    st.markdown(
        f"**Layer {layer}, head {head}**: type *{types[layer, head]}* · induction "
        f"{random_result.scores['induction'][layer, head]:.2f} · previous-token "
        f"{random_result.previous_token[layer, head]:.2f} · sink {text_result.sink_share[layer, head]:.2f} · "
        f"delimiter {text_result.delimiter_share[layer, head]:.2f}"
    )
    tabs = st.tabs(["On your text", f"On {int(seq_len)} random tokens, repeated"])
    with tabs[0]:
        page.show(attention_heatmap(text_result, layer, head), "text_map", f"{handle.name}-L{layer}-H{head}-text")
    with tabs[1]:
        st.caption(
            "An induction head draws a stripe one step right of the diagonal that runs through the second copy: "
            "each token looks at what followed its earlier occurrence."
        )
        page.show(
            attention_heatmap(random_result, layer, head),
            "random_map",
            f"{handle.name}-L{layer}-H{head}-random",
        )

top = np.argsort(values, axis=None)[::-1][:8]
st.markdown(
    "**Highest-scoring heads:** "
    + ", ".join(f"L{i // values.shape[1]}H{i % values.shape[1]} ({values.flat[i]:.2f})" for i in top)
)

compare_section(page, "heads", text=page.text, options={"seq_len": int(seq_len), "seed": int(seed)})
