"""Logit lens: each layer's residual stream read out through the final norm and unembedding, position by position."""

from __future__ import annotations

import streamlit as st

from probes import activations, lens
from ui.models import probe_or_stop, probe_with_progress, result_cache
from ui.scaffold import Need, Setting, start
from views.lens import massive_dims
from viz.lens import COLOURS, MOST_POSITIONS, lens_by_layer, lens_grid

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
