"""Attention sinks: how much attention lands on the first token, on your text and averaged over many sentences."""

from __future__ import annotations

import streamlit as st

from probes import corpus, sink_effect, sinks
from runtime import limits
from ui.compare import compare_section
from ui.models import probe_or_stop, probe_with_progress, result_cache, waited
from ui.scaffold import Need, Setting, start
from views.sinks import share_figure, sink_attention
from viz.sink_effect import first_key_losses, sink_norms
from viz.sinks import corpus_maps, massive_link_chart, sink_head_grid, sink_mechanism, sink_table_rows, softmax_toy

MAX_TOKENS_PER_SENTENCE = 64
TOY_X1 = (-10.0, 20.0)  # the toy's first logit

page = start(__file__, Need.MODEL, Need.TEXT)
handle = page.handle
cached = probe_or_stop(
    "Running the model and summarising every head...",
    lambda: sink_attention(handle, page.text, result_cache()),
)
result = cached.value
profile = sinks.sink_profile(result)
low, high, step = sinks.first_k_range(result)
n_tokens = len(result.token_ids)
page.settings(
    Setting("k", "int", sinks.default_k(result), lower=0, upper=high, check=lambda k: sinks.check_k(result, k)),
    Setting(
        "layers",
        "multi",
        sinks.default_layers(result.n_layers),
        options=range(result.n_layers),
        allowed=f"layers of this model (0 to {result.n_layers - 1})",
    ),
    Setting("sentences", "int", sinks.DEFAULT_SENTENCES, lower=1, upper=limits.CORPUS_SENTENCES),
    Setting("tokens", "int", sinks.DEFAULT_TOKENS, lower=2, upper=MAX_TOKENS_PER_SENTENCE),
    Setting("logits", "bool", True),
    Setting("toy_x1", "float", 4.0, lower=TOY_X1[0], upper=TOY_X1[1]),
    Setting("toy_keys", "int", 16, lower=2, upper=limits.TOY_KEYS),
    Setting("toy_spread", "float", 1.0, lower=0.0, upper=limits.TOY_SPREAD),
    Setting("mask_window", "int", min(sink_effect.DEFAULT_WINDOW, n_tokens - 1), lower=1, upper=max(1, n_tokens - 1)),
    Setting("mask_sinks", "int", min(sink_effect.DEFAULT_SINKS, n_tokens - 1), lower=0, upper=max(0, n_tokens - 1)),
    Setting("own", "bool", False, url=False),
    Setting("pasted", "str", "", length=limits.PASTED_CHARACTERS, url=False),
)

st.subheader("On your text")
if high > low:
    k = page.widget(
        "k",
        st.slider,
        "First k tokens",
        min_value=low,
        step=step,
        help="The dashed line shows how much attention lands on tokens 0 to k-1. StreamingLLM keeps 4 such tokens.",
    )
else:
    k = low
    st.caption(f"k = {k}: the only choice for a text this short.")
page.show(share_figure(result, k), "lines", f"{result.model}-sink-share")
left, right = st.columns(2)
with left:
    page.show(sink_head_grid(profile), "grid", f"{result.model}-sink-share-heads")
with right:
    st.markdown(
        "**The sink of each layer**: the position receiving the most attention, averaged over the tokens after it "
        "(those that can see it). Where a layer has no sink, this is often a punctuation mark or a neighbour."
        + (f" The text is long, so positions are pooled {result.pool} tokens per cell." if result.pool > 1 else "")
    )
    st.dataframe(
        sink_table_rows(profile),
        hide_index=True,
        height=min(720, 35 * (result.n_layers + 1) + 3),
        column_config={"attention it receives (%)": st.column_config.NumberColumn(format="%.1f")},
    )

st.subheader("Why sinks form")
st.markdown(
    "Softmax must spend all of a query's weight: token 0 gets 1 / (1 + Σ e^(x_k − x_0)), so a head whose logit on "
    "the first token leads the best other key by a few nats puts nearly all its weight there, whatever the rest "
    "says: the sink is where attention goes when a head has nothing to look for (the lecture's x₁ ≫ x_j)."
)
with page.errors():
    lead = sinks.logit_lead(result)
    page.show(
        sink_mechanism(result.model, result.sink_share, lead, len(result.tokens)),
        "mechanism",
        f"{result.model}-sink-mechanism",
    )
st.markdown("**The equation, live**: one query's logits, the first key's (x₁) set here, the others drawn around 0.")
toy = st.columns(3)
first = page.widget("toy_x1", toy[0].slider, "x₁, the first key's logit", step=0.5)
n_keys = page.widget("toy_keys", toy[1].number_input, "Keys")
spread = page.widget("toy_spread", toy[2].slider, "Spread of the other logits", step=0.25)
with page.errors():
    page.show(softmax_toy(first, sinks.toy_logits(n_keys, spread)), "toy", "softmax-toy")

st.markdown(
    "**The sink takes the weight, not the output.** What a head adds is Σ_j a_ij f(x_j), with f(x) = W_O v the "
    "value through the head's output projection (Kobayashi et al. 2020): a weight near 1 on a token whose f(x) is "
    "short moves the output little. Below the diagonal, the sink's share of the weighted norms is smaller than its "
    "share of the weights."
)
with page.errors():
    norms = waited(
        "Reading every head's values...", lambda progress: sink_effect.norms(handle, page.text, result_cache())
    ).value
    page.show(sink_norms(norms), "norms", f"{result.model}-sink-norms")
if not page.lacks(Need.DECODER, "the loss with the first key masked"):
    st.markdown(
        "**Take the sink away.** The loss of your text when no query after the first may see token 0's key, "
        "against a sliding window without and with the first tokens kept visible (StreamingLLM's sinks)."
    )
    masking = st.columns(2)
    mask_window = page.widget("mask_window", masking[0].number_input, "Window (tokens)")
    mask_sinks = page.widget("mask_sinks", masking[1].number_input, "First tokens kept in the window")
    with page.errors():
        masked = waited(
            "Running the model with the first key hidden...",
            lambda progress: sink_effect.first_key_masked(handle, page.text, result_cache(), mask_window, mask_sinks),
        ).value
        page.show(first_key_losses(masked), "masked", f"{result.model}-first-key-masked")

st.subheader("Sinks and massive activations")
st.markdown(
    "The lecture's other outlier: a few hidden-state values hundreds or thousands of times larger than the rest "
    "(massive activations, Sun et al. 2024), at the starting token and the first period or newline. Is the token "
    "that soaks up attention the same one?"
)
with page.errors():
    link = waited(
        "Running the model for its hidden states...",
        lambda progress: sinks.massive_link(handle, result, result_cache()),
    ).value
    page.show(massive_link_chart(link), "massive", f"{result.model}-sink-massive-activations")

st.subheader("Corpus mode: the average over many sentences")
st.markdown(
    "StreamingLLM's Figure 2 averages the attention of 256 sentences of 16 tokens. Averaging washes out what "
    "each sentence says and leaves the structure: a local band in the first layers, then the first column."
)
controls = st.columns([1, 1, 3, 1])
n_sentences = page.widget("sentences", controls[0].number_input, "Sentences (at most)")
n_tokens = page.widget("tokens", controls[1].number_input, "Tokens per sentence")
layers = page.widget("layers", controls[2].multiselect, "Layers to show")
show_logits = page.widget(
    "logits",
    controls[3].toggle,
    "Logits",
    help="Average pre-softmax scores, as in the lecture's figure, instead of weights.",
)
own = page.widget(
    "own", st.toggle, "Use my own sentences", help="Otherwise the bundled corpus of short English sentences."
)
pasted = page.widget("pasted", st.text_area, "Your sentences, one per line", height=160) if own else ""
texts = sinks.split_sentences(pasted) if own else corpus.sentences()

averaged = probe_with_progress(
    "Averaging attention, sentences",
    lambda progress: sinks.corpus_attention(
        handle,
        texts,
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
if layers:
    kind = "logits" if show_logits else "weights"
    page.show(corpus_maps(value, layers, logits=show_logits), "corpus", f"{value.model}-corpus-average-{kind}")
else:
    st.info("Pick at least one layer to show.")

compare_section(
    page,
    "sinks",
    "corpus_maps",
    text=page.text,
    options={
        "texts": texts,
        "sentences": n_sentences,
        "tokens": n_tokens,
        "logits": show_logits,
    },
)
