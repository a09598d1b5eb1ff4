"""The weight spectra view: power-law tails, alpha across layers, low rank and fine-tuning updates."""

from __future__ import annotations

import argparse

import plotly.graph_objects as go

from probes import pruning, spectra
from results.spectra import MatrixSpectrum, ModelSpectra
from runtime.cache import ResultCache
from views.api import Model, Result, call
from views.options import model_argument
from views.registry import Command, Figure, Run, View, register
from viz.pruning import rank_loss_figure
from viz.spectra import alpha_by_layer, energy_figure, esd_figure


def esd_with_bulk(chosen: MatrixSpectrum) -> go.Figure:
    """A matrix's eigenvalue histogram with its power-law tail fit and the Marchenko-Pastur bulk of a random
    matrix of its shape and entry variance."""
    return esd_figure(chosen, *spectra.marchenko_pastur(chosen.shape, chosen.std**2))


def spectra_figure(result: ModelSpectra, matrix: str | None = None) -> go.Figure:
    """Alpha of every block matrix by layer, or one matrix's eigenvalue histogram against the random bulk."""
    return alpha_by_layer(result) if matrix is None else esd_with_bulk(result.get(matrix))


def run(model: Model, *, cache: ResultCache | None = None, progress: bool = True) -> Result[ModelSpectra]:
    """The spectrum of every block weight matrix with its power-law fit; its figure is alpha by layer, or one
    matrix's spectrum: `.figure(matrix="model.layers.13.mlp.gate_proj")`."""
    return call(model, spectra.run, spectra_figure, cache, progress, "spectra")


def _spectra(run: Run) -> ModelSpectra:
    return run.keep("spectra", spectra.run(run.handle, run.cache, run.on_progress))


def _draw_esd(run: Run) -> go.Figure:
    return esd_with_bulk(_spectra(run).get(run.string("matrix")))


def _draw_alpha(run: Run) -> go.Figure:
    return alpha_by_layer(_spectra(run))


def _draw_energy(run: Run) -> go.Figure:
    return energy_figure(_spectra(run))


def _draw_rank_loss(run: Run) -> go.Figure:
    sweep = pruning.rank_sweep(run.handle, run.text, run.integers("ranks"), run.cache, on_progress=run.on_progress)
    return rank_loss_figure(run.keep("sweep", sweep))


def _print(args: argparse.Namespace) -> object:
    done = run(args.model, progress=False)
    handle, result = done.model, done.value
    keys = ("name", "kind", "layer", "shape", "alpha", "xmin", "ks_distance", "n_tail", "stable_rank", "spectral_norm")
    return {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "matrices": [
            {
                **{k: getattr(m, k) for k in keys},
                "effective_rank": m.effective_rank,
                "kurtosis": m.kurtosis,
                "std": m.std,
            }
            for m in result.matrices
        ],
    }


VIEW = register(
    View(
        key="spectra",
        title="Weight spectra",
        summary="power-law tails, alpha across layers, low rank and fine-tuning updates",
        icon="show_chart",
        group="Weights",
        page="app_pages/8_Weight_spectra.py",
        caption=(
            "The eigenvalues of WᵀW of a trained matrix leave the Marchenko-Pastur bulk of a random one and end in a "
            "power-law tail; its exponent alpha says how well trained the layer is (Martin and Mahoney; WeightWatcher). "
            "Most of the energy sits in a few directions: low rank is everywhere."
        ),
        commands=(
            Command("weights", "spectra and power-law fits of every block weight matrix", model_argument, _print),
        ),
        figures=(
            Figure("esd", _draw_esd, (spectra,)),
            Figure("alpha_by_layer", _draw_alpha, (spectra,)),
            Figure("rank_energy", _draw_energy, (spectra,)),
            Figure("rank_loss", _draw_rank_loss, (pruning,)),
        ),
    )
)
