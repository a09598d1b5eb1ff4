"""The slide export of every lecture preset, cold and then from the cache, side by side in one run.

Runs `python -m lecture.export --preset all` twice in fresh processes on one fresh result cache (LMSCOPE_CACHE_DIR):
the first computes every probe result, the second reads them back. Prints the total of each run, their ratio and
each figure's seconds (probes and drawing, from index.json), and records the same as its section of bench/RESULTS.md
(replacing the previous run's).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.record import record  # noqa: E402

FORMAT = "png"
SIZE = "1920x1080"


def export(out: Path, cache: Path) -> tuple[float, dict]:
    """Wall-clock seconds of one export process and its index."""
    command = [
        sys.executable,
        "-m",
        "lecture.export",
        "--preset",
        "all",
        "--out",
        str(out),
        "--format",
        FORMAT,
        "--size",
        SIZE,
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "LMSCOPE_CACHE_DIR": str(cache)}, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"the export failed:\n{done.stderr}")
    return seconds, json.loads((out / "index.json").read_text())


def section(cold: float, warm: float, first: dict, second: dict) -> str:
    """The markdown section for RESULTS.md."""
    date = datetime.now(timezone.utc).date()
    lines = [
        f"## Slide export of every lecture preset ({date}, {platform.machine()}, {os.cpu_count()} cores; "
        "`python bench/export_presets.py`)",
        "",
        f"`python -m lecture.export --preset all --format {FORMAT} --size {SIZE}`, twice, each in a fresh process, on one "
        "fresh result cache. Total = the process's wall clock (Python start, imports, model loads, kaleido and "
        "chromium start included); per figure = running the probes (or reading them from the cache) and drawing, "
        "from index.json; PNG writing is not in it.",
        "",
        f"Total: cold {cold:.1f} s, from the cache {warm:.1f} s, ratio {warm / cold:.3f}x "
        f"({len(first['figures'])} figures).",
        "",
        "| preset | model | cold (s) | cold run's results | from the cache (s) | second run's results | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in zip(first["figures"], second["figures"], strict=True):
        ratio = b["seconds"] / a["seconds"] if a["seconds"] else float("nan")
        # A preset drawn from results an earlier preset of the same run computed is served by the cache already.
        cold_source = "cache (an earlier preset's)" if a["cached"] else "computed"
        lines.append(
            f"| {a['preset']} | {a['model']} | {a['seconds']:.2f} | {cold_source} | {b['seconds']:.3f} | "
            f"{'cache' if b['cached'] else 'computed'} | {ratio:.3f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Export cold, export again from the cache, print and record the table."""
    with tempfile.TemporaryDirectory(prefix="lmscope-export-bench-") as folder:
        root = Path(folder)
        cold, first = export(root / "cold", root / "cache")
        warm, second = export(root / "warm", root / "cache")
    text = section(cold, warm, first, second)
    print(text)
    record(text)


if __name__ == "__main__":
    main()
