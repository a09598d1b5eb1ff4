"""Weight distributions: trained weights are dense and close to Gaussian, with heavier tails here and there."""

from __future__ import annotations

import streamlit as st

from probes import spectra
from ui import state
from ui.charts import show_figure
from ui.layout import page
from ui.matrix_choice import matrix_input, model_spectra
from ui.models import current_model, probe_or_stop, result_cache
from views.weights import matrix_figure
from viz.spectra import statistic_grid

LABELS = {
    "kurtosis": "excess kurtosis of the entries (0 for a Gaussian)",
    "beyond_3_std": "share of entries beyond 3 standard deviations (Gaussian: 0.27%)",
    "beyond_6_std": "share of entries beyond 6 standard deviations (Gaussian: 2e-9)",
    "std": "standard deviation of the entries",
}

page(
    "Weight distributions",
    "Trained weights are dense and look Gaussian: a histogram against a fitted Gaussian, its kurtosis and tails, "
    "for one matrix and for every matrix of the model at once. No text needed: this view reads the weights alone.",
)

handle = current_model()
refs = spectra.block_weights(handle)
if "wd_statistic" not in st.session_state:
    st.session_state["wd_statistic"] = state.url_choice("statistic", list(LABELS), "kurtosis")
name = matrix_input(refs, "wd_matrix")

dist = probe_or_stop("Reading the matrix...", lambda: spectra.weight_distribution(handle, name, result_cache())).value
show_figure(matrix_figure(dist, name), "wd_distribution", f"{handle.name}-{name}-weights")
st.caption(
    "The Gaussian is fitted robustly (median, and 1.4826 × the median absolute deviation) so that a few large weights "
    "do not widen it; in the QQ plot a Gaussian lies on the dashed line."
)

st.subheader("Every matrix at once")
statistic = st.radio(
    "Colour by", list(LABELS), key="wd_statistic", horizontal=True, format_func=lambda s: LABELS[s].split(" (")[0]
)
state.sync_url(matrix=name, statistic=statistic)
stats = model_spectra(handle)
show_figure(
    statistic_grid(stats.matrices, statistic, LABELS[statistic], handle.name),
    "wd_grid",
    f"{handle.name}-weights-{statistic}",
)
