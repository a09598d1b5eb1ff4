"""Expert routing: which experts a Mixture-of-Experts model picks for each token, how evenly, and at what cost."""

from __future__ import annotations

import streamlit as st

from probes import corpus, moe_equation, moe_loss, moe_trained_store, moefication, routing
from probes.text import token_strings
from results.moefication import EXPERT_COUNTS, ROUTERS
from results.moefication import Setting as MoeSetting
from ui.models import probe_or_stop, probe_with_progress, result_cache
from ui.scaffold import Need, Setting, start
from viz.moe_trained import capacity_figure, cost_rows, equation_html, training_figure
from viz.routing import (
    balance_text,
    confidence_figure,
    load_figure,
    load_grid,
    loss_by_k_figure,
    preference_rows,
    routing_heatmap,
    top1_backgrounds,
    transitions_figure,
)
from viz.tokens import token_chips_html

page = start(__file__, Need.MOE, Need.TEXT)
handle = page.handle

setting = None
trained = moe_trained_store.log_of(handle)
if trained is not None:
    recipe = trained.recipe
    st.info(
        f"Trained by lmscope: SmolLM2-135M's MLPs split into {recipe.experts} experts (MoEfication"
        + (", the shared ones the neurons of largest output energy" if recipe.shared else "")
        + f") in transformers' own {recipe.family()} architecture, {recipe.top_k} active per token: "
        f"{recipe.routing()}, G(x) = Softmax(x·W_g) with "
        "the top-k gates renormalised; then trained by distillation from the dense model (each layer fitted to the "
        "dense MLP, then KL through the whole model, with the Switch load-balancing loss)"
        + (f", the experts' update kept at rank {recipe.rank}" if recipe.rank else "")
        + f". It loads with {type(handle.model).__name__}.from_pretrained like any downloaded checkpoint."
    )
if handle.name == moefication.DERIVED_NAME:
    st.info(
        "Derived model: SmolLM2-135M's MLPs split into E experts of co-activating neurons, built here from the dense "
        "model (MoEfication). The fitted router predicts each expert's output norm from the MLP input; the oracle "
        "uses the true norms. Chosen experts' outputs are summed unweighted."
    )
    page.settings(
        Setting("experts", "choice", 16, options=EXPERT_COUNTS),
        Setting("k", "int", 4, lower=1, upper=999),
        Setting("router", "choice", "fitted", options=ROUTERS),
    )
    columns = st.columns([1, 1, 2])
    experts = page.widget("experts", columns[0].selectbox, "Experts per MLP (E)")
    top_k = page.widget("k", columns[1].number_input, "Active experts per token (k)")
    router_kind = page.widget("router", columns[2].radio, "Routing by", horizontal=True)
    setting = MoeSetting(experts, top_k, router_kind)
    page.or_stop(setting.check)

result = probe_or_stop(
    "Running the model and reading every router...",
    lambda: routing.run(handle, page.text, result_cache(), setting),
).value
labels = [layer.label for layer in result.layers]
page.settings(Setting("layer", "int", len(labels) // 2, lower=0, upper=len(labels) - 1))
index = st.selectbox("Layer (router)", range(len(labels)), format_func=labels.__getitem__, key=page.key("layer"))
layer = result.router(index)

page.show(routing_heatmap(layer, result.tokens, result.model), "heatmap", f"{handle.name}-routing-{layer.label}")

sparse = moe_equation.is_sparse(handle, result.layers[index].layer)
if sparse:
    st.subheader("y = Σ G(x)ᵢ Eᵢ(x) for one token")
    page.settings(Setting("token", "int", 0, lower=0, upper=len(result.tokens) - 1))
    position = st.selectbox(
        "Token",
        range(len(result.tokens)),
        format_func=lambda i: f"{i}: {result.tokens[i]}",
        key=page.key("token"),
    )
    equation = probe_or_stop(
        "Reading the experts of one token...",
        lambda: moe_equation.run(handle, page.text, layer.layer, position, result_cache()),
    ).value
    st.html(equation_html(equation))

st.subheader("Your text, coloured by each token's top-1 expert")
colours, notes = top1_backgrounds(layer)
st.html(token_chips_html(result.tokens, result.token_ids, colours, notes))
top, margin = routing.confidence(layer)
metrics = st.columns(3)
metrics[0].metric("Mean top-1 probability", f"{top.mean():.2f}")
metrics[1].metric("Mean margin over the 2nd", f"{margin.mean():.2f}")
metrics[2].metric(
    "Experts used by this text", f"{len(set(layer.experts[:, 0].tolist()) - {routing.DROPPED})} of {layer.n_experts}"
)
page.show(
    confidence_figure(top, margin, result.tokens, layer),
    "confidence",
    f"{handle.name}-confidence-{layer.label}",
)

st.subheader("Expert load")
balances = [routing.balance(each) for each in result.layers]
page.show(load_figure(layer, balances[index], result.model), "load", f"{handle.name}-load-{layer.label}")
page.show(
    load_grid([b.load for b in balances], labels, balances, result.model, "your text"),
    "load_grid",
    f"{handle.name}-load-grid",
)
st.caption(f"This router: {balance_text(balances[index])}. Short texts give noisy loads; the corpus below is steadier.")

st.subheader("Routing flow to the next layer")
first = min(index, len(result.layers) - 2)
sankey = st.toggle("Sankey diagram", key=page.key("sankey"))


def show_flow(experts: list, sizes: list[int], source: str) -> None:
    """The top-1 flow from router `first` to the next, from each router's (tokens, k) experts."""
    if len(experts) < 2:
        st.info("This model has a single router: there is no next layer to flow into.")
        return
    counts = routing.transitions(experts[first], experts[first + 1], sizes[first], sizes[first + 1])
    figure = transitions_figure(counts, labels[first], labels[first + 1], sankey, source)
    page.show(figure, f"flow_{source}", f"{handle.name}-flow-{labels[first]}-{source}")


show_flow([each.experts for each in result.layers], [each.n_experts for each in result.layers], "your text")

st.subheader("Over the bundled corpus: load, flow, and the tokens each expert prefers")
if st.toggle(f"Route the {len(corpus.sentences())} corpus sentences", key=page.key("corpus")):
    routed_corpus = probe_with_progress(
        "Routing the corpus, sentences",
        lambda progress: routing.corpus_run(handle, corpus.sentences(), result_cache(), setting, progress),
    ).value
    corpus_balances = [routing.corpus_balance(routed_corpus, i) for i in range(len(labels))]
    page.show(
        load_grid([b.load for b in corpus_balances], labels, corpus_balances, result.model, "the corpus"),
        "load_grid_corpus",
        f"{handle.name}-load-grid-corpus",
    )
    show_flow(list(routed_corpus.experts), routed_corpus.n_experts, "the corpus")
    rows = preference_rows(routing.preferences(routed_corpus, index, lambda t: token_strings(handle, [t])[0]))
    st.markdown(f"**Tokens each expert of {labels[index]} prefers**")
    st.dataframe(rows, hide_index=True, width="stretch")
    st.caption(
        "Tokens seen at least 3 times in the corpus, ranked by the share of their occurrences sent to the expert "
        "(smoothed, so that 300 of 300 ranks above 3 of 3)."
    )

if setting is not None:
    st.subheader("Loss against the number of active experts")
    if st.toggle("Measure the loss of your text for k = 1 … E at E = 8, 16, 32 (both routers)", key=page.key("loss")):
        loss = probe_or_stop(
            "Running the derived MoE at every E, k and router (about a minute the first time)...",
            lambda: moe_loss.loss_by_k(handle, page.text, result_cache()),
        ).value
        page.show(loss_by_k_figure(loss), "loss_chart", f"{handle.name}-loss-by-k")

if sparse:
    st.subheader("Loss against the number of active experts")
    if st.toggle(
        "Measure the loss of your text with k = 1, 2, 4, … E experts active per token (shared ones included)",
        key=page.key("loss"),
    ):
        loss = probe_or_stop(
            "Running the MoE at every k...", lambda: moe_loss.trained_loss_by_k(handle, page.text, result_cache())
        ).value
        page.show(loss_by_k_figure(loss), "loss_chart", f"{handle.name}-loss-by-k")

if trained is not None:
    st.subheader("Capacity against compute")
    page.show(capacity_figure(trained, handle.name), "capacity", f"{handle.name}-capacity")
    st.dataframe(cost_rows(trained), hide_index=True, width="stretch")
    st.caption(
        "Active parameters: attention, norms, the router and k experts per block, and the output head (the input "
        "embedding is a lookup); FLOPs per token = 2 × active parameters (attention over the context left out: the "
        "same in both). MLP time: the middle block on 512 real tokens, the family's own forward that computes only "
        "the chosen experts, measured when the model was built."
    )
    page.show(training_figure(trained, handle.name), "training", f"{handle.name}-training")
