"""Massive activations, MLP neurons and ablation on the built-in models, side by side in one run.

For each model: the corpus passes (all bundled sentences, batched) computed and then read back from the disk
cache, what they find (the features massive in most sentences, dead and active neurons), and the ablation of
the massive activations of a few corpus paragraphs, edited where they first appear and at every layer. Prints
Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probes import ablation, activations, corpus, neurons  # noqa: E402
from results.activations import KINDS, Thresholds  # noqa: E402
from runtime.cache import ResultCache  # noqa: E402
from runtime.models import load  # noqa: E402

MODELS = ("smollm2-135m-instruct", "gemma3-270m", "all-minilm-l6-v2")
N_PARAGRAPH_SENTENCES = 30


T = TypeVar("T")


def timed(run: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = run()
    return value, time.perf_counter() - started


def main() -> None:
    """Print the tables."""
    sentences = corpus.sentences()
    text = "\n\n".join(" ".join(sentences[i : i + 5]) for i in range(0, N_PARAGRAPH_SENTENCES, 5))
    date = datetime.now(timezone.utc).date()
    print(
        f"## Massive activations, neurons and ablation ({date}, {platform.machine()}, {os.cpu_count()} cores, "
        "`python bench/activations_corpus.py`)\n"
    )
    print(
        f"Corpus = all {len(sentences)} bundled sentences, batched by length; massive = |h| > 100 and > 1,000 x the "
        "layer's median; neurons active when z > 0.\n"
    )
    print(
        "| model | activations corpus (s) | cache hit (s) | neurons corpus (s) | cache hit (s) | massive in > 90% of sentences (layer range: feature, kind) | active per token | dead neurons |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ablations = []
    with tempfile.TemporaryDirectory() as folder:
        cache = ResultCache(Path(folder))
        for name in MODELS:
            handle = load(name)
            found, first = timed(lambda: activations.corpus_run(handle, sentences, cache))
            _, again = timed(lambda: activations.corpus_run(handle, sentences, cache))
            stats, neuron_first = timed(lambda: neurons.run(handle, sentences, cache))
            _, neuron_again = timed(lambda: neurons.run(handle, sentences, cache))
            counts = activations.massive_counts(found.value, Thresholds())
            common = {}
            for layer, dim, kind in zip(*np.nonzero(counts > 0.9 * found.value.n_sentences)):
                common.setdefault((int(dim), KINDS[kind]), []).append(int(layer))
            described = (
                "; ".join(f"{min(v)}-{max(v)}: {dim}, {kind}" for (dim, kind), v in sorted(common.items())) or "none"
            )
            active = neurons.active_share(stats.value, 0.0).mean()
            dead = int(round((neurons.dead_share(stats.value, 0.0) * stats.value.n_neurons).sum()))
            print(
                f"| {name} | {first:.1f} | {again:.2f} | {neuron_first:.1f} | {neuron_again:.2f} | {described} | "
                f"{active:.1%} | {dead} of {stats.value.n_neurons * handle.n_layers} |"
            )
            if handle.is_causal:
                for everywhere in (False, True):
                    done, seconds = timed(
                        lambda: ablation.run(handle, text, Thresholds(), cache, everywhere=everywhere)
                    )
                    ablations.append((name, everywhere, done.value, seconds))
    print(
        f"\nAblation: mean per-token NLL (nats) of the first {N_PARAGRAPH_SENTENCES} corpus sentences (6 paragraphs).\n"
    )
    print(
        "| model | edited | entries | unchanged | massive -> 0 | massive -> corpus mean | random -> 0 (5 draws) | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, everywhere, done, seconds in ablations:
        where = "every layer where massive" if everywhere else "where each first appears"
        random = done.nll_random.mean(axis=1)
        print(
            f"| {name} | {where} | {len(done.layers)} | {done.nll_base.mean():.3f} | {done.nll_zeroed.mean():.3f} | "
            f"{done.nll_mean.mean():.3f} | {random.mean():.3f} ({random.min():.3f}-{random.max():.3f}) | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
