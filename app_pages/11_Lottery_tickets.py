"""Lottery tickets: iterative magnitude pruning finds a winning subnetwork, shown live on a small MLP on the digits."""

from __future__ import annotations

import streamlit as st

from probes import lottery
from runtime import limits
from ui.models import probe_with_progress, result_cache
from ui.scaffold import Setting, start
from viz.lottery import ticket_accuracy_figure, ticket_table_rows

page = start(__file__)
page.settings(
    Setting("rounds", "int", lottery.DEFAULT_ROUNDS, lower=1, upper=limits.LOTTERY_ROUNDS),
    Setting("seeds", "int", lottery.DEFAULT_SEEDS, lower=1, upper=limits.LOTTERY_SEEDS),
)
controls = st.columns([1, 1, 4])
rounds = page.widget(
    "rounds",
    controls[0].number_input,
    "Pruning rounds",
    help="Each round prunes 20% of every hidden layer's remaining weights and 10% of the output layer's.",
)
seeds = page.widget(
    "seeds", controls[1].number_input, "Seeds", help="Independent runs: initialisation, batch order, masks."
)

done = probe_with_progress(
    "Training and pruning the network, trainings",
    lambda progress: lottery.run(result_cache(), rounds, seeds, progress),
)
result = done.value
page.show(ticket_accuracy_figure(result), "accuracy", "lottery-tickets-digits")
sizes = "-".join(map(str, result.layer_sizes))
st.caption(
    f"A {sizes} MLP (ReLU) on scikit-learn's 8 x 8 digits: {result.n_train} training and {result.n_test} test images, "
    f"Adam (learning rate {result.learning_rate:g}), {result.epochs} epochs of batches of {result.batch_size} per "
    "training. Each round trains the ticket, prunes the smallest surviving weights of each layer by magnitude, and "
    "rewinds the survivors to their initial values. Reinit: the same masks from a fresh random initialisation. "
    "Random mask: random masks of the same per-layer sparsity from the original initialisation. Biases are not "
    "pruned; the share of weights left counts the weight matrices." + (" · from the result cache" if done.hit else "")
)
st.dataframe(ticket_table_rows(result), hide_index=True)
