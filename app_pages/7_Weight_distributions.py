"""Weight distributions: trained weights are dense and close to Gaussian, with heavier tails here and there."""

from __future__ import annotations

import streamlit as st

from probes import spectra
from ui.compare import compare_section
from ui.matrix_choice import matrix_input, model_spectra
from ui.models import probe_or_stop, result_cache
from ui.scaffold import Need, Setting, start
from views.weights import matrix_figure
from viz.spectra import statistic_grid

LABELS = {
    "kurtosis": "excess kurtosis of the entries (0 for a Gaussian)",
    "beyond_3_std": "share of entries beyond 3 standard deviations (Gaussian: 0.27%)",
    "beyond_6_std": "share of entries beyond 6 standard deviations (Gaussian: 2e-9)",
    "std": "standard deviation of the entries",
}

page = start(__file__, Need.MODEL)
handle = page.handle
refs = spectra.block_weights(handle)
page.settings(Setting("statistic", "choice", "kurtosis", options=list(LABELS)))
name = matrix_input(page, refs)

dist = probe_or_stop("Reading the matrix...", lambda: spectra.weight_distribution(handle, name, result_cache())).value
page.show(matrix_figure(dist, name), "distribution", f"{handle.name}-{name}-weights")
st.caption(
    "The Gaussian is fitted robustly (median, and 1.4826 × the median absolute deviation) so that a few large weights "
    "do not widen it; in the QQ plot a Gaussian lies on the dashed line."
)

st.subheader("Every matrix at once")
statistic = page.widget(
    "statistic", st.radio, "Colour by", horizontal=True, format_func=lambda s: LABELS[s].split(" (")[0]
)
stats = model_spectra(handle)
page.show(
    statistic_grid(stats.matrices, statistic, LABELS[statistic], handle.name),
    "grid",
    f"{handle.name}-weights-{statistic}",
)
compare_section(page, "weights", "tails")
