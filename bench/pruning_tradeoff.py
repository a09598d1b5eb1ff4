"""Pruning against quantization, and low rank, on the built-in decoders, side by side in one run.

For every block matrix (q, k, v, o, gate, up, down) compressed at once, prints the mean per-token NLL (nats) of the
first corpus sentences joined into paragraphs and of the first 64 corpus sentences one by one, with the storage
in bytes per weight (fp16 dense = 2), for unstructured magnitude pruning, 2:4 pruning and round-to-nearest
quantization; then the text's NLL with every matrix truncated to rank r. Markdown, for bench/RESULTS.md.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probes import pruning  # noqa: E402
from probes.corpus import sentences  # noqa: E402
from runtime.cache import ResultCache  # noqa: E402
from runtime.models import load  # noqa: E402

MODELS = ("smollm2-135m-instruct", "gemma3-270m")
SPARSITIES = (0.1, 0.3, 0.5, 0.7)
BITS = (8, 4, 3, 2)
RANKS = (8, 32, 64, 128, 256, 512)
N_TEXT = 30
N_SENTENCES = 64


def main() -> None:
    """Print a trade-off table and a rank table, one block of rows per model."""
    text = "\n\n".join(" ".join(sentences()[i : i + 5]) for i in range(0, N_TEXT, 5))
    corpus = sentences()[:N_SENTENCES]
    date = datetime.now(timezone.utc).date()
    cores = os.cpu_count()
    tradeoff_rows, rank_rows, timings, tokens, uniform = [], [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        cache = ResultCache(Path(folder))
        for name in MODELS:
            handle = load(name)
            started = time.perf_counter()
            result = pruning.tradeoff(handle, text, corpus, SPARSITIES, BITS, cache).value
            middle = time.perf_counter()
            full = pruning.full_rank(handle)
            sweep = pruning.rank_sweep(handle, text, (*RANKS, full), cache).value
            ended = time.perf_counter()
            timings.append(f"{name}: trade-off {middle - started:.0f} s, rank sweep {ended - middle:.0f} s")
            tokens.append(f"{result.n_tokens_text} tokens on {name}")
            uniform.append(f"{math.log(handle.text_config.vocab_size):.2f} on {name}")
            tradeoff_rows.append(
                f"| {name} | dense (as loaded) | 2.000 | {result.base_nll_text:.3f} | {result.base_nll_corpus:.3f} |"
            )
            for p in result.points:
                tradeoff_rows.append(
                    f"| {name} | {p.label} | {p.bytes_per_weight:.3f} | {p.nll_text:.3f} | {p.nll_corpus:.3f} |"
                )
            for rank, cost, nll in zip(sweep.ranks, sweep.bytes_per_weight, sweep.nll):
                shown = f"{rank} (full)" if rank == full else str(rank)
                rank_rows.append(f"| {name} | {shown} | {cost:.3f} | {nll:.3f} | {nll - sweep.base_nll:+.3f} |")
            del handle
        cache.close()
    print(f"## Pruning, quantization and low rank ({date}, {platform.machine()}, {cores} cores, ", end="")
    print("`python bench/pruning_tradeoff.py`)\n")
    print(
        f"Every block matrix (q, k, v, o, gate, up, down) compressed at once on a copy of the model. Mean per-token "
        f"NLL (nats) of the first {N_TEXT} corpus sentences as one text ({', '.join(tokens)}) "
        f"and of the first {N_SENTENCES} sentences one by one. Bytes per weight: fp16 dense = 2; pruning = kept "
        "fp16 values + 1-bit mask; 2:4 = kept fp16 values + 2-bit index; b-bit = b/8 + one fp16 scale per row "
        "(symmetric round-to-nearest); rank r = r(m+n) fp16 values per m x n matrix, or the dense matrix where smaller. "
        "The built-ins come from GGUF files quantized to 4-6 bits in small blocks (Q4_1, Q4_K_M), dequantized to "
        "float32: the dense baseline is itself block-quantized.\n"
    )
    print("| model | setting | bytes/weight | NLL text | NLL sentences |")
    print("|---|---|---|---|---|")
    print("\n".join(tradeoff_rows))
    print(
        "\nEvery block matrix replaced by its rank-r truncated SVD; NLL of the same text. A uniform guess over the "
        f"vocabulary scores ln(vocabulary) = {', '.join(uniform)}.\n"
    )
    print("| model | rank r | bytes/weight | NLL text | change |")
    print("|---|---|---|---|---|")
    print("\n".join(rank_rows))
    print(f"\nSeconds: {'; '.join(timings)}.")


if __name__ == "__main__":
    main()
