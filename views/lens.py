"""The logit lens view: each layer's residual stream read out as the model's prediction, position by position."""

from __future__ import annotations

import argparse

import numpy as np
import plotly.graph_objects as go

from probes import activations, attribution, lens
from probes.batches import Progress
from results.activations import ActivationResult, Thresholds
from results.lens import LensResult, LogitAttribution
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from views.api import Model, Result, call, model_of
from views.options import model_argument
from views.registry import Command, Figure, Run, View, register
from viz.lens import attribution_figure, lens_by_layer, lens_grid


def massive_dims(result: ActivationResult) -> list[int]:
    """The residual features that hold a massive activation (at the default thresholds), in order."""
    return sorted({m.dim for m in activations.massive(result, Thresholds())})


def massive_features(handle: ModelHandle, text: str, cache: ResultCache) -> list[int]:
    """The residual features that hold a massive activation on the text (`massive_dims`)."""
    return massive_dims(activations.run(handle, text, cache).value)


def run(
    model: Model,
    text: str,
    *,
    zeroed: list[int] | None = None,
    cache: ResultCache | None = None,
    progress: bool = True,
) -> Result[LensResult]:
    """The logit lens of the model on the text (features in `zeroed` set to 0 before each readout); its figure is
    the grid of each layer's top token per position: `.figure(colour="next_prob", start=0)`."""
    return call(
        model,
        lambda handle, store, on_progress: lens.run(handle, text, store, zeroed or (), on_progress),
        lens_grid,
        cache,
        progress,
        "lens",
    )


TARGETS = ("1", "2", "3", "4", "5", "next")  # the model's k-th most likely next token, or the one that comes next


def target_id(result: LensResult, position: int, target: str) -> int:
    """The token an attribution explains: the model's k-th most likely next token at the position ("1" to "5"), or
    the token that really comes next ("next"); a clear error for a choice the position does not have."""
    result.check_position(position)
    if target == "next":
        if position == len(result.tokens) - 1:
            raise LmscopeError("The last position has no next token: choose one of the model's predictions.")
        return int(result.token_ids[position + 1])
    if target not in TARGETS:
        raise LmscopeError(f"The target must be one of {', '.join(TARGETS)}; got {target!r}.")
    return int(result.top_ids[-1, position, int(target) - 1])


def attribute(
    model: Model,
    text: str,
    position: int = -1,
    target: str = "1",
    *,
    cache: ResultCache | None = None,
    progress: bool = True,
) -> Result[LogitAttribution]:
    """Direct logit attribution at `position` (-1: the last) toward the model's `target`-th most likely next token
    ("1" to "5") or the token that really comes next ("next"): what the embeddings, each head and each MLP add to
    its logit; its figure is the heads' grid beside the MLPs' bars."""

    def probe(handle: ModelHandle, store: ResultCache, on_progress: Progress | None) -> Cached[LogitAttribution]:
        read = lens.run(handle, text, store, (), on_progress).value
        at = position + len(read.tokens) if -len(read.tokens) <= position < 0 else position  # -1: the last
        return attribution.run(handle, read.token_ids.tolist(), at, target_id(read, at, target), store)

    return call(model, probe, attribution_figure, cache, progress, "attribution")


def _zeroed(run: Run) -> list[int]:
    """The features a preset zeroes: none, or the text's massive ones (`zero_massive`)."""
    if not run.flag("zero_massive"):
        return []
    return massive_features(run.handle, run.text, run.cache)


def _draw_by_layer(run: Run) -> go.Figure:
    return lens_by_layer(run.keep("lens", lens.run(run.handle, run.text, run.cache, _zeroed(run), run.on_progress)))


def _lens_arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command, " (a decoder)")
    command.add_argument("--text", required=True)
    command.add_argument("--top", type=int, default=1, help=f"tokens per layer and position, 1 to {lens.TOP}")
    command.add_argument(
        "--zero", default="", help="residual features to zero before each readout (comma-separated), or 'massive'"
    )


def _print_lens(args: argparse.Namespace) -> object:
    if not 1 <= args.top <= lens.TOP:
        raise LmscopeError(f"--top must be between 1 and {lens.TOP}; got {args.top}.")
    zero = args.zero.strip()
    handle = model_of(args.model)
    if zero == "massive":
        zeroed = massive_features(handle, args.text, ResultCache())
    else:
        try:
            zeroed = [int(f) for f in zero.split(",") if f.strip()]
        except ValueError as exc:
            raise LmscopeError(
                f"--zero takes feature numbers separated by commas, or 'massive'; got {zero!r}."
            ) from exc
    done = run(handle, args.text, zeroed=zeroed, progress=False)
    result = done.value
    return {
        "model": result.model,
        "fingerprint": result.fingerprint,
        "tokens": result.tokens,
        "zeroed": result.zeroed,
        "layers": [
            {
                "layer": row - 1,
                "top_tokens": result.top_tokens[row, :, : args.top].tolist(),
                "top_probs": result.top_probs[row, :, : args.top],
                "next_prob": result.next_prob[row],
                "next_rank": result.next_rank[row],
                "entropy": result.entropy[row],
                "kl_final": result.kl_final[row],
                "mean_next_prob": float(np.mean(result.next_prob[row])),
                "mean_kl_final": float(np.mean(result.kl_final[row])),
            }
            for row in range(result.n_layers + 1)
        ],
    }


def _attribute_arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command, " (a decoder with llama-style blocks)")
    command.add_argument("--text", required=True)
    command.add_argument("--position", type=int, default=-1, help="the position read (default -1: the last)")
    command.add_argument(
        "--target", default="1", help="the model's k-th most likely next token (1 to 5, default 1), or 'next'"
    )


def _print_attribution(args: argparse.Namespace) -> object:
    result = attribute(args.model, args.text, args.position, args.target, progress=False).value
    return {
        "model": result.model,
        "fingerprint": result.fingerprint,
        "tokens": result.tokens,
        "position": result.position,
        "target_id": result.target_id,
        "target": result.target,
        "logit": result.logit,
        "embedding": result.embedding,
        "heads": result.heads,
        "attention_bias": result.attention_bias,
        "mlps": result.mlps,
        "total": result.total,
    }


VIEW = register(
    View(
        key="lens",
        title="Logit lens",
        summary="what each layer would predict: the residual stream read out through the final norm and unembedding",
        icon="visibility",
        group="Activations",
        page="app_pages/14_Logit_lens.py",
        caption=(
            "Each block's output read out as if it were the last (nostalgebraist 2020): through the model's final norm "
            "and unembedding. Early layers mostly echo the input token; the prediction forms in the upper half."
        ),
        commands=(
            Command(
                "lens", "each layer's residual stream read out as next-token predictions", _lens_arguments, _print_lens
            ),
            Command(
                "attribute",
                "what each head and MLP adds to one next token's logit (direct logit attribution)",
                _attribute_arguments,
                _print_attribution,
            ),
        ),
        figures=(Figure("lens_by_layer", _draw_by_layer, (lens,)),),
    )
)
