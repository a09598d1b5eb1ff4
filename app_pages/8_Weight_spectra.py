"""Weight spectra: heavy-tailed, power-law eigenvalue distributions (Martin and Mahoney; WeightWatcher's alpha),
and how low the rank of each matrix can go."""

from __future__ import annotations

import streamlit as st

from probes import pruning, spectra, updates
from probes.structured import parse_ints
from ui.compare import compare_section
from ui.matrix_choice import matrix_input, model_spectra
from ui.models import loaded_model, result_cache, waited
from ui.scaffold import Need, Setting, start
from views.spectra import esd_with_bulk
from viz.pruning import rank_loss_figure
from viz.spectra import STATISTICS, alpha_by_layer, energy_figure, statistic_grid
from viz.updates import difference_figure

DEFAULT_RANKS = "8, 32, 128"

page = start(__file__, Need.MODEL)
handle = page.handle
# An MoE's experts are slices of 3-D tensors: the matrices below are then its attention's and routers' only.
page.lacks(Need.DENSE_MLP, "listing the MLP matrices (the experts' are left out, the rest is shown)")
every = model_spectra(handle)
refs = spectra.block_weights(handle)
page.settings(
    Setting("statistic", "choice", "alpha", options=list(STATISTICS)),
    Setting("ranks", "str", DEFAULT_RANKS),
    Setting("kinds", "multi", list(pruning.KINDS), options=pruning.KINDS, url=False),
    Setting("other", "str", "", url=False),
)
name = matrix_input(page, refs)

chosen = every.get(name)
page.show(esd_with_bulk(chosen), "esd", f"{handle.name}-{name}-esd")

st.subheader("Across the model")
page.show(alpha_by_layer(every), "alpha", f"{handle.name}-alpha-by-layer")
statistic = page.widget("statistic", st.radio, "Colour the grid by", horizontal=True)
page.show(
    statistic_grid(every.matrices, statistic, STATISTICS[statistic], handle.name),
    "grid",
    f"{handle.name}-spectra-{statistic}",
)
compare_section(
    page,
    "spectra",
    "alpha_by_kind",
    "esd",
    options={"kind": chosen.kind, "depth": chosen.layer / max(handle.n_layers - 1, 1)},
)

st.subheader("Low rank")
page.show(energy_figure(every), "energy", f"{handle.name}-energy-by-rank")
st.markdown(
    "Replace matrices by their rank-r truncation (the top r singular directions) and measure the loss of your text: "
    "how low can the rank go?"
)
controls = st.columns([2, 3])
ranks_text = page.widget("ranks", controls[0].text_input, "Ranks r (commas between)")
kinds = page.widget("kinds", controls[1].multiselect, "Matrices to truncate")
if not kinds:
    st.info("Pick at least one kind of matrix to truncate.")
elif not page.lacks(Need.DECODER):
    with page.errors():
        ranks = parse_ints(ranks_text, "ranks")
        sweep = waited(
            "Truncating the matrices and measuring the loss at each rank, ranks",
            lambda progress: pruning.rank_sweep(handle, page.text, ranks, result_cache(), tuple(kinds), progress),
        ).value
        page.show(rank_loss_figure(sweep), "rank_loss", f"{handle.name}-loss-by-rank")

st.subheader("Fine-tuning as a low-rank update")
st.markdown(
    "LoRA fine-tunes W = W₀ + BA with a small rank. Load a fine-tuned model of the same architecture (a Hugging Face "
    "id or a local folder) to see the spectrum and effective rank of W₁ − W₀ for every matrix."
)
other = page.widget(
    "other", st.text_input, "Fine-tuned model to compare with this one", placeholder="for example a local folder"
)
tuned = loaded_model(other.strip()) if other.strip() else None
if tuned is not None:
    with page.errors():
        with st.spinner("Comparing every weight matrix..."):
            differences = updates.differences(handle, tuned)
        page.show(difference_figure(differences, handle.name, tuned.name), "difference", f"{handle.name}-difference")
