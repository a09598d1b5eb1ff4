"""Command-line interface: the same probes as the dashboard, printing JSON on stdout."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Callable

import numpy as np

from probes import ablation, activations, attention, compress, heads, moefication, routing, spectra, structured
from probes.activations import Thresholds
from probes.builtin import BUILTINS, DERIVED
from probes.cache import ResultCache
from probes.errors import LmscopeError
from probes.models import info, load
from probes.nll import perplexity, token_nll
from probes.settings import settings
from probes.text import encode


def to_json(value: object) -> object:
    """Plain JSON values from numpy arrays and scalars; NaN and infinities become null."""
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def _list_models(args: argparse.Namespace) -> object:
    return [dataclasses.asdict(info(load(name))) for name in [*BUILTINS, *DERIVED]]


def _prepare(args: argparse.Namespace) -> object:
    prepared = []
    for name in args.model or [*BUILTINS, *DERIVED]:
        handle = load(name)
        prepared.append(
            {"name": name, "fingerprint": handle.fingerprint, "load_seconds": round(handle.load_seconds, 2)}
        )
    return prepared


def _attention(args: argparse.Namespace) -> object:
    handle = load(args.model)
    if (args.layer is None) != (args.head is None):
        raise LmscopeError("Give both --layer and --head to print one head's map.")
    if args.logits and args.layer is None:
        raise LmscopeError("--logits prints one head's pre-softmax scores: give --layer and --head too.")
    result = attention.run(handle, args.text, ResultCache(), with_logits=args.logits).value
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
        if args.logits:
            out["logits"] = result.logits[args.layer, args.head].astype(np.float32)
    return out


def _heads(args: argparse.Namespace) -> object:
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


def _window(args: argparse.Namespace) -> object:
    loss = structured.window_nll(load(args.model), args.text, args.window, args.sinks)
    return dataclasses.asdict(loss)


def _activations(args: argparse.Namespace) -> object:
    if not 1 <= args.top <= activations.TOP:
        raise LmscopeError(f"--top must be between 1 and {activations.TOP}; got {args.top}.")
    handle = load(args.model)
    result = activations.run(handle, args.text, ResultCache()).value
    thresholds = Thresholds(args.min_magnitude, args.min_ratio)
    return {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "token_ids": result.token_ids,
        "tokens": result.tokens,
        "layers": [
            {
                "layer": layer,
                "max_abs": result.max_abs[layer],
                "median_abs": result.median_abs[layer],
                "top": [
                    {
                        "position": result.top_positions[layer, j],
                        "dim": result.top_dims[layer, j],
                        "value": result.top_values[layer, j],
                    }
                    for j in range(args.top)
                ],
            }
            for layer in range(result.n_layers)
        ],
        "thresholds": dataclasses.asdict(thresholds),
        "massive": [dataclasses.asdict(m) for m in activations.massive(result, thresholds)],
    }


def _ablate(args: argparse.Namespace) -> object:
    handle = load(args.model)
    thresholds = Thresholds(args.min_magnitude, args.min_ratio)
    done = ablation.run(handle, args.text, thresholds, ResultCache(), everywhere=args.everywhere).value
    return {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "tokens": done.tokens,
        "thresholds": {"min_magnitude": done.min_magnitude, "min_ratio": done.min_ratio},
        "everywhere": done.everywhere,
        "ablated": [
            {"layer": layer, "position": position, "dim": dim, "value": value, "mean": mean}
            for layer, position, dim, value, mean in zip(
                done.layers, done.positions, done.dims, done.values, done.means
            )
        ],
        "nll_base": done.nll_base.mean(),
        "nll_massive_zeroed": done.nll_zeroed.mean(),
        "nll_massive_mean": done.nll_mean.mean(),
        "nll_random_zeroed": done.nll_random.mean(),
        "nll_random_draws": done.nll_random.mean(axis=1),
        "perplexity_base": perplexity(done.nll_base),
        "perplexity_massive_zeroed": perplexity(done.nll_zeroed),
    }


def _weights(args: argparse.Namespace) -> object:
    handle = load(args.model)
    result = spectra.run(handle, ResultCache()).value
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


def _compress(args: argparse.Namespace) -> object:
    if args.bits is not None:
        compression = compress.Compression("quantize", args.bits)
    else:
        sparsity = 0.5 if args.sparsity is None else args.sparsity  # only --semi-structured leaves it unset
        compression = compress.Compression("prune-2:4" if args.semi_structured else "prune", sparsity)
    compression.check()
    handle = load(args.model)
    encoded = encode(handle, args.text, settings().max_tokens)
    base = token_nll(handle, encoded.token_ids)
    with compress.compressed(handle, compression) as smaller:
        shapes = [m.shape for m in compress.linear_weights(handle, compression.kinds)]
        nll = token_nll(smaller, encoded.token_ids)
    return {
        "model": handle.name,
        "method": compression.method,
        "amount": compression.amount,
        "bytes_per_weight": compress.bytes_per_weight(compression, shapes),
        "n_tokens": len(encoded.token_ids),
        "nll_base": base.mean(),
        "nll_compressed": nll.mean(),
        "perplexity_base": perplexity(base),
        "perplexity_compressed": perplexity(nll),
    }


def _moe(args: argparse.Namespace) -> object:
    handle = load(args.model)
    derived = handle.name == moefication.DERIVED_NAME
    asked = {"experts": args.experts, "top_k": args.k, "router": args.router}
    if not derived and any(value is not None for value in asked.values()):
        raise LmscopeError("--experts, --k and --router set the derived MoE (smollm2-135m-moefied) only.")
    chosen = {name: value for name, value in asked.items() if value is not None}
    setting = moefication.Setting(**chosen) if derived else None
    result = routing.run(handle, args.text, ResultCache(), setting).value
    out = {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "token_ids": result.token_ids,
        "tokens": result.tokens,
    }
    if setting:
        out["setting"] = dataclasses.asdict(setting)
    out["layers"] = []
    for layer in result.layers:
        balance = routing.balance(layer)
        out["layers"].append(
            {
                "layer": layer.layer,
                "router": layer.label,
                "module": layer.module,
                "kind": layer.kind,
                "rule": layer.rule,
                "n_experts": layer.n_experts,
                "top_k": layer.top_k,
                "n_shared": layer.n_shared,
                "probs": layer.probs,
                "topk_experts": layer.experts,
                "topk_weights": layer.weights,
                "load": balance.load,
                "cv": balance.cv,
                "load_entropy": balance.entropy,
                "aux_loss": balance.aux_loss,
                "dropped": balance.dropped,
            }
        )
    return out


def _thresholds(command: argparse.ArgumentParser) -> None:
    defaults = Thresholds()
    command.add_argument(
        "--min-magnitude", type=float, default=defaults.min_magnitude, help="massive: |h| above this (default 100)"
    )
    command.add_argument(
        "--min-ratio",
        type=float,
        default=defaults.min_ratio,
        help="... and above this times the layer's median |h| (default 1000)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m probes", description="lmscope probes; JSON on stdout.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list-models", help="the built-in models and the MoE derived from one").set_defaults(
        run=_list_models
    )
    prepare = commands.add_parser(
        "prepare", help="convert the built-in models into the local model store, and build the derived MoE"
    )
    prepare.add_argument("--model", action="append", help="a model to prepare (default: every built-in)")
    prepare.set_defaults(run=_prepare)
    attn = commands.add_parser("attention", help="attention maps and per-head summaries")
    attn.add_argument("--model", required=True, help="built-in name, Hugging Face id or local folder")
    attn.add_argument("--text", required=True)
    attn.add_argument("--layer", type=int)
    attn.add_argument("--head", type=int)
    attn.add_argument("--logits", action="store_true", help="also print that head's pre-softmax scores (null = masked)")
    attn.set_defaults(run=_attention)
    head_scores = commands.add_parser(
        "heads", help="induction, previous-token and sink scores on repeated random tokens"
    )
    head_scores.add_argument("--model", required=True, help="built-in name, Hugging Face id or local folder")
    head_scores.add_argument("--seq-len", type=int, default=50, help="N random tokens, shown twice (default 50)")
    head_scores.add_argument("--seed", type=int, default=0)
    head_scores.set_defaults(run=_heads)
    window = commands.add_parser("window", help="mean per-token loss with every layer limited to a sliding window")
    window.add_argument("--model", required=True, help="built-in name, Hugging Face id or local folder (a decoder)")
    window.add_argument("--text", required=True)
    window.add_argument("--window", type=int, required=True, help="tokens each query may see, itself included")
    window.add_argument(
        "--sinks", type=int, default=0, help="the first K tokens stay visible to every query (default 0)"
    )
    window.set_defaults(run=_window)
    acts = commands.add_parser("activations", help="largest residual-stream activations of every block's output")
    acts.add_argument("--model", required=True, help="built-in name, Hugging Face id or local folder")
    acts.add_argument("--text", required=True)
    acts.add_argument(
        "--top", type=int, default=10, help=f"largest-magnitude entries per layer, 1 to {activations.TOP} (default 10)"
    )
    _thresholds(acts)
    acts.set_defaults(run=_activations)
    ablate = commands.add_parser("ablate", help="loss with the massive activations zeroed, against random ones zeroed")
    ablate.add_argument("--model", required=True, help="built-in name, Hugging Face id or local folder (a decoder)")
    ablate.add_argument("--text", required=True)
    _thresholds(ablate)
    ablate.add_argument(
        "--everywhere",
        action="store_true",
        help="edit each massive entry at every layer where it is massive, not only the first",
    )
    ablate.set_defaults(run=_ablate)
    spectra_command = commands.add_parser("weights", help="spectra and power-law fits of every block weight matrix")
    spectra_command.add_argument("--model", required=True, help="built-in name, Hugging Face id or local folder")
    spectra_command.set_defaults(run=_weights)
    shrink = commands.add_parser(
        "compress", help="loss of a text after magnitude pruning or round-to-nearest quantization"
    )
    shrink.add_argument("--model", required=True, help="built-in name, Hugging Face id or local folder (a decoder)")
    shrink.add_argument("--text", required=True)
    how = shrink.add_mutually_exclusive_group(required=True)
    how.add_argument("--sparsity", type=float, help="share of each block matrix's weights set to zero, in [0, 1)")
    how.add_argument(
        "--bits", type=int, help="round-to-nearest bits per weight, one scale per output channel (2 to 16)"
    )
    how.add_argument(
        "--semi-structured", action="store_true", help="2:4 pruning: 2 of every 4 consecutive weights kept"
    )
    shrink.set_defaults(run=_compress)
    moe = commands.add_parser("moe", help="Mixture-of-Experts routing of every router on a text")
    moe.add_argument("--model", required=True, help="an MoE: Hugging Face id or local folder, or smollm2-135m-moefied")
    moe.add_argument("--text", required=True)
    moe.add_argument(
        "--experts", type=int, help=f"derived MoE: experts per MLP, one of {moefication.EXPERT_COUNTS} (16)"
    )
    moe.add_argument("--k", type=int, help="derived MoE: active experts per token (default 4)")
    moe.add_argument("--router", choices=moefication.ROUTERS, help="derived MoE: fitted router or oracle (fitted)")
    moe.set_defaults(run=_moe)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line on stderr and exit 1."""
    logging.basicConfig(level=logging.WARNING, format="lmscope: %(message)s")
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], object] = args.run
    try:
        result = command(args)
    except LmscopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    json.dump(to_json(result), sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
