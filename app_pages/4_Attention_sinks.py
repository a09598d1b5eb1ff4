"""Attention sinks: how much attention lands on the first token, on your text and averaged over many sentences."""

from __future__ import annotations

import streamlit as st

from probes import attention, corpus, sinks
from results.attention import AttentionResult
from runtime import limits
from runtime.errors import LmscopeError
from ui import state
from ui.charts import show_figure
from ui.layout import page
from ui.models import current_model, probe_or_stop, probe_with_progress, result_cache, waited
from views.sinks import share_figure
from viz.sinks import corpus_maps, massive_link_chart, sink_head_grid, sink_table_rows

MAX_TOKENS_PER_SENTENCE = 64

page(
    "Attention sinks",
    "Beyond the first layers, most heads put most of their weight on the first token: softmax must put its mass "
    "somewhere, and the first token, seen by every query, soaks it up (StreamingLLM, Xiao et al. 2023).",
)

handle = current_model()
cached = probe_or_stop(
    "Running the model and summarising every head...",
    lambda: attention.run(handle, state.text(), result_cache()),
)
result = cached.value
profile = sinks.sink_profile(result)


def _url_k(result: AttentionResult) -> int:
    """The first-k choice from the URL, checked against what this text allows."""
    default = sinks.default_k(result)
    value, problem = state.url_number("k", default, sinks.first_k_range(result)[1] + 1)
    if problem is None:
        try:
            sinks.check_k(result, value)
        except LmscopeError as exc:
            value, problem = default, f"The link's k: {exc} Showing k = {default}."
    if problem:
        st.warning(problem)
    return value


def _url_layers(n_layers: int) -> list[int]:
    """The layers to show from the URL (comma-separated), or the defaults with a warning if any is not a layer."""
    raw = st.query_params.get("layers")
    if raw is None:
        return sinks.default_layers(n_layers)
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if all(p.isdigit() and int(p) < n_layers for p in parts):
        return sorted({int(p) for p in parts})
    st.warning(
        f"The link's layers={raw!r} are not all layers of this model (0 to {n_layers - 1}); showing the defaults."
    )
    return sinks.default_layers(n_layers)


low, high, step = sinks.first_k_range(result)
if "sink_k" not in st.session_state:
    st.session_state["sink_k"] = _url_k(result)
elif not low <= st.session_state["sink_k"] <= high or st.session_state["sink_k"] % step:  # the text changed
    st.session_state["sink_k"] = sinks.default_k(result)
if "sink_layers" not in st.session_state:
    st.session_state["sink_layers"] = _url_layers(result.n_layers)
else:  # the model changed under a kept choice
    st.session_state["sink_layers"] = [i for i in st.session_state["sink_layers"] if i < result.n_layers]
state.init_number("sink_sentences", "sentences", sinks.DEFAULT_SENTENCES, limits.CORPUS_SENTENCES + 1, lower=1)
state.init_number("sink_tokens", "tokens", sinks.DEFAULT_TOKENS, MAX_TOKENS_PER_SENTENCE + 1, lower=2)
if "sink_logits" not in st.session_state:
    st.session_state["sink_logits"] = st.query_params.get("logits", "1") != "0"

st.subheader("On your text")
if high > low:
    k = st.slider(
        "First k tokens",
        low,
        high,
        step=step,
        key="sink_k",
        help="The dashed line shows how much attention lands on tokens 0 to k-1. StreamingLLM keeps 4 such tokens.",
    )
else:
    k = low
    st.caption(f"k = {k}: the only choice for a text this short.")
show_figure(share_figure(result, k), "sink_lines", f"{result.model}-sink-share")
left, right = st.columns(2)
with left:
    show_figure(sink_head_grid(profile), "sink_grid", f"{result.model}-sink-share-heads")
with right:
    st.markdown(
        "**The sink of each layer**: the position receiving the most attention, averaged over the tokens after it "
        "(those that can see it). Where a layer has no sink, this is often a punctuation mark or a neighbour."
        + (f" The text is long, so positions are pooled {result.pool} tokens per cell." if result.pool > 1 else "")
    )
    st.dataframe(sink_table_rows(profile), hide_index=True, height=min(720, 35 * (result.n_layers + 1) + 3))

st.subheader("Sinks and massive activations")
st.markdown(
    "The lecture's other outlier: a few hidden-state values hundreds or thousands of times larger than the rest "
    "(massive activations, Sun et al. 2024), at the starting token and the first period or newline. Is the token "
    "that soaks up attention the same one?"
)
try:
    link = waited(
        "Running the model for its hidden states...",
        lambda progress: sinks.massive_link(handle, result, result_cache()),
    ).value
    show_figure(massive_link_chart(link), "sink_massive", f"{result.model}-sink-massive-activations")
except LmscopeError as exc:
    st.error(str(exc))

st.subheader("Corpus mode: the average over many sentences")
st.markdown(
    "StreamingLLM's Figure 2 averages the attention of 256 sentences of 16 tokens. Averaging washes out what "
    "each sentence says and leaves the structure: a local band in the first layers, then the first column."
)
controls = st.columns([1, 1, 3, 1])
n_sentences = controls[0].number_input("Sentences (at most)", 1, limits.CORPUS_SENTENCES, key="sink_sentences")
n_tokens = controls[1].number_input("Tokens per sentence", 2, MAX_TOKENS_PER_SENTENCE, key="sink_tokens")
layers = controls[2].multiselect("Layers to show", list(range(result.n_layers)), key="sink_layers")
show_logits = controls[3].toggle(
    "Logits", key="sink_logits", help="Average pre-softmax scores, as in the lecture's figure, instead of weights."
)
own = st.toggle("Use my own sentences", key="sink_own", help="Otherwise the bundled corpus of short English sentences.")
pasted = (
    st.text_area("Your sentences, one per line", key="sink_pasted", height=160, max_chars=limits.PASTED_CHARACTERS)
    if own
    else ""
)
state.sync_url(k=k, sentences=n_sentences, tokens=n_tokens, layers=",".join(map(str, layers)), logits=int(show_logits))

averaged = probe_with_progress(
    "Averaging attention, sentences",
    lambda progress: sinks.corpus_attention(
        handle,
        sinks.split_sentences(pasted) if own else corpus.sentences(),
        result_cache(),
        n_tokens=n_tokens,
        limit=n_sentences,
        on_progress=progress,
    ),
)
value = averaged.value
skipped = f"; {value.n_skipped} shorter ones skipped" if value.n_skipped else ""
from_cache = " · from the result cache" if averaged.hit else ""
st.caption(f"{value.n_sentences} sentences cut to {value.n_tokens} tokens{skipped}{from_cache}")
if not layers:
    st.info("Pick at least one layer to show.")
    st.stop()
kind = "logits" if show_logits else "weights"
show_figure(corpus_maps(value, layers, logits=show_logits), "sink_corpus", f"{value.model}-corpus-average-{kind}")
