"""The sparse and low-rank view: the lecture's opening slide, an image and a data matrix against a weight matrix."""

from __future__ import annotations

import argparse

import plotly.graph_objects as go

from probes import sparse_low_rank
from results.pruning import KINDS
from results.sparse_low_rank import SparseLowRank
from runtime.cache import ResultCache
from runtime.models import load
from views.options import model_argument
from views.registry import Command, Figure, Run, View, register
from viz.sparse_low_rank import error_curves, reconstruction_grid

DEFAULT_KIND = "q"
DEFAULT_KEEP = 5  # percent of the DCT coefficients, and of the smaller side as the rank, in the pictures


def _result(run: Run) -> SparseLowRank:
    layer = run.integer("layer")
    return run.keep("measured", sparse_low_rank.run(run.handle, layer, run.string("matrix"), run.cache))


def _draw_errors(run: Run) -> go.Figure:
    return error_curves(_result(run))


def _draw_images(run: Run) -> go.Figure:
    result = _result(run)
    return reconstruction_grid(
        sparse_low_rank.reconstructions(result, run.number("keep") / 100, run.number("rank") / 100)
    )


def _arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command)
    command.add_argument("--layer", type=int, help="the block whose matrix is measured (default: the middle one)")
    command.add_argument("--matrix", choices=KINDS, default=DEFAULT_KIND, help=f"its kind (default {DEFAULT_KIND})")


def _print(args: argparse.Namespace) -> object:
    handle = load(args.model)
    layer = handle.n_layers // 2 if args.layer is None else args.layer
    result = sparse_low_rank.run(handle, layer, args.matrix, ResultCache()).value
    return {
        "model": result.model,
        "layer": result.layer,
        "matrix": result.kind,
        "matrices": result.names,
        "labels": result.labels,
        "shapes": result.shapes,
        "shares": result.shares,
        "dct_error": result.dct_error,
        "svd_error": result.svd_error,
    }


VIEW = register(
    View(
        key="sparse_low_rank",
        title="Sparse and low-rank",
        summary="the opening slide: an image is sparse in a DCT basis and nearly low-rank; a weight matrix is neither",
        icon="blur_on",
        group="Weights",
        page="app_pages/15_Sparse_and_low_rank.py",
        caption=(
            "Signals such as images are approximately sparse under a Fourier-type basis (here the DCT) and data "
            "matrices approximately low-rank; a trained weight matrix is dense and close to full rank, much like a "
            "Gaussian matrix of its shape."
        ),
        commands=(
            Command(
                "sparse-low-rank",
                "DCT and SVD error curves of an image, a data matrix, a weight matrix and a Gaussian one",
                _arguments,
                _print,
            ),
        ),
        figures=(
            Figure("sparse_low_rank_errors", _draw_errors, (sparse_low_rank,)),
            Figure("sparse_low_rank_images", _draw_images, (sparse_low_rank,)),
        ),
    )
)
