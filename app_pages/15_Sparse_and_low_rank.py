"""Sparse and low-rank: the lecture's opening slide, an image and a data matrix against a weight matrix."""

from __future__ import annotations

import streamlit as st

from probes import sparse_low_rank
from results.pruning import KINDS
from ui.models import probe_or_stop, result_cache
from ui.scaffold import Need, Setting, start
from views.sparse_low_rank import DEFAULT_KEEP, DEFAULT_KIND
from viz.sparse_low_rank import error_curves, reconstruction_grid

page = start(__file__, Need.MODEL)
handle = page.handle
page.settings(
    Setting("layer", "int", handle.n_layers // 2, lower=0, upper=handle.n_layers - 1),
    Setting("matrix", "choice", DEFAULT_KIND, options=list(KINDS)),
    Setting("keep", "float", float(DEFAULT_KEEP), lower=0.1, upper=100.0),
    Setting("rank", "float", float(DEFAULT_KEEP), lower=0.1, upper=100.0),
)
st.markdown(
    "Signal processing's two structures: an image is nearly **sparse** in a Fourier-type basis (a few large DCT "
    "coefficients hold it, as in JPEG) and a data matrix nearly **low-rank** (a few directions explain most of it). "
    "Is a trained weight matrix either? Each matrix is centred (its mean removed), then kept to its largest DCT "
    "coefficients or to its top singular directions; the error is ‖X − X̂‖ / ‖X − mean‖. A Gaussian matrix of the "
    "weight's shape is the reference for *neither*."
)
controls = st.columns(4)
layer = page.widget("layer", controls[0].number_input, "Layer")
kind = page.widget("matrix", controls[1].selectbox, "Matrix")
result = probe_or_stop(
    "Transforming and decomposing the four matrices...",
    lambda: sparse_low_rank.run(handle, int(layer), kind, result_cache()),
).value
page.show(error_curves(result), "curves", f"{handle.name}-L{layer}-{kind}-sparse-low-rank")

st.subheader("Rebuilt from a few")
keep = page.widget("keep", controls[2].number_input, "DCT coefficients kept (%)", step=1.0)
rank = page.widget("rank", controls[3].number_input, "Rank kept (% of the smaller side)", step=1.0)
with page.errors():
    page.show(
        reconstruction_grid(sparse_low_rank.reconstructions(result, keep / 100, rank / 100)),
        "images",
        f"{handle.name}-L{layer}-{kind}-rebuilt",
    )
st.caption(
    "Trained weights do have a heavy-tailed spectrum (Weight spectra), which is why the weight's rank curve sits a "
    "little below the Gaussian's; but nothing like the image's. Low-rank structure in LLMs lives in the updates "
    "(LoRA) more than in the weights."
)
