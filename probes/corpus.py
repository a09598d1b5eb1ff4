"""The bundled corpus: 320 short, original English sentences (probes/data/corpus.txt), for averaged statistics."""

from __future__ import annotations

from functools import cache
from pathlib import Path

CORPUS = Path(__file__).with_name("data") / "corpus.txt"


@cache
def sentences() -> tuple[str, ...]:
    """Every sentence of the bundled corpus, in file order."""
    return tuple(line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip())
