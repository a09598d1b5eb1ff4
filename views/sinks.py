"""The attention sinks view: how much attention lands on the first tokens, on the user's text and over a corpus."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import plotly.graph_objects as go

from probes import attention, corpus, sink_effect, sinks
from results.attention import AttentionResult
from results.sinks import SinkNorms
from runtime.cache import Cached, ResultCache
from runtime.handle import ModelHandle
from runtime.models import load
from views.api import Model, Result, call
from views.compare import depth_figure
from views.options import model_argument
from views.registry import Command, Figure, Run, View, register
from viz.sink_effect import first_key_losses, sink_norms
from viz.sinks import corpus_maps, sink_mechanism, sink_share_by_layer


def share_figure(result: AttentionResult, k: int = 4) -> go.Figure:
    """Per layer, the attention on the first token (and on the first k) against an even spread."""
    return sink_share_by_layer(sinks.sink_profile(result), sinks.first_k_share(result, k), k)


def sink_attention(handle: ModelHandle, text: str, cache: ResultCache) -> Cached[AttentionResult]:
    """The attention on the text with its logits, which every sink figure reads: the shares and the logit lead
    come from one pass (the logits are pooled as the maps are, so they cost at most as much again)."""
    return attention.run(handle, text, cache, with_logits=True)


def run(model: Model, text: str, *, cache: ResultCache | None = None, progress: bool = True) -> Result[AttentionResult]:
    """The attention on the text (with its logits), whose sink statistics `probes.sinks.sink_profile` reads; its
    figure is the share of attention on the first token (and the first k) by layer: `.figure(k=4)`."""
    return call(
        model, lambda handle, store, _: sink_attention(handle, text, store), share_figure, cache, progress, "sinks"
    )


def shown_layers(wanted: Sequence[int], n_layers: int) -> list[int]:
    """The layers asked for, or the page's defaults on a model that lacks some of them."""
    chosen = sorted(set(wanted))
    return chosen if chosen and all(0 <= i < n_layers for i in chosen) else sinks.default_layers(n_layers)


def _draw_corpus_maps(run: Run) -> go.Figure:
    layers = shown_layers(run.integers("layers"), run.handle.n_layers)
    run.use("layers", layers)
    averaged = sinks.corpus_attention(
        run.handle,
        corpus.sentences(),
        run.cache,
        n_tokens=run.integer("tokens"),
        limit=run.integer("sentences"),
        on_progress=run.on_progress,
    )
    run.pick(layers=",".join(map(str, layers)))
    return corpus_maps(run.keep("corpus", averaged), layers, logits=run.flag("logits"))


def _draw_mechanism(run: Run) -> go.Figure:
    exact = run.keep("attention", sink_attention(run.handle, run.text, run.cache))
    lead = sinks.logit_lead(exact)
    run.results["lead"] = lead
    return sink_mechanism(exact.model, exact.sink_share, lead, len(exact.tokens))


def _draw_norms(run: Run) -> go.Figure:
    return sink_norms(run.keep("norms", sink_effect.norms(run.handle, run.text, run.cache)))


def _draw_masked(run: Run) -> go.Figure:
    masked = sink_effect.first_key_masked(
        run.handle, run.text, run.cache, run.integer("mask_window"), run.integer("mask_sinks")
    )
    return first_key_losses(run.keep("masked", masked))


def _why_arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command)
    command.add_argument("--text", required=True)
    command.add_argument("--window", type=int, default=sink_effect.DEFAULT_WINDOW, help="sliding window (tokens)")
    command.add_argument("--sinks", type=int, default=sink_effect.DEFAULT_SINKS, help="first tokens kept in it")


def _print_why(args: argparse.Namespace) -> object:
    handle, cache = load(args.model), ResultCache()
    norms = sink_effect.norms(handle, args.text, cache).value
    printed: dict[str, object] = {"model": handle.name, "tokens": norms.tokens}
    printed |= {name: getattr(norms, name) for name in SinkNorms.MEASURES}
    if handle.is_causal:
        masked = sink_effect.first_key_masked(handle, args.text, cache, args.window, args.sinks).value
        printed |= {"window": masked.window, "sinks": masked.sinks, "losses": masked.losses}
    return printed


def _draw_share(run: Run) -> go.Figure:
    return share_figure(run.keep("attention", sink_attention(run.handle, run.text, run.cache)), run.integer("k"))


VIEW = register(
    View(
        key="sinks",
        title="Attention sinks",
        summary="how much attention lands on the first token, on your text and over a corpus",
        icon="vertical_align_bottom",
        group="Attention",
        page="app_pages/4_Attention_sinks.py",
        caption=(
            "Beyond the first layers, most heads put most of their weight on the first token: softmax must put its mass "
            "somewhere, and the first token, seen by every query, soaks it up (StreamingLLM, Xiao et al. 2023)."
        ),
        commands=(
            Command(
                "sink-why",
                "the sink's share of the weights and of the value norms per head, and the loss without its key",
                _why_arguments,
                _print_why,
            ),
        ),
        figures=(
            Figure("corpus_average_maps", _draw_corpus_maps, (sinks,)),
            Figure("sink_share", _draw_share, (attention, sinks)),
            Figure("sink_mechanism", _draw_mechanism, (attention, sinks)),
            Figure("sink_norms", _draw_norms, (sink_effect,)),
            Figure("first_key_masked", _draw_masked, (sink_effect,)),
            depth_figure("sinks_by_depth", "sinks", (attention,)),
        ),
    )
)
