"""The concepts view: a word's vector as a sparse combination of a few atoms of a dictionary learned on the model's
word vectors (Arora et al. 2018)."""

from __future__ import annotations

import argparse

import plotly.graph_objects as go

from probes import concepts
from runtime.cache import ResultCache
from runtime.models import load
from views.options import model_argument
from views.registry import Command, Figure, Run, View, register
from viz.concepts import concept_figure

EMBEDDINGS = "embeddings"  # the layer option that means the input embedding matrix


def _draw(run: Run) -> go.Figure:
    layer = None if run.option("layer") == EMBEDDINGS else run.integer("layer")
    found = run.keep("dictionary", concepts.dictionary(run.handle, run.cache, layer, run.on_progress))
    word = run.keep("word", concepts.decompose(run.handle, run.string("word"), found, run.integer("atoms"), run.cache))
    return concept_figure(word, found)


def _arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command)
    command.add_argument("--word", required=True, help="the word to decompose")
    command.add_argument(
        "--layer", type=int, default=None, help="a block whose output to decompose (default: the token embeddings)"
    )
    command.add_argument(
        "--atoms",
        type=int,
        default=concepts.DEFAULT_ATOMS,
        help=f"atoms in the word's sparse code (default {concepts.DEFAULT_ATOMS})",
    )


def _print(args: argparse.Namespace) -> object:
    handle = load(args.model)
    cache = ResultCache()
    found = concepts.dictionary(handle, cache, args.layer).value
    word = concepts.decompose(handle, args.word, found, args.atoms, cache).value
    return {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "layer": found.layer,
        "word": word.word,
        "tokens": word.tokens,
        "atoms": [
            {"atom": atom, "coefficient": a, "share": share, "tokens": found.labels[atom]}
            for atom, a, share in zip(word.atoms.tolist(), word.coefficients.tolist(), word.shares.tolist())
        ],
        "reconstruction_error": word.reconstruction_error,
        "residual_share": word.residual_share,
        "fit": {
            "source": found.source,
            "n_atoms": found.n_atoms,
            "n_nonzero": found.n_nonzero,
            "n_candidates": found.n_candidates,
            "n_fitted": len(found.fit_token_ids),
            "n_heldout": found.n_heldout,
            "heldout_nonzeros": found.heldout_nonzeros,
            "heldout_error": found.heldout_error,
            "fit_error": found.fit_error,
            "fit_seconds": found.fit_seconds,
        },
    }


VIEW = register(
    View(
        key="concepts",
        title="Concepts",
        summary="a word as a sparse combination of a few learned concept atoms",
        icon="hub",
        group="Activations",
        page="app_pages/12_Concepts.py",
        caption=(
            "Concepts may span a low-dimensional subspace: “apple” = 0.09 “dessert” + 0.11 “organism” + 0.16 “fruit” + "
            "0.22 “mobile&IT” + 0.42 “others”. Learn a dictionary of atoms on the model's word vectors and write any word as "
            "a few of them plus a residual (Arora et al. 2018; today's sparse dictionaries of the residual stream)."
        ),
        commands=(
            Command("concepts", "a word's sparse code over a dictionary learned on the model", _arguments, _print),
        ),
        figures=(Figure("concept_decomposition", _draw, (concepts,)),),
    )
)
