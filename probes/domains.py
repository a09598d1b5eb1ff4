"""Short texts unlike the bundled corpus, written for lmscope: Python code, numbers and arithmetic, French, a list.

Compression is calibrated and judged on plain English sentences; these ask whether what it kept still serves text
of other kinds (the lecture: pruned models have robustness issues).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

FOLDER = Path(__file__).with_name("data") / "domains"
TITLES = {"code": "Python code", "arithmetic": "numbers and arithmetic", "french": "French", "list": "a list"}


@cache
def texts() -> dict[str, str]:
    """Each domain's title and text, in TITLES order."""
    return {title: (FOLDER / f"{name}.txt").read_text(encoding="utf-8").strip() for name, title in TITLES.items()}
