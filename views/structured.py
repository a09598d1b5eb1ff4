"""The structured attention view: sliding-window, dilated and global masks, and what they cost the model."""

from __future__ import annotations

import argparse
import dataclasses

import plotly.graph_objects as go

from probes import attention, attention_cost, structured
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.models import load
from views.heads import top_head
from views.options import model_argument
from views.registry import Command, Figure, Run, View, register
from viz.attention_cost import attention_cost_figure
from viz.structured import loss_by_budget, loss_by_window, mask_panel


def _structure(run: Run) -> structured.Structure:
    return structured.Structure(
        dilation=run.integer("dilation"),
        global_positions=tuple(run.integers("global")),
        random_blocks=run.integer("random_blocks"),
        seed=run.integer("seed"),
    )


def _draw_mask_panel(run: Run) -> go.Figure:
    result = run.keep("attention", attention.run(run.handle, run.text, run.cache))
    pick = run.string("pick")
    if pick not in attention.SUMMARIES:
        raise LmscopeError(f"pick must be one of {', '.join(attention.SUMMARIES)}; got '{pick}'.")
    layer, head = top_head(getattr(result, pick))
    run.pick(layer=layer, head=head)
    masks = structured.mask_view(
        run.handle, run.text, run.integer("window"), _structure(run), run.integer("sinks"), run.cache
    )
    return mask_panel(result, run.keep("masks", masks), layer, head)


def _draw_window_loss(run: Run) -> go.Figure:
    sweep = structured.window_sweep(
        run.handle,
        run.text,
        run.integers("windows"),
        run.integer("sinks"),
        run.cache,
        run.on_progress,
    )
    return loss_by_window(run.keep("sweep", sweep), run.string("metric"))


def _draw_budget_loss(run: Run) -> go.Figure:
    sweep = structured.pattern_sweep(
        run.handle,
        run.text,
        run.strings("patterns"),
        run.integers("windows"),
        run.integer("sinks"),
        _structure(run),
        run.cache,
        run.on_progress,
    )
    return loss_by_budget(run.keep("patterns", sweep), run.string("metric"))


def _draw_cost(run: Run) -> go.Figure:
    cost = attention_cost.measure(
        run.handle, run.integers("lengths"), run.integer("cost_window"), run.cache, run.on_progress
    )
    return attention_cost_figure(run.keep("cost", cost))


def _cost_arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command, " (a decoder)")
    command.add_argument(
        "--lengths",
        default=", ".join(map(str, attention_cost.DEFAULT_LENGTHS)),
        help="context lengths in tokens (default 256, 512, 1024, 2048, 4096)",
    )
    command.add_argument(
        "--window", type=int, default=attention_cost.DEFAULT_WINDOW, help="the sliding window's tokens (default 128)"
    )


def _cost_print(args: argparse.Namespace) -> object:
    lengths = structured.parse_ints(args.lengths, "context lengths")
    cost = attention_cost.measure(load(args.model), lengths, args.window, ResultCache()).value
    exponents = {
        kind: {values: cost.exponent(kind, values) for values in ("attention_seconds", "seconds", "peak_bytes")}
        for kind in cost.kinds
    }
    return {**dataclasses.asdict(cost), "exponents": exponents}


def _arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command, " (a decoder)")
    command.add_argument("--text", required=True)
    command.add_argument(
        "--pattern", choices=list(structured.PATTERNS), default="sliding", help="the structure (default sliding)"
    )
    command.add_argument(
        "--window",
        type=int,
        required=True,
        help="tokens each query may see, itself included (block-sparse: tokens per block)",
    )
    command.add_argument(
        "--sinks", type=int, default=0, help="the first K tokens stay visible to every query (default 0)"
    )
    defaults = structured.Structure()
    command.add_argument("--dilation", type=int, default=defaults.dilation, help="dilated: keys d apart (default 2)")
    command.add_argument(
        "--global", dest="global_positions", default="", help="global and block: positions seen by all, e.g. 0,12"
    )
    command.add_argument(
        "--random-blocks", type=int, default=defaults.random_blocks, help="block: random earlier blocks (default 1)"
    )
    command.add_argument("--seed", type=int, default=defaults.seed, help="block: the random blocks' seed (default 0)")


def _print(args: argparse.Namespace) -> object:
    structure = structured.Structure(
        dilation=args.dilation,
        global_positions=tuple(structured.parse_ints(args.global_positions, "global positions")),
        random_blocks=args.random_blocks,
        seed=args.seed,
    )
    loss = structured.window_nll(load(args.model), args.text, args.window, args.sinks, args.pattern, structure)
    return dataclasses.asdict(loss)


VIEW = register(
    View(
        key="structured",
        title="Structured attention",
        summary="sliding-window, dilated, global and block-sparse masks, and what they cost the model",
        icon="filter_alt",
        group="Attention",
        page="app_pages/3_Structured_attention.py",
        caption=(
            "Sparse attention patterns for long contexts (sliding window, dilated, global + sliding, block-sparse), "
            "drawn beside a real head and then imposed on every layer of the model to see what they cost."
        ),
        commands=(
            Command(
                "window",
                "mean per-token loss with every layer under a sliding, dilated, global or block-sparse pattern",
                _arguments,
                _print,
            ),
            Command(
                "attention-cost",
                "time and peak memory of a forward pass against the context length: eager, chunked and windowed "
                "attention",
                _cost_arguments,
                _cost_print,
            ),
        ),
        figures=(
            Figure("mask_panel", _draw_mask_panel, (attention, structured)),
            Figure("window_loss", _draw_window_loss, (structured,)),
            Figure("budget_loss", _draw_budget_loss, (structured,)),
            Figure("attention_cost", _draw_cost, (attention_cost,)),
        ),
    )
)
