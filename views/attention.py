"""The attention view: every layer's and head's attention map on the user's text, with per-head summaries."""

from __future__ import annotations

import argparse

import numpy as np
import plotly.graph_objects as go

from probes import attention
from results.attention import AttentionResult
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from views.api import Model, Result, call
from views.options import model_argument
from views.registry import Command, View, register
from viz.attention import attention_heatmap


def heatmap(result: AttentionResult, layer: int = 0, head: int = 0, logits: bool = False) -> go.Figure:
    """One head's attention map (or its pre-softmax scores), as the page draws it."""
    result.check_head(layer, head)
    return attention_heatmap(result, layer, head, logits=logits)


def run(
    model: Model, text: str, *, with_logits: bool = False, cache: ResultCache | None = None, progress: bool = True
) -> Result[AttentionResult]:
    """Every layer's and head's attention on the text with per-head summaries (`attention.SUMMARIES`); its
    figure is one head's map: `.figure(layer=3, head=1, logits=False)`."""
    return call(
        model,
        lambda handle, store, _: attention.run(handle, text, store, with_logits=with_logits),
        heatmap,
        cache,
        progress,
        "attention",
    )


def _arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command)
    command.add_argument("--text", required=True)
    command.add_argument("--layer", type=int)
    command.add_argument("--head", type=int)
    command.add_argument(
        "--logits", action="store_true", help="also print that head's pre-softmax scores (null = masked)"
    )


def _print(args: argparse.Namespace) -> object:
    if (args.layer is None) != (args.head is None):
        raise LmscopeError("Give both --layer and --head to print one head's map.")
    if args.logits and args.layer is None:
        raise LmscopeError("--logits prints one head's pre-softmax scores: give --layer and --head too.")
    done = run(args.model, args.text, with_logits=args.logits, progress=False)
    handle, result = done.model, done.value
    out = {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "token_ids": result.token_ids,
        "tokens": result.tokens,
        "n_layers": result.n_layers,
        "n_heads": result.n_heads,
        "pool": result.pool,
        **{k: getattr(result, k) for k in attention.SUMMARIES},
    }
    if args.layer is not None:
        result.check_head(args.layer, args.head)
        out.update(layer=args.layer, head=args.head, map=result.maps[args.layer, args.head].astype(np.float32))
        if args.logits and result.logits is not None:
            out["logits"] = result.logits[args.layer, args.head].astype(np.float32)
    return out


VIEW = register(
    View(
        key="attention",
        title="Attention",
        summary="heatmaps of every layer and head",
        icon="grid_on",
        group="Attention",
        page="app_pages/1_Attention.py",
        caption="Where each token looks. Rows are queries (the attending token), columns keys; each row sums to 1.",
        commands=(Command("attention", "attention maps and per-head summaries", _arguments, _print),),
    )
)
