"""Pruning against quantization: the loss of your text and of the corpus against the bytes each weight costs."""

from __future__ import annotations

import streamlit as st

from probes import calibrated, corpus, dropped_heads, pruning, sparse_cost
from probes.structured import parse_ints
from results.pruning import MAX_GROUP, METHOD_NAMES, PATTERNS, PRUNERS, QUANTIZERS
from runtime import limits
from ui.compare import compare_section
from ui.models import probe_with_progress, result_cache
from ui.scaffold import Need, Setting, start
from viz.dropped_heads import delta_grid, removal_curve
from viz.pruning import robustness_figure, tradeoff_figure
from viz.sparse_cost import sparse_cost_figure

# The lecture's claims at their own settings (50%, 4 bits), every method once: about 90 s on 2 cores, cold.
DEFAULT_SPARSITIES = "50"
DEFAULT_BITS = "4"
DEFAULT_METHODS = ["prune", "wanda", "sparsegpt", "quantize", "gptq"]
DEFAULT_SENTENCES = 32
# Held-out sentences come from the corpus's start, calibration text from its end: this many are kept for calibration.
MAX_SENTENCES = len(corpus.sentences()) // 2

page = start(__file__, Need.DECODER, Need.DENSE_MLP, Need.TEXT)
handle = page.handle
# The dropped-heads section's choices too: its widgets come last, the URL is written before the first computation.
page.settings(
    Setting("methods", "multi", DEFAULT_METHODS, options=[*PRUNERS, *QUANTIZERS]),
    Setting("sparsities", "str", DEFAULT_SPARSITIES),
    Setting("patterns", "multi", [], options=list(PATTERNS)),
    Setting("bits", "str", DEFAULT_BITS),
    Setting("group", "int", 0, lower=0, upper=MAX_GROUP),
    Setting("sentences", "int", DEFAULT_SENTENCES, lower=1, upper=MAX_SENTENCES),
    Setting("calibration", "int", calibrated.DEFAULT_SEQUENCES, lower=1, upper=limits.CALIBRATION_SEQUENCES),
    Setting("length", "int", calibrated.DEFAULT_LENGTH, lower=8, upper=limits.CALIBRATION_LENGTH),
    Setting("kinds", "multi", list(pruning.KINDS), options=pruning.KINDS, url=False),
    Setting("cost_layer", "int", handle.n_layers // 2, lower=0, upper=handle.n_layers - 1),
    Setting("cost", "bool", False),
    Setting("seeds", "int", dropped_heads.DEFAULT_SEEDS, lower=1, upper=limits.HEAD_DROP_SEEDS),
    Setting("drop_heads", "bool", False),
)
methods = page.widget(
    "methods",
    st.multiselect,
    "Methods",
    format_func=METHOD_NAMES.get,
    help="Magnitude pruning and round-to-nearest read the weights alone; Wanda, SparseGPT and GPTQ read each "
    "layer's inputs on calibration text (corpus sentences that are never held out).",
)
pruning_controls = st.columns([2, 2, 2, 1])
sparsity_text = page.widget(
    "sparsities", pruning_controls[0].text_input, "Sparsities (%)", help="Share of weights set to zero, 0 to 99."
)
patterns = page.widget(
    "patterns", pruning_controls[1].multiselect, "N:M patterns", help="n kept of every m consecutive weights of a row."
)
bits_text = page.widget("bits", pruning_controls[2].text_input, "Bit widths", help="2 to 16 bits per weight.")
group = page.widget(
    "group", pruning_controls[3].number_input, "Group", help="Inputs sharing a quantization scale; 0: one per row."
)
data_controls = st.columns([1, 1, 1, 3])
n_sentences = page.widget("sentences", data_controls[0].number_input, "Held-out sentences")
sequences = page.widget(
    "calibration", data_controls[1].number_input, "Calibration sequences", help="Read by Wanda, SparseGPT and GPTQ."
)
length = page.widget("length", data_controls[2].number_input, "Tokens each")
kinds = page.widget("kinds", data_controls[3].multiselect, "Matrices")
if not kinds or not methods:
    st.info("Pick at least one method and one kind of matrix to compress.")
    st.stop()

sparsities = page.or_stop(lambda: [s / 100 for s in parse_ints(sparsity_text, "sparsities")])
bits = page.or_stop(lambda: parse_ints(bits_text, "bit widths"))
pruned = bool(set(methods) & set(PRUNERS)) and bool(sparsities or patterns)
if not pruned and not (set(methods) & set(QUANTIZERS) and bits):
    st.info(
        "Nothing to compress: give the pruning methods a sparsity or an N:M pattern, or the quantizers a bit width."
    )
    st.stop()
sentences = corpus.sentences()[:n_sentences]
done = probe_with_progress(
    "Compressing and measuring, steps",
    lambda progress: pruning.tradeoff(
        handle,
        page.text,
        sentences,
        sparsities,
        bits,
        result_cache(),
        tuple(kinds),
        progress,
        methods=methods,
        patterns=patterns,
        group=group,
        calibration=(sequences, length),
    ),
)
page.show(tradeoff_figure(done.value), "tradeoff", f"{handle.name}-pruning-vs-quantization")
st.caption(
    "Bytes per weight count what each format stores: fp16 values (2 bytes) for the dense model; b/8 bytes plus one "
    "fp16 scale per row (or per group) for b-bit quantization; the kept fp16 values plus a 1-bit mask for "
    "unstructured pruning; the kept values plus a log2(m)-bit index each for N:M. Only the chosen block matrices are "
    "compressed and counted. The held-out sentences are never calibration text. Wanda (Sun et al. 2023) scores "
    "|w|·‖x‖ per output row; SparseGPT (Frantar and Alistarh 2023) and GPTQ (Frantar et al. 2022) re-fit the "
    "remaining weights of each row to keep the layer's outputs on the calibration inputs, block after block. "
    "Short texts are noisy: on SmolLM2, 4-bit GPTQ beats round-to-nearest on long text (32 corpus sentences as one "
    "text: NLL 4.14 against 4.42) but ties with it on short sentences scored one by one."
)

page.show(robustness_figure(done.value), "robustness", f"{handle.name}-pruning-robustness")
st.caption(
    "The same compressed copies on short texts unlike the corpus (written for lmscope): pruned and quantized "
    "models are tuned, or calibrated, on one kind of text; whatever they dropped may have served another."
)

compare_section(
    page,
    "pruning",
    text=page.text,
    options={
        "sentences": n_sentences,
        "sparsities": sparsities,
        "bits": bits,
        "kinds": tuple(kinds),
        "methods": methods,
        "patterns": patterns,
        "group": group,
        "calibration": (sequences, length),
    },
)

st.subheader("What sparsity costs on this server")
st.markdown(
    "Zeros save memory only when a sparse format skips them, and time only when the hardware multiplies sparse "
    "matrices faster than dense ones. One block's products (every matrix above, at this model's shapes, times a "
    "batch of token vectors), timed dense and as CSR sparse matrices on the machine that serves this page; 2:4 "
    "semi-structured sparsity runs only on a GPU with sparse tensor cores."
)
cost_controls = st.columns([1, 3], vertical_alignment="bottom")
cost_layer = page.widget("cost_layer", cost_controls[0].number_input, "Layer")
timed = page.widget("cost", cost_controls[1].toggle, "Time the products (a few seconds; once per machine and setting)")
if timed:
    cost = probe_with_progress(
        "Timing products, measurements",
        lambda progress: sparse_cost.measure(handle, cost_layer, result_cache(), on_progress=progress),
    ).value
    page.show(sparse_cost_figure(cost), "cost_chart", f"{handle.name}-sparse-cost")
    st.caption(
        f"Measured on {cost.host}, {cost.device}, {cost.threads} threads, at {cost.measured_at} (UTC); the median "
        "of repeated products (torch.utils.benchmark). Weights pruned by magnitude; CSR stores each kept value "
        "with a 64-bit column index, so it saves memory only beyond about two thirds zeros."
    )

st.subheader("Dropping attention heads")
st.markdown(
    "Structured pruning of a whole head (Michel et al. 2019, *Are Sixteen Heads Really Better than One?*; Voita et "
    "al. 2019): a head is dropped by zeroing its output before the attention's output projection, in this "
    "computation only. First each head alone, then more and more heads together: those whose loss matters least "
    "first, against random orders."
)
heads_controls = st.columns([1, 3], vertical_alignment="bottom")
seeds = page.widget(
    "seeds", heads_controls[0].number_input, "Random orders", help="Random orders of removal to compare with."
)
n_heads = handle.n_layers * handle.n_heads
drop = page.widget(
    "drop_heads",
    heads_controls[1].toggle,
    f"Drop each of the {n_heads} heads, then groups of them ({dropped_heads.passes(handle, seeds)} passes of your text)",
)
if drop:
    dropped = probe_with_progress(
        "Dropping heads, passes of the text",
        lambda progress: dropped_heads.run(handle, page.text, result_cache(), seeds, progress),
    ).value
    page.show(delta_grid(dropped), "heads_grid", f"{handle.name}-dropped-heads")
    page.show(removal_curve(dropped), "heads_curve", f"{handle.name}-dropping-heads")
    st.caption(
        "A head's importance is the increase of the text's mean per-token loss when it alone is dropped; the curve "
        "drops heads cumulatively in that order (least important first, measured on this same text) or in random "
        "orders. The whole text is scored each time, with the other heads left as they are."
    )
