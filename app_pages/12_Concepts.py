"""Concepts: a word's vector as a sparse combination of a few atoms of a dictionary learned on the model's word
vectors (Arora et al. 2018, "Linear algebraic structure of word senses")."""

from __future__ import annotations

import streamlit as st

from probes import concepts
from runtime import limits
from ui.markdown import code, literal
from ui.models import probe_with_progress, result_cache, waited
from ui.scaffold import Need, Setting, start
from views.concepts import EMBEDDINGS
from viz.concepts import atom_rows, concept_figure

page = start(__file__, Need.MODEL)
handle = page.handle
page.settings(
    Setting("word", "str", concepts.DEFAULT_WORD, length=limits.WORD_CHARACTERS),
    Setting("atoms", "int", concepts.DEFAULT_ATOMS, lower=1, upper=limits.WORD_ATOMS),
    Setting("layer", "choice", EMBEDDINGS, options=[EMBEDDINGS, *map(str, range(handle.n_layers))]),
)

controls = st.columns([2, 1, 2])
word = page.widget("word", controls[0].text_input, "Word")
n_atoms = page.widget(
    "atoms", controls[1].number_input, "Atoms", help="How many atoms the word's sparse code may use (OMP)."
)
source = page.widget(
    "layer",
    controls[2].selectbox,
    "Vectors",
    format_func=lambda s: "token embeddings" if s == EMBEDDINGS else f"output of block {s}",
    help="The input embedding matrix, or one block's output (the residual stream) over the bundled corpus.",
)
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

with page.errors():
    decomposed = waited(
        "Decomposing the word...", lambda progress: concepts.decompose(handle, word, found, n_atoms, result_cache())
    ).value
    page.show(concept_figure(decomposed, found), "equation", f"{handle.name}-concepts-{decomposed.word}")
    st.markdown(
        f"**{literal(decomposed.word)}** is {len(decomposed.tokens)} token(s) here: "
        + ", ".join(code(t) for t in decomposed.tokens)
        + ". A word is read as it appears after a space; "
        + (
            "its vector is the mean of its tokens' input embeddings. "
            if layer is None
            else f"its vector is block {layer}'s output at its last token, read after “{concepts.LEAD_IN}”. "
        )
        + "Vectors are centred (the mean of the fitted vectors subtracted) and scaled to length 1, so the "
        "residual's norm is the reconstruction error |x − Σ aᵢφᵢ| / |x|."
    )

st.subheader("The atoms")
st.caption("Each atom is named by the distinct tokens with the largest coefficients on it among the fitted vectors.")
st.dataframe(atom_rows(found), hide_index=True, height=400)
