"""The lottery tickets view: iterative magnitude pruning of a small MLP on the digits, with rewinding, against
reinitialised and randomly masked controls. It trains its own network: the chosen language model plays no part."""

from __future__ import annotations

import argparse

import plotly.graph_objects as go

from probes import lottery
from runtime.cache import ResultCache
from views.registry import Command, Figure, Run, View, register
from viz.lottery import ticket_accuracy_figure


def _draw(run: Run) -> go.Figure:
    done = lottery.run(run.cache, run.integer("rounds"), run.integer("seeds"), run.on_progress)
    return ticket_accuracy_figure(run.keep("lottery", done))


def _arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--rounds",
        type=int,
        default=lottery.DEFAULT_ROUNDS,
        help=f"pruning rounds of 20%% each (default {lottery.DEFAULT_ROUNDS})",
    )
    command.add_argument(
        "--seeds", type=int, default=lottery.DEFAULT_SEEDS, help=f"seeds (default {lottery.DEFAULT_SEEDS})"
    )


def _print(args: argparse.Namespace) -> object:
    done = lottery.run(ResultCache(), args.rounds, args.seeds).value
    return {
        "dataset": done.dataset,
        "layer_sizes": done.layer_sizes,
        "prune_rate": done.prune_rate,
        "remaining": done.remaining,
        "remaining_per_layer": done.remaining_per_layer,
        "accuracy_ticket": done.accuracy_ticket,
        "accuracy_reinit": done.accuracy_reinit,
        "accuracy_random_mask": done.accuracy_random_mask,
    }


VIEW = register(
    View(
        key="lottery",
        title="Lottery tickets",
        summary="iterative pruning finds a winning subnetwork of a small network on the digits",
        icon="casino",
        group="Weights",
        page="app_pages/11_Lottery_tickets.py",
        caption=(
            "A randomly initialised network holds a subnetwork that, trained alone from the same initial values, matches "
            "the whole network; iterative magnitude pruning finds it (Frankle and Carbin 2019). Shown here on a small network "
            "that trains in a fraction of a second, not on the language model chosen in the sidebar, which plays no part."
        ),
        commands=(
            Command(
                "lottery",
                "lottery tickets: accuracy of a pruned MLP on the digits, per seed and round",
                _arguments,
                _print,
            ),
        ),
        figures=(Figure("lottery_tickets", _draw, (lottery,)),),
    )
)
