"""Massive activations: a few residual-stream values thousands of times the median, found automatically."""

from __future__ import annotations

import numpy as np
import streamlit as st

from probes import ablation, activations, corpus
from results.activations import KINDS, Thresholds
from runtime import limits
from runtime.settings import settings
from ui.compare import compare_section
from ui.models import probe_or_stop, probe_with_progress, result_cache
from ui.scaffold import Need, Setting, start
from viz.activations import (
    ablation_chart,
    corpus_massive_kinds,
    corpus_massive_layers,
    magnitude_heatmap,
    magnitude_lines,
    magnitude_surface,
    massive_rows,
)

LAYER_VIEWS = ("surface", "heatmap")

page = start(__file__, Need.MODEL, Need.TEXT)
handle = page.handle
result = probe_or_stop(
    "Running the model and measuring every block's output...",
    lambda: activations.run(handle, page.text, result_cache()),
).value
page.settings(
    Setting("layer", "int", int(np.argmax(result.max_abs)), lower=0, upper=result.n_layers - 1),
    Setting("min", "float", Thresholds.min_magnitude, lower=0.0, upper=limits.THRESHOLD),
    Setting("ratio", "float", Thresholds.min_ratio, lower=0.0, upper=limits.THRESHOLD),
    Setting("view", "choice", LAYER_VIEWS[0], options=LAYER_VIEWS),
    Setting("sentences", "int", len(corpus.sentences()), lower=1, upper=len(corpus.sentences())),
    Setting("everywhere", "bool", False),
)

controls = st.columns([1, 1, 1, 2])
layer = page.widget("layer", controls[0].number_input, "Layer (output of block)")
min_magnitude = page.widget(
    "min", controls[1].number_input, "Massive: |h| above", step=10.0, help="Sun et al.: larger than 100."
)
min_ratio = page.widget(
    "ratio",
    controls[2].number_input,
    "… and above × median",
    step=100.0,
    help="Sun et al.: about 1,000 times the median magnitude of its layer.",
)
view = page.widget("view", controls[3].radio, "Show the layer as", horizontal=True)
thresholds = Thresholds(min_magnitude, min_ratio)

st.subheader(f"Layer {layer}: |h| over tokens and features")
layer_values = probe_or_stop(
    f"Reading the output of block {layer}...",
    lambda: activations.layer_run(handle, page.text, layer, result_cache()),
).value
figure = magnitude_surface(layer_values) if view == "surface" else magnitude_heatmap(layer_values)
page.show(figure, "layer_figure", f"{result.model}-magnitudes-L{layer}-{view}")
if len(layer_values.tokens) < len(result.tokens):
    st.caption(
        f"The first {len(layer_values.tokens):,} of the text's {len(result.tokens):,} tokens (LMSCOPE_MAX_TOKENS); "
        "the charts below and the table read all of them."
    )

st.subheader("Across layers")
page.show(magnitude_lines(result), "lines", f"{result.model}-magnitudes-by-layer")
compared = compare_section(page, "massive", text=page.text).get("massive", [])

st.subheader("The massive activations of your text")
st.markdown(
    f"**Massive** here means |h| above **{min_magnitude:g}** and above **{min_ratio:g}×** the median |h| of its layer "
    f"(Sun et al.'s definition is 100 and about 1,000×). The {activations.TOP} largest entries of each layer are "
    "checked. Kinds of token: the first token, the first delimiter after it (punctuation, newline or a special "
    "token), later delimiters, and other tokens."
)
found = activations.massive(result, thresholds)
if found:
    layers = sorted({m.layer for m in found})
    st.caption(
        f"{len(found)} entries in {len(layers)} layers ({layers[0]} to {layers[-1]}), in features "
        f"{', '.join(map(str, sorted({m.dim for m in found})))}."
    )
    st.dataframe(massive_rows(found), hide_index=True, height=min(420, 35 * (len(found) + 1) + 3))
else:
    peak = int(np.argmax(result.max_abs))
    st.info(
        f"No activation of this text passes both thresholds. The largest is {result.max_abs[peak]:,.1f} at layer {peak}, "
        f"{result.max_abs[peak] / result.median_abs[peak]:,.0f}× that layer's median."
    )

if compared:
    column = "text" if page.value("compare_by") == "texts" else "model"
    rows = [
        {column: name, **row}
        for name, other in compared
        for row in massive_rows(activations.massive(other, thresholds))
    ]
    st.markdown(f"**Every compared {column}** at the same thresholds: {len(rows)} entries.")
    st.dataframe(rows, hide_index=True, height=min(420, 35 * (len(rows) + 1) + 3), key=page.key("compare_table"))

st.subheader("Consistency over the bundled corpus")
st.markdown(
    "The same search on each sentence of the bundled corpus: which features are massive, in what share of "
    "sentences, and on which kind of token. Ablation below also takes its means from these sentences."
)
n_sentences = page.widget("sentences", st.number_input, "Corpus sentences")
chosen = corpus.sentences()[:n_sentences]
sentences = probe_with_progress(
    "Running the corpus, sentences", lambda progress: activations.corpus_run(handle, chosen, result_cache(), progress)
)
counts = activations.massive_counts(sentences.value, thresholds)
if counts.any():
    page.show(
        corpus_massive_layers(counts, sentences.value.n_sentences, result.model),
        "corpus",
        f"{result.model}-massive-corpus",
    )
    if counts[layer].any():
        figure = corpus_massive_kinds(counts, sentences.value.n_sentences, layer, KINDS, result.model)
        page.show(figure, "corpus_kinds", f"{result.model}-massive-corpus-kinds-L{layer}")
    else:
        st.info(
            f"No feature is massive at layer {layer} in any corpus sentence; pick another layer to see on which tokens."
        )
else:
    st.info("No feature passes the thresholds in any corpus sentence.")

st.subheader("Ablation: do these few values matter?")
page.require(Need.DECODER)
if len(result.tokens) > settings().max_tokens:
    st.info(
        f"Ablation reads at most {settings().max_tokens:,} tokens (LMSCOPE_MAX_TOKENS), and this text has "
        f"{len(result.tokens):,}: each edit costs several passes over the whole text. Use a shorter text to remove them."
    )
    st.stop()
if not found:
    st.info("This text has no massive activations at these thresholds, so there is nothing to remove.")
    st.stop()
st.markdown(
    "Each massive entry is edited in the block output where it first appears (Sun et al.), or at every layer where it "
    "is massive: some models rebuild a massive feature in later layers. Every later block sees the edit. Setting "
    "them to zero is compared with setting them to their mean over the corpus sentences above (same layer, feature "
    "and kind of token) and with zeroing as many randomly chosen entries at the same layers."
)
everywhere = page.widget("everywhere", st.toggle, "Edit at every layer where it is massive")
done = probe_or_stop(
    "Measuring the loss with and without the massive activations...",
    lambda: ablation.run(handle, page.text, thresholds, result_cache(), chosen, everywhere),
).value
page.show(ablation_chart(done), "ablation", f"{result.model}-massive-ablation")
base, zeroed, mean = (float(n.mean()) for n in (done.nll_base, done.nll_zeroed, done.nll_mean))
st.caption(
    f"Mean NLL per token: unchanged {base:.3f} nats, massive zeroed {zeroed:.3f}, massive set to their mean {mean:.3f}, "
    f"random zeroed {float(done.nll_random.mean()):.3f} (mean of {len(done.nll_random)} draws)."
    + (
        f" {done.n_without_mean} entries were never massive at the same place in the corpus and kept their value under 'mean'."
        if done.n_without_mean
        else ""
    )
)
