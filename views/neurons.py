"""The distributions and neurons view: hidden states against a Gaussian, active and dead MLP neurons."""

from __future__ import annotations

import argparse

import plotly.graph_objects as go

from probes import activations, distribution, relu_neurons
from results.activations import LayerActivations
from results.distribution import Distribution
from runtime.cache import ResultCache
from views.registry import Command, Figure, Run, View, register
from viz.distribution import distribution_figure
from viz.relu_neurons import relu_activity


def block_output_figure(values: LayerActivations, spread: Distribution) -> go.Figure:
    """One block's output values as a histogram against a robustly fitted Gaussian, with its QQ plot."""
    title = f"Output of block {values.layer}: {len(values.tokens)} tokens x {values.values.shape[1]} features"
    return distribution_figure(spread, title, "value")


def _draw_histogram(run: Run) -> go.Figure:
    layer = run.integer("layer")
    values = run.keep("layer", activations.layer_run(run.handle, run.text, layer, run.cache))
    spread = distribution.describe(values.values)
    run.results["distribution"] = spread
    run.pick(layer=layer)
    return block_output_figure(values, spread)


def _relu_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--seed", type=int, default=0, help="the network's seed (the lottery page's), 0 by default")


def _print_relu(args: argparse.Namespace) -> object:
    found = relu_neurons.run(ResultCache(), args.seed).value
    return {
        "dataset": found.dataset,
        "layer_sizes": list(found.layer_sizes),
        "seed": found.seed,
        "n_inputs": found.n_inputs,
        "stages": found.stages,
        "accuracy": found.accuracy,
        "zero_share": found.zero_share,
        "dead": found.dead,
        "rates": found.rates,
    }


def _draw_relu(run: Run) -> go.Figure:
    return relu_activity(run.keep("relu", relu_neurons.run(run.cache, run.integer("relu_seed"))))


VIEW = register(
    View(
        key="neurons",
        title="Distributions and neurons",
        summary="hidden states against a Gaussian, active and dead MLP neurons",
        icon="ssid_chart",
        group="Activations",
        page="app_pages/6_Distributions_and_neurons.py",
        caption=(
            "Hidden states are approximately Gaussian except for a few huge outliers; MLP neurons are sparse: on each token "
            "most are (nearly) off, and some are never on at all."
        ),
        commands=(
            Command(
                "relu-neurons",
                "zero activations and dead neurons of the lottery MLP (ReLU), initialised and trained",
                _relu_arguments,
                _print_relu,
            ),
        ),
        figures=(
            Figure("activation_histogram", _draw_histogram, (activations,)),
            Figure("relu_activity", _draw_relu, (relu_neurons,)),
        ),
    )
)
