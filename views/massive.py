"""The massive activations view: the few huge hidden-state values, across layers and the corpus, and what removing
them does."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import plotly.graph_objects as go

from probes import ablation, activations, corpus
from probes.nll import perplexity
from results.activations import ActivationResult, Thresholds
from runtime import limits
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.models import load
from views.api import Model, Result, call
from views.compare import depth_figure
from views.options import model_argument, threshold_arguments
from views.registry import Command, Figure, Run, View, register
from viz.activations import ablation_chart, magnitude_lines, magnitude_surface


def run(
    model: Model, text: str, *, cache: ResultCache | None = None, progress: bool = True
) -> Result[ActivationResult]:
    """The largest |h| of every block's output on the text (per layer: largest, median, the top entries with
    their position and feature); its figure is the largest three and the median by layer, on a log scale."""
    return call(
        model,
        lambda handle, store, _: activations.run(handle, text, store),
        magnitude_lines,
        cache,
        progress,
        "activations",
    )


def _draw_surface(run: Run) -> go.Figure:
    result = run.keep("activations", activations.run(run.handle, run.text, run.cache))
    option = run.option("layer")
    layer = int(np.argmax(result.max_abs)) if option == "peak" else run.integer("layer")
    result.check_layer(layer)
    run.pick(layer=layer)
    return magnitude_surface(run.keep("layer", activations.layer_run(run.handle, run.text, layer, run.cache)))


def _draw_lines(run: Run) -> go.Figure:
    return magnitude_lines(run.keep("activations", activations.run(run.handle, run.text, run.cache)))


def _draw_ablation(run: Run) -> go.Figure:
    done = ablation.run(
        run.handle,
        run.text,
        Thresholds(run.number("min"), run.number("ratio")),
        run.cache,
        corpus.sentences()[: run.integer("sentences")],
        run.flag("everywhere"),
        run.on_progress,
    )
    return ablation_chart(run.keep("ablation", done))


def _activation_arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command)
    command.add_argument("--text", required=True)
    command.add_argument(
        "--top", type=int, default=10, help=f"largest-magnitude entries per layer, 1 to {activations.TOP} (default 10)"
    )
    threshold_arguments(command)


def _print_activations(args: argparse.Namespace) -> object:
    if not 1 <= args.top <= activations.TOP:
        raise LmscopeError(f"--top must be between 1 and {activations.TOP}; got {args.top}.")
    done = run(args.model, args.text, progress=False)
    handle, result = done.model, done.value
    thresholds = Thresholds(args.min_magnitude, args.min_ratio)
    return {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "token_ids": result.token_ids,
        "tokens": result.tokens,
        "layers": [
            {
                "layer": layer,
                "max_abs": result.max_abs[layer],
                "median_abs": result.median_abs[layer],
                "top": [
                    {
                        "position": result.top_positions[layer, j],
                        "dim": result.top_dims[layer, j],
                        "value": result.top_values[layer, j],
                    }
                    for j in range(args.top)
                ],
            }
            for layer in range(result.n_layers)
        ],
        "thresholds": dataclasses.asdict(thresholds),
        "massive": [dataclasses.asdict(m) for m in activations.massive(result, thresholds)],
    }


def _ablation_arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command, " (a decoder)")
    command.add_argument("--text", required=True)
    threshold_arguments(command)
    command.add_argument(
        "--everywhere",
        action="store_true",
        help="edit each massive entry at every layer where it is massive, not only the first",
    )
    command.add_argument(
        "--sentences",
        type=int,
        default=len(corpus.sentences()),
        help=f"the first N corpus sentences give the means (default: all {len(corpus.sentences())})",
    )


def _print_ablation(args: argparse.Namespace) -> object:
    limits.check_range(args.sentences, 1, len(corpus.sentences()), "number of corpus sentences")
    handle = load(args.model)
    thresholds = Thresholds(args.min_magnitude, args.min_ratio)
    chosen = corpus.sentences()[: args.sentences]
    done = ablation.run(handle, args.text, thresholds, ResultCache(), chosen, args.everywhere).value
    return {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "tokens": done.tokens,
        "thresholds": {"min_magnitude": done.min_magnitude, "min_ratio": done.min_ratio},
        "everywhere": done.everywhere,
        "ablated": [
            {"layer": layer, "position": position, "dim": dim, "value": value, "mean": mean}
            for layer, position, dim, value, mean in zip(
                done.layers, done.positions, done.dims, done.values, done.means
            )
        ],
        "nll_base": done.nll_base.mean(),
        "nll_massive_zeroed": done.nll_zeroed.mean(),
        "nll_massive_mean": done.nll_mean.mean(),
        "nll_random_zeroed": done.nll_random.mean(),
        "nll_random_draws": done.nll_random.mean(axis=1),
        "perplexity_base": perplexity(done.nll_base),
        "perplexity_massive_zeroed": perplexity(done.nll_zeroed),
    }


VIEW = register(
    View(
        key="massive",
        title="Massive activations",
        summary="the few huge hidden-state values, across layers and the corpus, and what removing them does",
        icon="landscape",
        group="Activations",
        page="app_pages/5_Massive_activations.py",
        caption=(
            "Hidden states look Gaussian except for a few features with consistently huge values at the first token and "
            "the first delimiter (Sun et al. 2024). Here they are found automatically, on any model."
        ),
        commands=(
            Command(
                "activations",
                "largest residual-stream activations of every block's output",
                _activation_arguments,
                _print_activations,
            ),
            Command(
                "ablate",
                "loss with the massive activations zeroed, against random ones zeroed",
                _ablation_arguments,
                _print_ablation,
            ),
        ),
        figures=(
            Figure("magnitude_surface", _draw_surface, (activations,)),
            Figure("magnitude_lines", _draw_lines, (activations,)),
            Figure("ablation_bars", _draw_ablation, (activations, ablation)),
            depth_figure("massive_by_depth", "massive", (activations,)),
        ),
    )
)
