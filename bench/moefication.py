"""The MoEfied SmolLM2 (probes.moefication): build time, router recall and loss against k, in one run.

Builds the MoEfication from scratch (nothing is read from or written to the model store), then measures the
mean per-token NLL of a ~600-token text, the first corpus sentences (which the build never sees), for the
dense model and for E = 8, 16, 32 experts at k = 1, 2, 4, ..., E with the fitted router and the oracle.
Prints Markdown and records it in bench/RESULTS.md (replacing the previous run's section).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from probes import corpus, moe_loss, moe_store, moefication  # noqa: E402
from results.moefication import EXPERT_COUNTS
from runtime.cache import ResultCache  # noqa: E402
from runtime.models import load  # noqa: E402

N_SENTENCES = 28  # about 600 tokens


def report() -> str:
    """Build, measure, and return the Markdown section."""
    base = load(moefication.BASE_NAME)
    started = time.perf_counter()
    built = moefication.build(base)
    build_seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    handle = moe_store.derive(base, built, moe_store.serialise(built))
    text = " ".join(corpus.sentences()[:N_SENTENCES])
    with tempfile.TemporaryDirectory() as folder:
        cache = ResultCache(Path(folder))
        started = time.perf_counter()
        loss = moe_loss.loss_by_k(handle, text, cache).value
        loss_seconds = time.perf_counter() - started
        cache.close()
    date = datetime.now(timezone.utc).date()
    lines = [
        f"## MoEfied SmolLM2 ({date}, {platform.machine()}, {os.cpu_count()} cores, `python bench/moefication.py`)\n",
        f"Build from scratch: {build_seconds:.1f} s (one corpus pass over {built.n_tokens} tokens of corpus "
        f"sentences {moefication.EVAL_SENTENCES}+, then per layer: balanced spherical k-means for E = 8, 16, 32 and "
        f"ridge routers); peak resident memory {peak_gb:.2f} GB (model included).\n",
        "Router recall: the share of the oracle's top-E/4 experts (largest exact output norm) that the fitted "
        "router also picks, on the held-out build tokens (every 5th sentence), over the 30 layers.\n",
        "| E | neurons per expert | recall, median | min | max | worst layer |",
        "|---|---|---|---|---|---|",
    ]
    intermediate = base.text_config.intermediate_size
    for e, recall in built.router_recall.items():
        lines.append(
            f"| {e} | {intermediate // e} | {np.median(recall):.3f} | {recall.min():.3f} | {recall.max():.3f} | "
            f"{int(recall.argmin())} |"
        )
    lines += [
        f"\nMean per-token NLL (nats) of the first {N_SENTENCES} corpus sentences ({len(loss.token_ids)} tokens, "
        f"not used by the build); dense model: **{loss.dense_nll:.3f}** (perplexity {np.exp(loss.dense_nll):.1f}). "
        f"All {sum(len(k) for k in loss.ks.values()) * 2 + 1} passes took {loss_seconds:.1f} s.\n",
        "| E | k | MLP neurons used | fitted router | oracle | fitted - dense | oracle - dense |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in EXPERT_COUNTS:
        for i, k in enumerate(loss.ks[e]):
            fitted, oracle = loss.nll["fitted"][e][i], loss.nll["oracle"][e][i]
            lines.append(
                f"| {e} | {k} | {k / e:.0%} | {fitted:.3f} | {oracle:.3f} | {fitted - loss.dense_nll:+.3f} | "
                f"{oracle - loss.dense_nll:+.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the section and record it in bench/RESULTS.md."""
    section = report()
    print(section)
    record(section)


if __name__ == "__main__":
    main()
