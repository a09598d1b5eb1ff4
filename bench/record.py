"""bench/RESULTS.md holds one section per benchmark, its latest run: a script's new run replaces its own section."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = re.compile(r"^## (?P<name>[^(\n]*?)\s*(\(|$)", re.MULTILINE)


def benchmark(section: str) -> str:
    """The benchmark a section is about: its "## " heading up to the parenthesis with the date and machine."""
    found = HEADING.search(section)
    if found is None:
        raise ValueError(f"a section starts with a '## ' heading, not {section[:60]!r}")
    return found["name"]


def record(section: str, results: Path = RESULTS) -> None:
    """Put `section` in place of the section of the same benchmark in `results`, or at its end if it has none."""
    section = section.strip("\n") + "\n"
    text = results.read_text(encoding="utf-8") if results.exists() else "# Benchmarks\n"
    name = benchmark(section)
    starts = [(m.start(), m["name"]) for m in HEADING.finditer(text)]
    for i, (start, found) in enumerate(starts):
        if found == name:
            end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
            text = text[:start] + section + ("\n" if end < len(text) else "") + text[end:]
            break
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results.write_text(text, encoding="utf-8")
