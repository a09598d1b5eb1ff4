"""Weight spectra: heavy-tailed, power-law eigenvalue distributions (Martin and Mahoney; WeightWatcher's alpha),
and how low the rank of each matrix can go."""

from __future__ import annotations

import streamlit as st

from probes import pruning as compress
from probes import spectra, updates
from probes.structured import parse_ints
from runtime.errors import LmscopeError
from ui import state
from ui.charts import show_figure
from ui.layout import page
from ui.matrix_choice import matrix_input, model_spectra
from ui.models import current_model, loaded_model, result_cache, waited
from views.spectra import esd_with_bulk
from viz.pruning import rank_loss_figure
from viz.spectra import STATISTICS, alpha_by_layer, energy_figure, statistic_grid
from viz.updates import difference_figure

DEFAULT_RANKS = "8, 32, 128"

page(
    "Weight spectra",
    "The eigenvalues of WᵀW of a trained matrix leave the Marchenko-Pastur bulk of a random one and end in a "
    "power-law tail; its exponent alpha says how well trained the layer is (Martin and Mahoney; WeightWatcher). "
    "Most of the energy sits in a few directions: low rank is everywhere.",
)

handle = current_model()
every = model_spectra(handle)
refs = spectra.block_weights(handle)
if "sp_statistic" not in st.session_state:
    st.session_state["sp_statistic"] = state.url_choice("statistic", list(STATISTICS), "alpha")
if "sp_ranks" not in st.session_state:
    st.session_state["sp_ranks"] = st.query_params.get("ranks", DEFAULT_RANKS)[:200]
name = matrix_input(refs, "sp_matrix")

chosen = every.get(name)
show_figure(esd_with_bulk(chosen), "sp_esd", f"{handle.name}-{name}-esd")

st.subheader("Across the model")
show_figure(alpha_by_layer(every), "sp_alpha", f"{handle.name}-alpha-by-layer")
statistic = st.radio("Colour the grid by", list(STATISTICS), key="sp_statistic", horizontal=True)
show_figure(
    statistic_grid(every.matrices, statistic, STATISTICS[statistic], handle.name),
    "sp_grid",
    f"{handle.name}-spectra-{statistic}",
)

st.subheader("Low rank")
show_figure(energy_figure(every), "sp_energy", f"{handle.name}-energy-by-rank")
st.markdown(
    "Replace matrices by their rank-r truncation (the top r singular directions) and measure the loss of your text: "
    "how low can the rank go?"
)
controls = st.columns([2, 3])
ranks_text = controls[0].text_input("Ranks r (commas between)", key="sp_ranks")
kinds = controls[1].multiselect("Matrices to truncate", compress.KINDS, default=list(compress.KINDS), key="sp_kinds")
state.sync_url(matrix=name, statistic=statistic, ranks=ranks_text)
if not handle.is_causal:
    st.info(f"{handle.name} is an encoder: it predicts no next token, so there is no loss to measure.")
elif not kinds:
    st.info("Pick at least one kind of matrix to truncate.")
else:
    try:
        ranks = parse_ints(ranks_text, "ranks")
        sweep = waited(
            "Truncating the matrices and measuring the loss at each rank, ranks",
            lambda progress: compress.rank_sweep(handle, state.text(), ranks, result_cache(), tuple(kinds), progress),
        ).value
        show_figure(rank_loss_figure(sweep), "sp_rank_loss", f"{handle.name}-loss-by-rank")
    except LmscopeError as exc:
        st.error(str(exc))

st.subheader("Fine-tuning as a low-rank update")
st.markdown(
    "LoRA fine-tunes W = W₀ + BA with a small rank. Load a fine-tuned model of the same architecture (a Hugging Face "
    "id or a local folder) to see the spectrum and effective rank of W₁ − W₀ for every matrix."
)
other = st.text_input(
    "Fine-tuned model to compare with this one", key="sp_other", placeholder="for example a local folder"
)
if other.strip():
    tuned = loaded_model(other.strip())
    if tuned is not None:
        try:
            with st.spinner("Comparing every weight matrix..."):
                differences = updates.differences(handle, tuned)
            show_figure(
                difference_figure(differences, handle.name, tuned.name), "sp_difference", f"{handle.name}-difference"
            )
        except LmscopeError as exc:
            st.error(str(exc))
