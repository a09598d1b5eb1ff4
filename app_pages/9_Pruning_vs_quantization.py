"""Pruning against quantization: the loss of your text and of the corpus against the bytes each weight costs."""

from __future__ import annotations

import streamlit as st

from probes import corpus, dropped_heads
from probes import pruning as compress
from probes.structured import parse_ints
from runtime import limits
from runtime.errors import LmscopeError
from ui import state
from ui.charts import show_figure
from ui.layout import page
from ui.models import current_model, probe_with_progress, result_cache
from viz.dropped_heads import delta_grid, removal_curve
from viz.pruning import tradeoff_figure

DEFAULT_SPARSITIES = "10, 30, 50, 70"
DEFAULT_BITS = "8, 4, 3, 2"
DEFAULT_SENTENCES = 32
MAX_SENTENCES = len(corpus.sentences())

page(
    "Pruning vs quantization",
    "Two ways to make a model smaller, applied to a copy of it: magnitude pruning (unstructured, and 2:4 "
    "semi-structured) and round-to-nearest quantization (per output channel). Pruning has had limited success "
    "(SparseGPT reaches about 50%), quantization works better: see it on the loss per byte.",
)

handle = current_model()
if not handle.is_causal:
    st.info(f"{handle.name} is an encoder: it predicts no next token, so there is no loss to compare. Pick a decoder.")
    st.stop()
for key, name, default in (("pq_sparsities", "sparsities", DEFAULT_SPARSITIES), ("pq_bits", "bits", DEFAULT_BITS)):
    if key not in st.session_state:
        st.session_state[key] = st.query_params.get(name, default)[:200]
state.init_number("pq_sentences", "sentences", DEFAULT_SENTENCES, MAX_SENTENCES + 1, lower=1)
# The dropped-heads section's choices too: its widgets come last, the URL is written before the first computation.
state.init_number("dh_seeds", "seeds", dropped_heads.DEFAULT_SEEDS, limits.HEAD_DROP_SEEDS + 1, lower=1)
if "dh_run" not in st.session_state:
    st.session_state["dh_run"] = st.query_params.get("drop_heads") == "1"
controls = st.columns([2, 2, 1, 3])
sparsity_text = controls[0].text_input(
    "Sparsities (%)", key="pq_sparsities", help="Share of weights set to zero, 0 to 99."
)
bits_text = controls[1].text_input(
    "Bit widths", key="pq_bits", help="Round-to-nearest, one scale per output channel; 2 to 16."
)
n_sentences = controls[2].number_input("Corpus sentences", 1, MAX_SENTENCES, key="pq_sentences")
kinds = controls[3].multiselect("Matrices", compress.KINDS, default=list(compress.KINDS), key="pq_kinds")
state.sync_url(
    sparsities=sparsity_text,
    bits=bits_text,
    sentences=n_sentences,
    seeds=st.session_state["dh_seeds"],
    drop_heads=int(st.session_state["dh_run"]),
)
if not kinds:
    st.info("Pick at least one kind of matrix to compress.")
    st.stop()

try:
    sparsities = [s / 100 for s in parse_ints(sparsity_text, "sparsities")]
    bits = parse_ints(bits_text, "bit widths")
except LmscopeError as exc:
    st.error(str(exc))
    st.stop()
sentences = corpus.sentences()[:n_sentences]
done = probe_with_progress(
    "Compressing and measuring, settings",
    lambda progress: compress.tradeoff(
        handle, state.text(), sentences, sparsities, bits, result_cache(), tuple(kinds), progress
    ),
)
show_figure(tradeoff_figure(done.value), "pq_tradeoff", f"{handle.name}-pruning-vs-quantization")
st.caption(
    "Bytes per weight count what each format stores: fp16 values (2 bytes) for the dense model; b/8 bytes plus one "
    "fp16 scale per row for b-bit quantization; the kept fp16 values plus a 1-bit mask for unstructured pruning; the "
    "kept values plus a 2-bit index each for 2:4. Only the chosen block matrices are compressed and counted."
)

st.subheader("Dropping attention heads")
st.markdown(
    "Structured pruning of a whole head (Michel et al. 2019, *Are Sixteen Heads Really Better than One?*; Voita et "
    "al. 2019): a head is dropped by zeroing its output before the attention's output projection, in this "
    "computation only. First each head alone, then more and more heads together: those whose loss matters least "
    "first, against random orders."
)
heads_controls = st.columns([1, 3], vertical_alignment="bottom")
seeds = heads_controls[0].number_input(
    "Random orders", 1, limits.HEAD_DROP_SEEDS, key="dh_seeds", help="Random orders of removal to compare with."
)
n_heads = handle.n_layers * handle.n_heads
drop = heads_controls[1].toggle(
    f"Drop each of the {n_heads} heads, then groups of them ({dropped_heads.passes(handle, seeds)} passes of your text)",
    key="dh_run",
)
if drop:
    dropped = probe_with_progress(
        "Dropping heads, passes of the text",
        lambda progress: dropped_heads.run(handle, state.text(), result_cache(), seeds, progress),
    ).value
    show_figure(delta_grid(dropped), "dh_grid", f"{handle.name}-dropped-heads")
    show_figure(removal_curve(dropped), "dh_curve", f"{handle.name}-dropping-heads")
    st.caption(
        "A head's importance is the increase of the text's mean per-token loss when it alone is dropped; the curve "
        "drops heads cumulatively in that order (least important first, measured on this same text) or in random "
        "orders. The whole text is scored each time, with the other heads left as they are."
    )
