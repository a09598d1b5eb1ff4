"""Activation distributions and MLP neurons: near-Gaussian hidden states with outliers, and sparse neurons."""

from __future__ import annotations

import numpy as np
import streamlit as st

from probes import activations, corpus, distribution, neurons, relu_neurons
from runtime import limits
from ui.compare import compare_section
from ui.models import probe_or_stop, probe_with_progress, result_cache
from ui.scaffold import Need, Setting, start
from views.neurons import block_output_figure
from viz.neurons import sparsity_figure
from viz.relu_neurons import relu_activity

TAU_RANGE = (-2.0, 4.0)

page = start(__file__, Need.MODEL, Need.TEXT)
handle = page.handle
n_layers = handle.n_layers
page.settings(
    Setting("layer", "int", n_layers // 2, lower=0, upper=n_layers - 1),
    Setting("tau", "float", 0.0, lower=TAU_RANGE[0], upper=TAU_RANGE[1]),
    Setting("sentences", "int", len(corpus.sentences()), lower=1, upper=len(corpus.sentences())),
    Setting("relu_seed", "int", 0, lower=0, upper=limits.LOTTERY_SEEDS - 1),
)
controls = st.columns([1, 3])
layer = page.widget("layer", controls[0].number_input, "Layer (output of block)")

st.subheader(f"Layer {layer}: the distribution of the hidden state")
layer_values = probe_or_stop(
    f"Reading the output of block {layer}...",
    lambda: activations.layer_run(handle, page.text, layer, result_cache()),
).value
spread = distribution.describe(layer_values.values)
page.show(block_output_figure(layer_values, spread), "distribution", f"{handle.name}-distribution-L{layer}")
st.caption(
    "The Gaussian is fitted robustly (median, and 1.4826 × the median absolute deviation) so that the outliers do not "
    "widen it; the QQ plot standardises the values the same way, so a Gaussian would lie on the dashed line."
)

st.subheader("MLP neurons")
if not page.lacks(Need.DENSE_MLP, "counting MLP neurons"):
    st.markdown(
        f"This model's MLP activation is **{neurons.activation_name(handle)}**. A neuron is **active** on a token when its "
        "pre-activation z (the input of the activation function; in a gated MLP, the gate projection) exceeds τ. With "
        "ReLU and τ = 0 that is exactly 'output non-zero'. SiLU and GELU are near zero well below 0 and near z above it, "
        "so z > τ splits them the same way, with τ a choice. A neuron is **dead** when it is never active on the "
        "sentences of the bundled corpus."
    )
    tau = page.widget("tau", controls[1].slider, "τ: active when z exceeds", step=0.05)
    n_sentences = page.widget("sentences", st.number_input, "Corpus sentences")
    tau = round(tau, 2)
    own = probe_or_stop(
        "Counting active neurons on your text...", lambda: neurons.run(handle, [page.text], result_cache())
    )
    on_corpus = probe_with_progress(
        "Running the corpus, sentences",
        lambda progress: neurons.run(handle, corpus.sentences()[:n_sentences], result_cache(), progress),
    )
    stats = on_corpus.value
    active, dead = neurons.active_share(stats, tau), neurons.dead_share(stats, tau)
    figure = sparsity_figure(neurons.active_share(own.value, tau), active, dead, tau, stats.activation, handle.name)
    page.show(figure, "neurons", f"{handle.name}-neurons-tau{tau:g}")
    st.caption(
        f"Over the corpus ({stats.n_tokens:,} tokens, {stats.n_neurons:,} neurons per layer): {np.mean(active):.1%} of neurons "
        f"active per token on average; {int(np.sum(dead * stats.n_neurons)):,} dead neurons in all layers together."
    )

st.subheader("Where zero means zero: a ReLU network")
st.markdown(
    "The lecture's *many ReLU activations are zero* is about ReLU, which outputs exactly 0 for every z ≤ 0. The "
    "language models here use smooth activations, hence the threshold above. The MLP of the Lottery tickets page "
    "uses ReLU: trained on scikit-learn's digits, its hidden activations are read on the test digits, at its "
    "initialisation and after training."
)
relu_seed = page.widget("relu_seed", st.number_input, "Seed of the ReLU network")
relu = probe_or_stop("Training the ReLU network...", lambda: relu_neurons.run(result_cache(), int(relu_seed))).value
page.show(relu_activity(relu), "relu", f"relu-neurons-seed{relu.seed}")
compare_section(page, "neurons", text=page.text)
