"""Logit lens: each layer's residual stream read out through the final norm and unembedding, position by position."""

from __future__ import annotations

import streamlit as st

from probes import activations, attribution, lens
from ui.models import probe_or_stop, probe_with_progress, result_cache
from ui.scaffold import Need, Setting, start
from views.lens import TARGETS, massive_dims, target_id
from viz.lens import COLOURS, MOST_POSITIONS, attribution_figure, lens_by_layer, lens_grid
from viz.theme import visible

page = start(__file__, Need.DECODER, Need.TEXT)
handle = page.handle
page.settings(Setting("colour", "choice", "top_prob", options=list(COLOURS)), Setting("zero", "bool", False))
controls = st.columns([3, 2, 2])
colour = page.widget("colour", controls[0].selectbox, "Colour", format_func=lambda c: COLOURS[c].capitalize())
zero = page.widget(
    "zero",
    controls[2].toggle,
    "Zero the massive features",
    help="Set the residual features that hold a massive activation on this text (|h| > 100 and > 1000x the layer's "
    "median) to 0 before each readout; the forward pass itself is unchanged.",
)
zeroed: list[int] = []
if zero:
    found = probe_or_stop(
        "Finding the massive activations...", lambda: activations.run(handle, page.text, result_cache())
    ).value
    zeroed = massive_dims(found)
    if not zeroed:
        st.info("No activation of this text is massive at the default thresholds: nothing to zero.")
cached = probe_with_progress(
    "Reading out every layer, positions", lambda progress: lens.run(handle, page.text, result_cache(), zeroed, progress)
)
result = cached.value
n = len(result.tokens)
page.settings(Setting("start", "int", max(0, n - MOST_POSITIONS), lower=0, upper=n - 1))
if n > MOST_POSITIONS:
    start_at = page.widget("start", controls[1].number_input, f"First position shown ({MOST_POSITIONS} at a time)")
else:
    start_at = 0
page.show(lens_grid(result, colour, start_at), "grid", f"{handle.name}-lens-{colour}")
st.caption(
    "Hover a cell for the layer's five most likely next tokens, the probability and rank of the token that really "
    "comes next, the entropy and the KL divergence from the model's own prediction (the top row)."
    + (" · from the result cache" if cached.hit else "")
)
page.show(lens_by_layer(result), "by_layer", f"{handle.name}-lens-by-layer")
st.markdown(
    "Read it from the bottom: the embeddings (layer -1) mostly predict the input token itself; the token that "
    "really comes next becomes likely only in the upper layers. With **Zero massive features**, the features that hold "
    "a massive activation are set to 0 (at every position) before each readout, the last one included: the KL "
    "divergence from the model's own prediction shows how much of each readout they set (see Massive activations)."
)

st.subheader("Direct logit attribution")
st.markdown(
    "What writes a prediction: the logit of one next token at one position, split into what the embeddings, each "
    "attention head and each MLP add to the residual stream, each read through the unembedding with the final norm's "
    "scale frozen (the parts sum to the logit)."
)
page.settings(
    Setting("position", "int", n - 1, lower=0, upper=n - 1),
    Setting("target", "choice", "1", options=list(TARGETS)),
)
picks = st.columns([1, 3])
position = int(page.widget("position", picks[0].number_input, "Position"))


def _target_label(target: str) -> str:
    if target == "next":
        return "the token that comes next" + (
            f": {visible(result.tokens[position + 1])}" if position < n - 1 else " (none at the last position)"
        )
    k = int(target) - 1
    return f"prediction {target}: {visible(str(result.top_tokens[-1, position, k]))} (p {result.top_probs[-1, position, k]:.3f})"


target = page.widget("target", picks[1].selectbox, "Token", format_func=_target_label)
explained = probe_or_stop(
    "Splitting the logit into heads and MLPs...",
    lambda: attribution.run(
        handle, result.token_ids.tolist(), position, target_id(result, position, target), result_cache()
    ),
).value
page.show(attribution_figure(explained), "attribution", f"{handle.name}-attribution-P{position}")
