"""lmscope's weight spectra against WeightWatcher 0.7.7 on smollm2-135m-instruct: time and agreement, in one run.

WeightWatcher is a benchmark-only dependency, kept out of the project's environment. Install it into a separate
folder, without letting it pull in another torch:

    .venv/bin/python -m pip install --target /tmp/wwlib --no-deps weightwatcher==0.7.7 matplotlib \
        matplotlib-inline powerlaw scikit-learn contourpy cycler fonttools kiwisolver pyparsing joblib \
        threadpoolctl traitlets cloudpickle

then run `.venv/bin/python bench/weightwatcher_alpha.py` (WW_PATH=... if it is elsewhere). Both sides run in
alternation REPEATS times on the same loaded model (lmscope's computing function, no cache; WeightWatcher's
default `analyze()`); the times are the fastest of each. Matrices are matched by module name. Prints a Markdown
section for bench/RESULTS.md.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(os.environ.get("WW_PATH", "/tmp/wwlib"))  # appended: the project's numpy/torch/scipy come first
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from probes import spectra  # noqa: E402
from runtime.models import load  # noqa: E402

MODEL = "smollm2-135m-instruct"
REPEATS = 3


def _weightwatcher(model):
    """WeightWatcher's default analysis of the model: its details table."""
    import weightwatcher  # pyright: ignore[reportMissingImports]  (installed beside, not in the venv: see above)

    watcher = weightwatcher.WeightWatcher(model=model, log_level=logging.ERROR)
    return watcher.analyze()


def _describe(handle, name: str) -> str:
    """A matrix only WeightWatcher analysed, and why lmscope did not."""
    weight = getattr(handle.model.get_submodule(name), "weight", None)
    if weight is not None and weight is handle.model.get_input_embeddings().weight:
        return f"`{name}` (tied to the embedding: the same matrix, which lmscope analyses once)"
    return f"`{name}` (outside the transformer blocks)"


def _stats(values: np.ndarray) -> str:
    return f"{np.median(values):.2g} | {np.max(values):.2g}"


def main() -> None:
    """Time both, compare their fits matrix by matrix, print the section."""
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    handle = load(MODEL)
    load_before = os.getloadavg()[0]
    ours_times, ww_times = [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        ours = spectra.compute(handle)
        ours_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        details = _weightwatcher(handle.model)
        ww_times.append(time.perf_counter() - started)
    ours_by_name = {m.name: m for m in ours.matrices}
    theirs = {row.longname: row for row in details.itertuples()}
    common = [name for name in ours_by_name if name in theirs]
    only_ours = sorted(set(ours_by_name) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours_by_name))
    alpha = np.array([abs(ours_by_name[n].alpha - theirs[n].alpha) for n in common])
    xmin = np.array([abs(ours_by_name[n].xmin - theirs[n].xmin) for n in common])
    xmin_rel = xmin / np.array([theirs[n].xmin for n in common])
    ks = np.array([abs(ours_by_name[n].ks_distance - theirs[n].D) for n in common])
    same_tail = sum(ours_by_name[n].n_tail == theirs[n].num_pl_spikes for n in common)
    worst = common[int(np.argmax(alpha))]
    ours_s, ww_s = min(ours_times), min(ww_times)

    date = datetime.now(timezone.utc).date()
    print(
        f"## Weight spectra vs WeightWatcher 0.7.7 ({date}, {platform.machine()}, {os.cpu_count()} cores, {MODEL}; "
        "`python bench/weightwatcher_alpha.py`)\n"
    )
    print(
        f"Time = the fastest of {REPEATS} alternating runs on the same loaded model: lmscope's `spectra.compute` "
        "(no cache; float64 Gram matrix + eigvalsh, one matrix per core with one BLAS thread each) and WeightWatcher's "
        "default `analyze()` (scipy SVD, threaded BLAS). Differences over the matrices both analysed, matched by "
        "module name.\n"
    )
    print("| lmscope (s) | WeightWatcher (s) | time ratio | matrices compared | same xmin |")
    print("|---|---|---|---|---|")
    print(f"| {ours_s:.2f} | {ww_s:.2f} | {ours_s / ww_s:.3f}x | {len(common)} | {same_tail} of {len(common)} |\n")
    print("| quantity | median abs difference | max abs difference |")
    print("|---|---|---|")
    print(f"| alpha | {_stats(alpha)} |")
    print(f"| xmin | {_stats(xmin)} |")
    print(f"| xmin, relative | {_stats(xmin_rel)} |")
    print(f"| D | {_stats(ks)} |\n")
    runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(ours_times, ww_times))
    notes = [
        f"All runs (lmscope/WeightWatcher, s): {runs}; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after.",
        f"Largest alpha difference: `{worst}`.",
    ]
    if only_theirs:
        notes.append(f"Only WeightWatcher: {', '.join(_describe(handle, n) for n in only_theirs)}.")
    if only_ours:
        notes.append(f"Only lmscope: {', '.join(f'`{n}`' for n in only_ours)}.")
    print(" ".join(notes))


if __name__ == "__main__":
    main()
