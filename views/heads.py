"""The head atlas view: every head scored for a type (induction, previous-token, sink, delimiter)."""

from __future__ import annotations

import argparse

import numpy as np
import plotly.graph_objects as go

from probes import attention, heads
from results.attention import AttentionResult
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.models import load
from views.options import model_argument
from views.registry import Command, Figure, Run, View, register
from viz.attention import SUMMARY_LABELS, attention_heatmap, head_grid

# The scores measured on random tokens repeated twice; the others (attention.SUMMARIES) on the user's text.
RANDOM_SCORES = {
    "induction": "Induction: weight on the token after the earlier occurrence (random tokens repeated)",
    "previous_token_random": "Previous-token share on random tokens repeated",
}
SCORES = (*RANDOM_SCORES, *attention.SUMMARIES)
# The head type whose threshold (heads.THRESHOLDS) a score is measured against.
SCORE_TYPES = {
    "induction": "induction",
    "previous_token_random": "previous-token",
    "sink_share": "sink",
    "delimiter_share": "delimiter",
}
_ENCODER_LABELS = {"sink_share": "Attention to [CLS] (first token)", "special_share": "Attention to [SEP]"}
_UNBOUNDED = ("mean_distance", "entropy")


def score_label(score: str, causal: bool = True) -> str:
    """How the atlas names a score (an encoder's first and special tokens are [CLS] and [SEP])."""
    if not causal and score in _ENCODER_LABELS:
        return _ENCODER_LABELS[score]
    return RANDOM_SCORES.get(score) or SUMMARY_LABELS[score] + " (your text)"


def score_values(score: str, on_text: AttentionResult | None, on_random: AttentionResult) -> np.ndarray:
    """(layers, heads) values of one of the atlas's scores."""
    if score == "induction":
        return on_random.scores["induction"]
    if score == "previous_token_random":
        return on_random.previous_token
    if score in attention.SUMMARIES and on_text is not None:
        return getattr(on_text, score)
    raise LmscopeError(f"Unknown head score '{score}' (or it needs a text): choose one of {', '.join(SCORES)}.")


def atlas_figure(score: str, on_text: AttentionResult, on_random: AttentionResult, causal: bool = True) -> go.Figure:
    """The (layers, heads) grid of one score, each cell noted with its head type."""
    return head_grid(
        score_values(score, on_text, on_random),
        score_label(score, causal).split(":")[0],
        score.replace("_", " "),
        None if score in _UNBOUNDED else 1.0,
        notes=heads.head_types(on_text, on_random),
    )


def top_head(values: np.ndarray) -> tuple[int, int]:
    """The (layer, head) of the largest value, NaN ignored."""
    layer, head = np.unravel_index(int(np.nanargmax(values)), values.shape)
    return int(layer), int(head)


def _results(run: Run) -> tuple[AttentionResult | None, AttentionResult]:
    """Attention on the request's text (if it has one) and on the repeated random tokens."""
    seq_len, seed = run.integer("seq_len"), run.integer("seed")
    on_random = run.keep("random", heads.run(run.handle, run.cache, seq_len, seed))
    on_text = run.keep("text", attention.run(run.handle, run.text, run.cache)) if run.text_value else None
    return on_text, on_random


def _draw_specialised_head(run: Run) -> go.Figure:
    on_text, on_random = _results(run)
    layer, head = top_head(score_values(run.string("score"), on_text, on_random))
    run.pick(layer=layer, head=head)
    shown = on_random if run.string("on") == "random" else on_text
    if shown is None:
        raise LmscopeError(f"{run.label} draws its head on a text but has none.")
    return attention_heatmap(shown, layer, head)


def _draw_atlas(run: Run) -> go.Figure:
    on_text, on_random = _results(run)
    if on_text is None:
        raise LmscopeError(f"{run.label} needs a text: the head types use the text's sink scores.")
    return atlas_figure(run.string("score"), on_text, on_random, run.handle.is_causal)


def _arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command)
    command.add_argument("--seq-len", type=int, default=50, help="N random tokens, shown twice (default 50)")
    command.add_argument("--seed", type=int, default=0)


def _print(args: argparse.Namespace) -> object:
    handle = load(args.model)
    result = heads.run(handle, ResultCache(), args.seq_len, args.seed).value
    return {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "seq_len": args.seq_len,
        "seed": args.seed,
        "token_ids": result.token_ids,
        "n_layers": result.n_layers,
        "n_heads": result.n_heads,
        "induction": result.scores["induction"],
        "previous_token": result.previous_token,
        "sink_share": result.sink_share,
    }


VIEW = register(
    View(
        key="heads",
        title="Head atlas",
        summary="induction, previous-token, sink and delimiter heads",
        icon="apps",
        group="Attention",
        page="app_pages/2_Head_atlas.py",
        caption=(
            "Specialised heads (Clark et al. 2019; Olsson et al. 2022). Induction and previous-token scores are measured "
            "the standard way, on random tokens repeated twice; the other scores on your text."
        ),
        commands=(
            Command("heads", "induction, previous-token and sink scores on repeated random tokens", _arguments, _print),
        ),
        figures=(
            Figure("specialised_head", _draw_specialised_head, (attention, heads)),
            Figure("head_atlas", _draw_atlas, (attention, heads)),
        ),
    )
)
