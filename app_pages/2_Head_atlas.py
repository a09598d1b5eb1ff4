"""Head atlas: every head scored for each type the lecture names and how mixed it is; click a head to see it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from probes import attention, heads
from runtime import limits
from ui.compare import compare_section
from ui.head_choice import grid_click, head_inputs
from ui.models import probe_or_stop, result_cache
from ui.scaffold import Need, Setting, start
from views.heads import SCORES, atlas_figure, score_label, score_values
from viz.attention import attention_heatmap
from viz.heads import offset_profile, type_counts

page = start(__file__, Need.MODEL, Need.TEXT)
handle = page.handle
page.settings(
    Setting("score", "choice", "induction", options=SCORES),
    Setting("n", "int", 50, lower=heads.MIN_SEQ_LEN, upper=heads.MAX_SEQ_LEN, url=False),
    Setting("seed", "int", 0, lower=0, upper=limits.SEED, url=False),
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
reversed_result = probe_or_stop(
    "Scoring every head on random tokens, then reversed...",
    lambda: heads.run(handle, result_cache(), int(seq_len), int(seed), reverse=True),
).value
layer, head = head_inputs(page, text_result.n_layers, text_result.n_heads, controls[3], controls[4])

kinds = heads.classify(text_result, random_result, reversed_result)
values = score_values(score, text_result, kinds)
labels = kinds.labels

left, right = st.columns([2, 3])
with left:
    st.markdown("Click a cell to open that head. Hover shows its score and type.")
    page.show(
        atlas_figure(score, text_result, kinds, handle.is_causal),
        "grid",
        f"{handle.name}-atlas-{score}",
        on_select=grid_click(page),
        selection_mode="points",
    )
    st.markdown(
        "**Head types**: a head passes a type when its score reaches the threshold ("
        + ", ".join(f"{name} ≥ {limit}" for name, limit in heads.THRESHOLDS.items())
        + "); induction, duplicate token and offsets on random tokens repeated, reverse induction on random tokens "
        "then reversed, sink and delimiter on your text. Hover a cell for every type its head passes."
    )
with right:
    scores = kinds.scores[:, layer, head]
    scored = " · ".join(f"{kind} {v:.2f}" for kind, v in zip(kinds.types, scores, strict=True) if not np.isnan(v))
    st.markdown(f"**Layer {layer}, head {head}**: *{labels[layer, head]}* · {scored}")
    tabs = st.tabs(
        [
            "On your text",
            f"On {int(seq_len)} random tokens, repeated",
            "Random tokens, then reversed",
            "Attention by offset",
        ]
    )
    with tabs[0]:
        page.show(attention_heatmap(text_result, layer, head), "text_map", f"{handle.name}-L{layer}-H{head}-text")
    on_random = {
        "random": (
            random_result,
            "An induction head draws a stripe one step right of the diagonal that runs through the second copy: "
            "each token looks at what followed its earlier occurrence.",
        ),
        "reversed": (
            reversed_result,
            "A reverse-induction head would look at the token before the earlier occurrence: what comes next when "
            "the sequence runs backwards. An induction head keeps looking at the token after it, now the wrong one.",
        ),
    }
    for tab, (name, (shown, caption)) in zip(tabs[1:3], on_random.items(), strict=True):
        with tab:
            st.caption(caption)
            page.show(attention_heatmap(shown, layer, head), f"{name}_map", f"{handle.name}-L{layer}-H{head}-{name}")
    with tabs[3]:
        page.show(offset_profile(kinds, layer, head), "offsets", f"{handle.name}-L{layer}-H{head}-offsets")

top = np.argsort(np.nan_to_num(values, nan=-np.inf), axis=None)[::-1][:8]
st.markdown(
    "**Highest-scoring heads:** "
    + ", ".join(f"L{i // values.shape[1]}H{i % values.shape[1]} ({values.flat[i]:.2f})" for i in top)
)

st.subheader("Mixed heads")
st.markdown(
    "The lecture's caveat: many heads have mixed functions. Each head counts once under every type it passes; "
    "colour the atlas by *types passed* or *type entropy* to see where the mixed ones sit."
)
page.show(type_counts(kinds), "types", f"{handle.name}-head-types")

compare_section(page, "heads", text=page.text, options={"seq_len": int(seq_len), "seed": int(seed)})
