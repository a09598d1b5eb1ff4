"""The pruning vs quantization view: the loss per byte of each way to shrink a model, and of dropped attention heads
(views.dropped_heads)."""

from __future__ import annotations

import argparse

import plotly.graph_objects as go

from probes import calibrated, corpus, pruning
from probes import sparse_cost as sparse_cost_probe
from probes.nll import perplexity
from results.pruning import PATTERNS, PRUNERS, QUANTIZERS, Tradeoff
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.models import load
from views import dropped_heads, sparse_cost
from views.options import model_argument
from views.registry import Command, Figure, Run, View, register
from viz.pruning import robustness_figure, tradeoff_figure
from viz.sparse_cost import sparse_cost_figure


def _tradeoff(run: Run) -> Tradeoff:
    done = pruning.tradeoff(
        run.handle,
        run.text,
        corpus.sentences()[: run.integer("sentences")],
        [s / 100 for s in run.integers("sparsities")],
        run.integers("bits"),
        run.cache,
        on_progress=run.on_progress,
        methods=run.strings("methods"),
        patterns=run.strings("patterns"),
    )
    return run.keep("tradeoff", done)


def _draw_tradeoff(run: Run) -> go.Figure:
    return tradeoff_figure(_tradeoff(run))


def _draw_robustness(run: Run) -> go.Figure:
    return robustness_figure(_tradeoff(run))


def _draw_cost(run: Run) -> go.Figure:
    layer = run.integer("cost_layer")
    return sparse_cost_figure(run.keep("sparse_cost", sparse_cost_probe.measure(run.handle, layer, run.cache)))


# The names the `prune` and `quantize` commands take for the methods, and lmscope's own.
PRUNE_METHODS = {"magnitude": "prune", "wanda": "wanda", "sparsegpt": "sparsegpt"}
QUANTIZE_METHODS = {"rtn": "quantize", "gptq": "gptq"}


def _model_and_text(command: argparse.ArgumentParser) -> None:
    model_argument(command, " (a decoder)")
    command.add_argument("--text", required=True)


def _sparsity(how: argparse._MutuallyExclusiveGroup) -> None:
    how.add_argument("--sparsity", type=float, help="share of each block matrix's weights set to zero, in [0, 1)")
    how.add_argument("--nm", choices=PATTERNS, help="N:M pruning: n of every m consecutive weights of a row kept")
    how.add_argument("--semi-structured", action="store_true", help="2:4 pruning (the same as --nm 2:4)")


def _group_and_calibration(command: argparse.ArgumentParser) -> None:
    command.add_argument("--group", type=int, default=0, help="inputs sharing a quantization scale (0: one per row)")
    command.add_argument(
        "--calibration",
        type=int,
        default=calibrated.DEFAULT_SEQUENCES,
        help="calibration sequences of corpus text read by wanda, sparsegpt and gptq",
    )
    command.add_argument(
        "--length", type=int, default=calibrated.DEFAULT_LENGTH, help="tokens per calibration sequence"
    )


def _arguments(command: argparse.ArgumentParser) -> None:
    _model_and_text(command)
    how = command.add_mutually_exclusive_group(required=True)
    _sparsity(how)
    how.add_argument("--bits", type=int, help="bits per weight (2 to 16), one scale per output row or per group")
    command.add_argument(
        "--method",
        choices=[*PRUNERS, *QUANTIZERS],
        help="prune (magnitude, the default for pruning), wanda or sparsegpt; quantize (round-to-nearest, the "
        "default for --bits) or gptq",
    )
    _group_and_calibration(command)


def _prune_arguments(command: argparse.ArgumentParser) -> None:
    _model_and_text(command)
    _sparsity(command.add_mutually_exclusive_group(required=True))
    command.add_argument("--method", choices=list(PRUNE_METHODS), default="magnitude")
    _group_and_calibration(command)


def _quantize_arguments(command: argparse.ArgumentParser) -> None:
    _model_and_text(command)
    command.add_argument("--bits", type=int, required=True, help="bits per weight (2 to 16)")
    command.add_argument("--method", choices=list(QUANTIZE_METHODS), default="rtn")
    _group_and_calibration(command)


def _prune(args: argparse.Namespace) -> object:
    return _print(argparse.Namespace(**{**vars(args), "bits": None, "method": PRUNE_METHODS[args.method]}))


def _quantize(args: argparse.Namespace) -> object:
    chosen = {"sparsity": None, "nm": None, "semi_structured": False, "method": QUANTIZE_METHODS[args.method]}
    return _print(argparse.Namespace(**{**vars(args), **chosen}))


def _print(args: argparse.Namespace) -> object:
    if args.bits is None and args.method in QUANTIZERS:
        raise LmscopeError(f"{args.method} quantizes: give it --bits (2 to 16), not a sparsity or N:M pattern.")
    if args.bits is not None and args.method in PRUNERS:
        raise LmscopeError(f"{args.method} prunes: give it --sparsity, --nm or --semi-structured, not --bits.")
    if args.bits is not None:
        compression = pruning.Compression(args.method or "quantize", args.bits, group=args.group)
    else:
        pattern = "2:4" if args.semi_structured else args.nm or ""
        sparsity = 0.5 if args.sparsity is None else args.sparsity  # N:M sets its own
        compression = pruning.Compression(args.method or "prune", sparsity, pattern=pattern, group=args.group)
    handle = load(args.model)
    calibration = (args.calibration, args.length)
    done = pruning.setting_score(handle, args.text, compression, ResultCache(), calibration).value
    return {
        "model": handle.name,
        "method": done.method,
        "amount": done.amount,
        "pattern": done.pattern,
        "group": done.group,
        "calibration_tokens": done.calibration_tokens,
        "bytes_per_weight": done.bytes_per_weight,
        "n_tokens": len(done.nll_base) + 1,
        "nll_base": done.nll_base.mean(),
        "nll_compressed": done.nll_compressed.mean(),
        "perplexity_base": perplexity(done.nll_base),
        "perplexity_compressed": perplexity(done.nll_compressed),
        "reconstruction_error": done.reconstruction_error,
        "by_domain": {
            name: {"nll_base": base, "nll_compressed": after}
            for name, base, after in zip(done.domains, done.domain_nll_base, done.domain_nll_compressed)
        },
    }


VIEW = register(
    View(
        key="pruning",
        title="Pruning vs quantization",
        summary="the loss per byte of each way to shrink a model",
        icon="compress",
        group="Weights",
        page="app_pages/9_Pruning.py",
        aliases=("Pruning_vs_quantization",),  # its URL path until December 2026
        caption=(
            "Two ways to make a model smaller, applied to a copy of it: pruning (magnitude, Wanda, SparseGPT; "
            "unstructured and N:M) and quantization (round-to-nearest, GPTQ). Pruning has had limited success "
            "(SparseGPT reaches about 50%), quantization works better: see it on the loss per byte."
        ),
        commands=(
            Command(
                "pruning",
                "loss of a text after pruning (magnitude, Wanda, SparseGPT) or quantization (round-to-nearest, GPTQ)",
                _arguments,
                _print,
                aliases=("compress",),  # its name before 2026-12
            ),
            Command(
                "prune",
                "loss of a text after pruning by magnitude, Wanda or SparseGPT (the pruning command's pruning half)",
                _prune_arguments,
                _prune,
            ),
            Command(
                "quantize",
                "loss of a text after quantization by round-to-nearest or GPTQ (the pruning command's other half)",
                _quantize_arguments,
                _quantize,
            ),
            dropped_heads.COMMAND,
            sparse_cost.COMMAND,
        ),
        figures=(
            Figure("pruning_tradeoff", _draw_tradeoff, (pruning,)),
            Figure("pruning_methods", _draw_tradeoff, (pruning,)),
            Figure("pruning_robustness", _draw_robustness, (pruning,)),
            Figure("sparse_cost", _draw_cost, (sparse_cost_probe,)),
            *dropped_heads.FIGURES,
        ),
    )
)
