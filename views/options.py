"""What several views' CLI commands share: the model argument and the massive-activation thresholds."""

from __future__ import annotations

import argparse

from results.activations import Thresholds
from runtime import limits


def model_argument(command: argparse.ArgumentParser, what: str = "") -> None:
    """The --model argument every probe command takes (`what`: a restriction, e.g. " (a decoder)")."""
    command.add_argument("--model", required=True, help=f"built-in name, Hugging Face id or local folder{what}")


def _threshold(value: str) -> float:
    """A threshold from the command line: a number from 0 to limits.THRESHOLD (the page's limits)."""
    number = float(value)
    if not 0 <= number <= limits.THRESHOLD:  # also False for NaN
        raise argparse.ArgumentTypeError(f"{value} is not from 0 to {limits.THRESHOLD:g}")
    return number


def threshold_arguments(command: argparse.ArgumentParser) -> None:
    """--min-magnitude and --min-ratio: when a residual-stream entry counts as massive."""
    defaults = Thresholds()
    command.add_argument(
        "--min-magnitude", type=_threshold, default=defaults.min_magnitude, help="massive: |h| above this (default 100)"
    )
    command.add_argument(
        "--min-ratio",
        type=_threshold,
        default=defaults.min_ratio,
        help="... and above this times the layer's median |h| (default 1000)",
    )
