"""The fine-tuning view: the chosen decoder fine-tuned twice on a bundled task, LoRA at rank r and every parameter,
and the two updates W − W0 compared matrix by matrix (Hu et al. 2021)."""

from __future__ import annotations

import argparse
import dataclasses

import plotly.graph_objects as go

from probes import finetune, finetune_train
from results.finetune import METHODS, FineTuneComparison
from runtime import limits
from runtime.cache import ResultCache
from runtime.models import load
from views.options import model_argument
from views.registry import Command, Figure, Run, View, register
from viz.finetune import energy_figure, loss_figure, spectrum_figure


def _compared(run: Run) -> FineTuneComparison:
    done = finetune.compare(
        run.handle, run.cache, run.integer("rank"), run.integer("steps"), on_progress=run.on_progress
    )
    return run.keep("finetune", done)


def _draw_loss(run: Run) -> go.Figure:
    return loss_figure(_compared(run))


def _draw_spectrum(run: Run) -> go.Figure:
    result = _compared(run)
    return spectrum_figure(result, finetune.adapted(result, run.string("matrix")))


def _draw_energy(run: Run) -> go.Figure:
    return energy_figure(_compared(run))


def _arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command, " (a decoder)")
    command.add_argument("--method", required=True, choices=METHODS, help="LoRA adapters, or every parameter")
    command.add_argument(
        "--rank",
        type=int,
        default=finetune.DEFAULT_RANK,
        help=f"LoRA's rank r, and the r the update's energy is counted in (1 to {limits.FINETUNE_RANK}, default "
        f"{finetune.DEFAULT_RANK})",
    )
    command.add_argument(
        "--steps",
        type=int,
        default=finetune.DEFAULT_STEPS,
        help=f"training steps (1 to {limits.FINETUNE_STEPS}, default {finetune.DEFAULT_STEPS})",
    )
    command.add_argument("--seed", type=int, default=finetune.DEFAULT_SEED, help="data order and LoRA's A (default 0)")


def _print(args: argparse.Namespace) -> object:
    handle = load(args.model)
    done = finetune.run(handle, args.method, ResultCache(), args.rank, args.steps, args.seed).value
    return {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "method": done.method,
        "rank": done.rank,
        "steps": done.steps,
        "seed": done.seed,
        "learning_rate": done.learning_rate,
        "trained_params": done.trained_params,
        "total_params": done.total_params,
        "loss_train": done.loss_train,
        "eval_steps": done.eval_steps,
        "loss_heldout": done.loss_heldout,
        "train_seconds": done.train_seconds,
        "matrices": [dataclasses.asdict(m) for m in done.matrices],
    }


VIEW = register(
    View(
        key="finetune",
        title="LoRA vs full fine-tuning",
        summary="fine-tune the model twice, LoRA and full, and see how low-rank each update is",
        icon="tune",
        group="Weights",
        page="app_pages/13_Fine_tuning.py",
        caption=(
            "LoRA freezes the pretrained weights and learns W = W₀ + BA, with B·A of a small rank r: a fraction of a percent "
            "of the parameters (Hu et al. 2021). It works if the update a full fine-tuning makes is close to low-rank "
            "anyway. Here the model is fine-tuned twice, live, on a small bundled task, and the two updates are compared "
            "matrix by matrix. The model the other pages use is never changed: both runs train copies."
        ),
        commands=(
            Command(
                "finetune",
                "fine-tune a decoder on the bundled task (LoRA or full) and print the spectra of its updates",
                _arguments,
                _print,
            ),
        ),
        figures=(
            Figure("finetune_loss", _draw_loss, (finetune, finetune_train)),
            Figure("finetune_spectrum", _draw_spectrum, (finetune, finetune_train)),
            Figure("finetune_energy", _draw_energy, (finetune, finetune_train)),
        ),
    )
)
