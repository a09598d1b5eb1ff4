"""Dropped attention heads, a part of the pruning view (views.pruning declares them): the CLI command and the two
figures a lecture preset can ask for."""

from __future__ import annotations

import argparse

import plotly.graph_objects as go

from probes import dropped_heads
from results.dropped_heads import DroppedHeads
from runtime import limits
from runtime.cache import ResultCache
from runtime.models import load
from views.options import model_argument
from views.registry import Command, Figure, Run
from viz.dropped_heads import delta_grid, removal_curve


def _result(run: Run) -> DroppedHeads:
    found = dropped_heads.run(run.handle, run.text, run.cache, run.integer("seeds"), run.on_progress)
    return run.keep("dropped_heads", found)


def _arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command, " (a decoder)")
    command.add_argument("--text", required=True)
    command.add_argument(
        "--seeds",
        type=int,
        default=dropped_heads.DEFAULT_SEEDS,
        help=f"random orders of removal to compare with (1 to {limits.HEAD_DROP_SEEDS}, default "
        f"{dropped_heads.DEFAULT_SEEDS})",
    )


def _print(args: argparse.Namespace) -> object:
    handle = load(args.model)
    result = dropped_heads.run(handle, args.text, ResultCache(), args.seeds).value
    return {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "n_tokens": result.n_tokens,
        "seeds": result.n_seeds,
        "nll_base": result.nll_base,
        "delta": result.delta,
        "removed": result.removed,
        "nll_by_importance": result.nll_by_importance,
        "nll_random": result.nll_random,
    }


def _draw_grid(run: Run) -> go.Figure:
    return delta_grid(_result(run))


def _draw_curve(run: Run) -> go.Figure:
    return removal_curve(_result(run))


COMMAND = Command("drop-heads", "loss of a text with attention heads dropped, alone and together", _arguments, _print)
FIGURES = (
    Figure("head_drop_grid", _draw_grid, (dropped_heads,)),
    Figure("head_drop_curve", _draw_curve, (dropped_heads,)),
)
