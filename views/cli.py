"""The command line: every registered view's commands, and the model store's, printing JSON on stdout."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys

import numpy as np

import views  # noqa: F401  (registers every view's commands)
from runtime import engine
from runtime.builtin import BUILTINS, DERIVED
from runtime.errors import LmscopeError
from runtime.models import info, load
from views.api import loaded
from views.registry import Command, commands

PROG = "python -m lmscope"


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


def _prepare_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--model", action="append", help="a model to prepare (default: every built-in)")


def _prepare(args: argparse.Namespace) -> object:
    prepared = []
    for name in args.model or [*BUILTINS, *DERIVED]:
        handle = loaded(name)
        prepared.append(
            {"name": name, "fingerprint": handle.fingerprint, "load_seconds": round(handle.load_seconds, 2)}
        )
    return prepared


STORE = (
    Command(
        "list-models", "the built-in models and the two MoEs derived from SmolLM2", lambda command: None, _list_models
    ),
    Command(
        "prepare",
        "convert the built-in models into the local model store, and build the two derived MoEs",
        _prepare_arguments,
        _prepare,
    ),
)


def parser() -> argparse.ArgumentParser:
    """The model store's commands, then every registered view's."""
    made = argparse.ArgumentParser(prog=PROG, description="lmscope probes; JSON on stdout.")
    subcommands = made.add_subparsers(dest="command", required=True)
    for command in (*STORE, *commands()):
        sub = subcommands.add_parser(command.name, help=command.help, aliases=list(command.aliases))
        command.arguments(sub)
        sub.set_defaults(run=command.run)
    return made


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line on stderr and exit 1."""
    logging.basicConfig(level=logging.WARNING, format="lmscope: %(message)s")
    args = parser().parse_args(argv)
    try:
        if args.command not in {command.name for command in STORE}:
            engine.start()  # the probes run where the operator chose (LMSCOPE_SCHEDULER, LMSCOPE_WORKERS)
        result = args.run(args)
    except LmscopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    json.dump(to_json(result), sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
