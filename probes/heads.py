"""Specialised heads: induction and previous-token scores on a repeated random sequence, and head types.

The standard test (Olsson et al. 2022): random tokens R, then R again. An induction head at position i of the
second copy attends to the token that followed the current token's earlier occurrence, position i - N + 1.
"""

from __future__ import annotations

import re

import numpy as np

from probes import attention
from probes.text import from_ids
from results.attention import AttentionResult
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe

NAME = "heads"
VERSION = 1
MIN_SEQ_LEN, MAX_SEQ_LEN = 4, 1000
# A head gets a type when its score reaches the threshold; of several, the one furthest above its threshold.
THRESHOLDS = {"induction": 0.3, "previous-token": 0.5, "sink": 0.7, "delimiter": 0.5}
TYPES = (*THRESHOLDS, "mixed")
_PSEUDO = re.compile(r"^(\[.*\]|<.*>)$")


def _special_frame(handle: ModelHandle) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (e.g. <bos>; [CLS] and [SEP])."""
    probe_id = handle.tokenizer("x", add_special_tokens=False)["input_ids"][0]
    framed = handle.tokenizer("x")["input_ids"]
    at = framed.index(probe_id)
    return framed[:at], framed[at + 1 :]


def repeated_random_tokens(handle: ModelHandle, seq_len: int, seed: int) -> tuple[np.ndarray, int]:
    """prefix + R + R + suffix for N distinct random non-special tokens R; returns the ids and len(prefix)."""
    if not MIN_SEQ_LEN <= seq_len <= MAX_SEQ_LEN:
        raise LmscopeError(
            f"The random sequence length must be between {MIN_SEQ_LEN} and {MAX_SEQ_LEN}; got {seq_len}."
        )
    prefix, suffix = _special_frame(handle)
    special = set(handle.tokenizer.all_special_ids)
    pieces = handle.tokenizer.convert_ids_to_tokens(list(range(len(handle.tokenizer))))
    # Bracketed pseudo-tokens ([unused12], <unused3>, <start_of_image>) never occur in text.
    vocabulary = np.array([i for i, p in enumerate(pieces) if i not in special and not _PSEUDO.match(p or "")])
    block = np.random.default_rng(seed).choice(vocabulary, size=seq_len, replace=False).tolist()
    return np.array(prefix + block + block + suffix, dtype=np.int64), len(prefix)


def induction_score(start: int, seq_len: int) -> attention.PairScore:
    """Mean over positions i of the second copy of the weight on position i - N + 1."""
    second = np.arange(start + seq_len, start + 2 * seq_len)
    return attention.PairScore(queries=second, keys=second - seq_len + 1)


def compute(handle: ModelHandle, seq_len: int, seed: int) -> AttentionResult:
    """Attention on the repeated random sequence, with an `induction` score per head in `scores`."""
    ids, start = repeated_random_tokens(handle, seq_len, seed)
    scores = {"induction": induction_score(start, seq_len)}
    return attention.compute(handle, from_ids(handle, ids.tolist()), scores=scores)


PROBE = CachedProbe(NAME, VERSION, compute, depends=(attention.PROBE,))


def run(handle: ModelHandle, cache: ResultCache, seq_len: int = 50, seed: int = 0) -> Cached[AttentionResult]:
    """Head scores on the repeated random sequence, from the disk cache when computed before."""
    return PROBE.cached(handle, cache, seq_len=seq_len, seed=seed)


def head_types(on_text: AttentionResult, on_random: AttentionResult) -> np.ndarray:
    """Each head's dominant type ((layers, heads) strings), or "mixed" where no score reaches its threshold."""
    scores = (
        np.stack(
            [
                on_random.scores["induction"],
                on_random.previous_token,
                on_text.sink_share,
                on_text.delimiter_share,
            ]
        )
        / np.array(list(THRESHOLDS.values()))[:, None, None]
    )
    best = scores.argmax(axis=0)
    names = np.array(list(THRESHOLDS))[best]
    return np.where(scores.max(axis=0) >= 1.0, names, "mixed")
