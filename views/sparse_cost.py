"""The cost of sparse products on this machine (a section of the pruning view): its command line."""

from __future__ import annotations

import argparse

from probes import sparse_cost
from runtime.cache import ResultCache
from runtime.models import load
from views.options import model_argument
from views.registry import Command


def _arguments(command: argparse.ArgumentParser) -> None:
    model_argument(command)
    command.add_argument("--layer", type=int, help="the block whose products are timed (default: the middle one)")


def _print(args: argparse.Namespace) -> object:
    handle = load(args.model)
    layer = handle.n_layers // 2 if args.layer is None else args.layer
    cost = sparse_cost.measure(handle, layer, ResultCache()).value
    return {
        "model": cost.model,
        "layer": cost.layer,
        "device": cost.device,
        "threads": cost.threads,
        "dtype": cost.dtype,
        "host": cost.host,
        "measured_at": cost.measured_at,
        "shapes": cost.shapes,
        "tokens": cost.tokens,
        "sparsities": cost.sparsities,
        "dense_seconds": cost.dense_seconds,
        "csr_seconds": cost.csr_seconds,
        "semi_structured_seconds": cost.semi_seconds,
        "int8_seconds": cost.int8_seconds,
        "int4_seconds": cost.int4_seconds,
        "speedup": cost.speedup(),
        "crossover": cost.crossover(),
        "dense_bytes": cost.dense_bytes,
        "csr_bytes": cost.csr_bytes,
        "int8_bytes": cost.int8_bytes,
        "int4_bytes": cost.int4_bytes,
    }


COMMAND = Command(
    "sparse-cost", "time one block's products dense and sparse (CSR, 2:4) on this machine", _arguments, _print
)
