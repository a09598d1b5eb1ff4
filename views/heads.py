"""The head atlas view: every head scored for each type the lecture names, its offset profile, and how mixed it is."""

from __future__ import annotations

import argparse

import numpy as np
import plotly.graph_objects as go

from probes import attention, heads
from results.attention import AttentionResult
from results.heads import HeadTypes
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.models import load
from views.api import Model, Result, call
from views.options import model_argument
from views.registry import Command, Figure, Run, View, register
from viz.attention import SUMMARY_LABELS, attention_heatmap, head_grid
from viz.heads import offset_profile, type_counts

# The scores of the head types (heads.THRESHOLDS), by their URL name; the others (attention.SUMMARIES) are on the text.
TYPE_SCORES = {
    "induction": "induction",
    "reverse_induction": "reverse induction",
    "duplicate_token": "duplicate token",
    "previous_token_random": "previous-token",
    "previous_k": "previous-k",
    "next_token": "next-token",
    "sink_share": "sink",
    "delimiter_share": "delimiter",
}
MIXED_SCORES = {
    "types_passed": "Types passed: how many type thresholds the head reaches (2 or more: mixed)",
    "type_entropy": "Type entropy: how evenly the head's normalised type scores are spread (0 to 1)",
}
RANDOM_SCORES = {
    "induction": "Induction: weight on the token after the earlier occurrence (random tokens repeated)",
    "reverse_induction": "Reverse induction: weight on the token before the earlier occurrence (random tokens, "
    "then reversed)",
    "duplicate_token": "Duplicate token: weight on the earlier occurrence of the same token (random tokens repeated)",
    "previous_token_random": "Previous-token share on random tokens repeated",
    "previous_k": "Previous-k: the most weight on one key 2 to 8 tokens back (random tokens repeated)",
    "next_token": "Next-token: weight on the next token (random tokens repeated; encoders only)",
}
SCORES = (*RANDOM_SCORES, *MIXED_SCORES, *attention.SUMMARIES)
_ENCODER_LABELS = {"sink_share": "Attention to [CLS] (first token)", "special_share": "Attention to [SEP]"}
_UNBOUNDED = ("mean_distance", "entropy", "types_passed")


def score_label(score: str, causal: bool = True) -> str:
    """How the atlas names a score (an encoder's first and special tokens are [CLS] and [SEP])."""
    if not causal and score in _ENCODER_LABELS:
        return _ENCODER_LABELS[score]
    return RANDOM_SCORES.get(score) or MIXED_SCORES.get(score) or SUMMARY_LABELS[score] + " (your text)"


def score_values(score: str, on_text: AttentionResult | None, kinds: HeadTypes) -> np.ndarray:
    """(layers, heads) values of one of the atlas's scores."""
    if score == "types_passed":
        return kinds.count.astype(np.float32)
    if score == "type_entropy":
        return kinds.entropy.astype(np.float32)
    if score in RANDOM_SCORES:
        return kinds.score(TYPE_SCORES[score])
    if score in attention.SUMMARIES and on_text is not None:
        return getattr(on_text, score)
    raise LmscopeError(f"Unknown head score '{score}' (or it needs a text): choose one of {', '.join(SCORES)}.")


def atlas_figure(score: str, on_text: AttentionResult, kinds: HeadTypes, causal: bool = True) -> go.Figure:
    """The (layers, heads) grid of one score, each cell noted with every type its head passes."""
    return head_grid(
        score_values(score, on_text, kinds),
        score_label(score, causal).split(":")[0],
        score.replace("_", " "),
        None if score in _UNBOUNDED else 1.0,
        notes=kinds.labels,
    )


def top_head(values: np.ndarray) -> tuple[int, int]:
    """The (layer, head) of the largest value, NaN ignored."""
    layer, head = np.unravel_index(int(np.nanargmax(values)), values.shape)
    return int(layer), int(head)


def _results(run: Run) -> tuple[AttentionResult, dict[str, AttentionResult], HeadTypes]:
    """Attention on the request's text, on the random tokens repeated and reversed, and the head types."""
    if not run.text_value:
        raise LmscopeError(f"{run.label} needs a text: the head types use the text's sink and delimiter scores.")
    seq_len, seed = run.integer("seq_len"), run.integer("seed")
    on_text = run.keep("text", attention.run(run.handle, run.text, run.cache))
    random = {
        "random": run.keep("random", heads.run(run.handle, run.cache, seq_len, seed)),
        "reversed": run.keep("reversed", heads.run(run.handle, run.cache, seq_len, seed, reverse=True)),
    }
    return on_text, random, heads.classify(on_text, random["random"], random["reversed"])


def _draw_specialised_head(run: Run) -> go.Figure:
    on_text, random, kinds = _results(run)
    layer, head = top_head(score_values(run.string("score"), on_text, kinds))
    run.pick(layer=layer, head=head)
    return attention_heatmap(random.get(run.string("on"), on_text), layer, head)


def _draw_atlas(run: Run) -> go.Figure:
    on_text, _, kinds = _results(run)
    return atlas_figure(run.string("score"), on_text, kinds, run.handle.is_causal)


def _draw_offsets(run: Run) -> go.Figure:
    on_text, _, kinds = _results(run)
    layer, head = top_head(score_values(run.string("score"), on_text, kinds))
    run.pick(layer=layer, head=head)
    return offset_profile(kinds, layer, head)


def _draw_types(run: Run) -> go.Figure:
    return type_counts(_results(run)[2])


def run(
    model: Model,
    text: str,
    *,
    seq_len: int = 50,
    seed: int = 0,
    cache: ResultCache | None = None,
    progress: bool = True,
) -> Result[HeadTypes]:
    """Every head's type scores on the text and on random tokens (`probes.heads.types_of`); its figure counts each
    type's heads, alone and mixed: `.figure()`."""
    return call(
        model,
        lambda handle, store, _: heads.types_of(handle, text, store, seq_len, seed),
        type_counts,
        cache,
        progress,
        "head types",
    )


def _arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command)
    command.add_argument("--text", help="the text of the sink and delimiter scores; with it, every head's types")
    command.add_argument("--seq-len", type=int, default=50, help="N random tokens, shown twice (default 50)")
    command.add_argument("--seed", type=int, default=0)


def _print(args: argparse.Namespace) -> object:
    handle = load(args.model)
    cache = ResultCache()
    result = heads.run(handle, cache, args.seq_len, args.seed).value
    reversed_ = heads.run(handle, cache, args.seq_len, args.seed, reverse=True).value
    offsets, profile = heads.profile(result)
    printed: dict[str, object] = {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "seq_len": args.seq_len,
        "seed": args.seed,
        "token_ids": result.token_ids,
        "n_layers": result.n_layers,
        "n_heads": result.n_heads,
        "induction": result.scores["induction"],
        "reverse_induction": reversed_.scores["reverse induction"],
        "duplicate_token": result.scores["duplicate token"],
        "previous_token": result.previous_token,
        "offsets": offsets,
        "offset_profile": profile,
        "sink_share": result.sink_share,
    }
    if args.text is not None:
        kinds = heads.classify(attention.run(handle, args.text, cache).value, result, reversed_)
        printed |= {
            "thresholds": dict(zip(kinds.types, kinds.thresholds.tolist(), strict=True)),
            "type_scores": dict(zip(kinds.types, kinds.scores, strict=True)),
            "types": kinds.labels.tolist(),
            "types_passed": kinds.count,
            "type_entropy": kinds.entropy,
            "dominant_offset": kinds.dominant_offset,
        }
    return printed


VIEW = register(
    View(
        key="heads",
        title="Head atlas",
        summary="every head type: induction, previous-k, duplicate, sink, delimiter; and the mixed heads",
        icon="apps",
        group="Attention",
        page="app_pages/2_Head_atlas.py",
        caption=(
            "Specialised heads (Clark et al. 2019; Olsson et al. 2022; Wang et al. 2022). Induction, duplicate-token "
            "and offset scores are measured the standard way, on random tokens repeated twice (reverse induction on "
            "random tokens then reversed); sink and delimiter shares on your text. Many heads pass more than one "
            "type: the lecture's mixed heads (superposition)."
        ),
        commands=(
            Command("heads", "every head's type scores, offset profile and (with --text) types", _arguments, _print),
        ),
        figures=(
            Figure("specialised_head", _draw_specialised_head, (attention, heads)),
            Figure("head_atlas", _draw_atlas, (attention, heads)),
            Figure("offset_profile", _draw_offsets, (attention, heads)),
            Figure("type_counts", _draw_types, (attention, heads)),
        ),
    )
)
