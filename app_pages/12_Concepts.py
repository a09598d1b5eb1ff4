"""Concepts: a word's vector as a sparse combination of a few atoms of a dictionary learned on the model's word
vectors (Arora et al. 2018, "Linear algebraic structure of word senses")."""

from __future__ import annotations

import streamlit as st

from probes import concepts
from runtime import limits
from runtime.errors import LmscopeError
from ui import state
from ui.charts import show_figure
from ui.layout import page
from ui.models import current_model, probe_with_progress, result_cache, waited
from views.concepts import EMBEDDINGS
from viz.concepts import atom_rows, concept_figure

page(
    "Concepts",
    "Concepts may span a low-dimensional subspace: “apple” = 0.09 “dessert” + 0.11 “organism” + 0.16 “fruit” + "
    "0.22 “mobile&IT” + 0.42 “others”. Learn a dictionary of atoms on the model's word vectors and write any word as "
    "a few of them plus a residual (Arora et al. 2018; today's sparse dictionaries of the residual stream).",
)

handle = current_model()
sources = [EMBEDDINGS, *map(str, range(handle.n_layers))]
if st.session_state.get("cc_source") not in sources:  # first run, or a model with fewer layers
    st.session_state["cc_source"] = state.url_choice("layer", sources, EMBEDDINGS)
if "cc_word" not in st.session_state:
    st.session_state["cc_word"] = st.query_params.get("word", concepts.DEFAULT_WORD)[: limits.WORD_CHARACTERS]
state.init_number("cc_atoms", "atoms", concepts.DEFAULT_ATOMS, limits.WORD_ATOMS + 1, lower=1)

controls = st.columns([2, 1, 2])
word = controls[0].text_input("Word", key="cc_word", max_chars=limits.WORD_CHARACTERS)
n_atoms = controls[1].number_input(
    "Atoms", 1, limits.WORD_ATOMS, key="cc_atoms", help="How many atoms the word's sparse code may use (OMP)."
)
source = controls[2].selectbox(
    "Vectors",
    sources,
    key="cc_source",
    format_func=lambda s: "token embeddings" if s == EMBEDDINGS else f"output of block {s}",
    help="The input embedding matrix, or one block's output (the residual stream) over the bundled corpus.",
)
state.sync_url(word=word, atoms=n_atoms, layer=source)
layer = None if source == EMBEDDINGS else int(source)

cached = probe_with_progress(
    f"Learning {concepts.N_ATOMS} atoms (once per model and layer)"
    + ("" if layer is None else ": a pass over the corpus, then the fit"),
    lambda progress: concepts.dictionary(handle, result_cache(), layer, progress),
)
found = cached.value
st.caption(
    f"{found.n_atoms} atoms learned on {found.source} ({len(found.fit_token_ids):,} sampled, {found.n_heldout:,} "
    f"held out). Coded with {found.n_nonzero} atoms each, held-out vectors keep a mean relative error of "
    f"{found.heldout_error:.2f} ({found.fit_error:.2f} on the fitted ones); fitted in {found.fit_seconds:.0f} s"
    + (" · from the result cache" if cached.hit else "")
)

try:
    decomposed = waited(
        "Decomposing the word...", lambda progress: concepts.decompose(handle, word, found, n_atoms, result_cache())
    ).value
    show_figure(concept_figure(decomposed, found), "cc_equation", f"{handle.name}-concepts-{decomposed.word}")
    st.markdown(
        f"**{decomposed.word}** is {len(decomposed.tokens)} token(s) here: "
        + ", ".join(f"`{t}`" for t in decomposed.tokens)
        + ". A word is read as it appears after a space; "
        + (
            "its vector is the mean of its tokens' input embeddings. "
            if layer is None
            else f"its vector is block {layer}'s output at its last token, read after “{concepts.LEAD_IN}”. "
        )
        + "Vectors are centred (the mean of the fitted vectors subtracted) and scaled to length 1, so the "
        "residual's norm is the reconstruction error |x − Σ aᵢφᵢ| / |x|."
    )
except LmscopeError as exc:
    st.error(str(exc))

st.subheader("The atoms")
st.caption("Each atom is named by the distinct tokens with the largest coefficients on it among the fitted vectors.")
st.dataframe(atom_rows(found), hide_index=True, height=400)
