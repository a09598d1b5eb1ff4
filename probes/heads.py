"""Specialised heads: every head type the lecture names, scored the standard way, and how mixed each head is.

On random tokens R followed by R again (Olsson et al. 2022), query i of the second copy:
- induction: the weight on the token after the current token's earlier occurrence, i - N + 1;
- duplicate token: the weight on that earlier occurrence itself, i - N (Wang et al. 2022's duplicate-token heads);
- the offset profile: over every query, the weight on the key d tokens back (d = 1: previous-token, d = 2..8:
  previous-k; d = -1, a later key, is an encoder's next-token head; Clark et al. 2019). Random tokens carry no
  meaning, so a head that looks d back here does so by position alone.
On R followed by R reversed: reverse induction, the weight on the token before the current token's earlier
occurrence, which is what comes next when the sequence runs backwards.
On the user's text: sink (the first token) and delimiter (punctuation, separators) shares.
A head passes a type when its score reaches the type's threshold; heads that pass several are mixed (the lecture's
superposition caveat), and the entropy of a head's normalised scores says how evenly they are spread.
"""

from __future__ import annotations

import re

import numpy as np

from probes import attention
from probes.text import from_ids
from results.attention import AttentionResult
from results.heads import NONE, HeadTypes
from results.sinks import SINK_HEAD
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe

NAME = "heads"
VERSION = 2
MIN_SEQ_LEN, MAX_SEQ_LEN = 4, 1000
MAX_OFFSET = 8  # the offset profile reads d = -8..8 tokens back (0..8 in a decoder)
# A head passes a type when its score reaches the threshold; its type is the one it passes furthest above.
THRESHOLDS = {
    "induction": 0.3,
    "reverse induction": 0.3,
    "duplicate token": 0.3,
    "previous-token": 0.5,
    "previous-k": 0.5,
    "next-token": 0.5,
    "sink": SINK_HEAD,
    "delimiter": 0.5,
}
TYPES = (*THRESHOLDS, NONE)
_PSEUDO = re.compile(r"^(\[.*\]|<.*>)$")


def _special_frame(handle: ModelHandle) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (e.g. <bos>; [CLS] and [SEP])."""
    probe_id = handle.tokenizer("x", add_special_tokens=False)["input_ids"][0]
    framed = handle.tokenizer("x")["input_ids"]
    at = framed.index(probe_id)
    return framed[:at], framed[at + 1 :]


def repeated_random_tokens(
    handle: ModelHandle, seq_len: int, seed: int, reverse: bool = False
) -> tuple[np.ndarray, int]:
    """prefix + R + R + suffix for N distinct random non-special tokens R (R + reversed R with `reverse`); returns
    the ids and len(prefix)."""
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
    second = block[::-1] if reverse else block
    return np.array(prefix + block + second + suffix, dtype=np.int64), len(prefix)


def induction_score(start: int, seq_len: int) -> attention.PairScore:
    """Mean over positions i of the second copy of the weight on position i - N + 1."""
    second = np.arange(start + seq_len, start + 2 * seq_len)
    return attention.PairScore(queries=second, keys=second - seq_len + 1)


def duplicate_score(start: int, seq_len: int) -> attention.PairScore:
    """Mean over positions i of the second copy of the weight on the earlier occurrence of the same token, i - N."""
    second = np.arange(start + seq_len, start + 2 * seq_len)
    return attention.PairScore(queries=second, keys=second - seq_len)


def reverse_induction_score(start: int, seq_len: int) -> attention.PairScore:
    """On R + reversed R: mean over positions of the reversed copy (but its last) of the weight on the token before
    the current token's occurrence in R. Position start + N + j holds R[N-1-j]; R[N-2-j] sits at start + N - 2 - j."""
    j = np.arange(seq_len - 1)
    return attention.PairScore(queries=start + seq_len + j, keys=start + seq_len - 2 - j)


def offset_score(n: int, offset: int) -> attention.PairScore:
    """Mean over every query i of a sequence of n tokens whose key i - offset exists of the weight on it."""
    queries = np.arange(max(0, offset), n + min(0, offset))
    return attention.PairScore(queries=queries, keys=queries - offset)


def offsets(causal: bool) -> np.ndarray:
    """The offsets of the profile: 0..MAX_OFFSET back, and as many forward in an encoder."""
    return np.arange(0 if causal else -MAX_OFFSET, MAX_OFFSET + 1)


def _offset_name(offset: int) -> str:
    return f"offset {offset}"


def compute(handle: ModelHandle, seq_len: int, seed: int, reverse: bool) -> AttentionResult:
    """Attention on the repeated random sequence, with per-head `scores`: induction, duplicate token and the offset
    profile ("offset d"); on R + reversed R (`reverse`), reverse induction."""
    ids, start = repeated_random_tokens(handle, seq_len, seed, reverse)
    if reverse:
        scores = {"reverse induction": reverse_induction_score(start, seq_len)}
    else:
        scores = {
            "induction": induction_score(start, seq_len),
            "duplicate token": duplicate_score(start, seq_len),
            **{_offset_name(int(d)): offset_score(len(ids), int(d)) for d in offsets(handle.is_causal)},
        }
    return attention.compute(handle, from_ids(handle, ids.tolist()), scores=scores)


PROBE = CachedProbe(NAME, VERSION, compute, depends=(attention.PROBE,))


def run(
    handle: ModelHandle, cache: ResultCache, seq_len: int = 50, seed: int = 0, reverse: bool = False
) -> Cached[AttentionResult]:
    """Head scores on the repeated random sequence (R + reversed R with `reverse`), from the disk cache when
    computed before."""
    limits.check_range(seed, 0, limits.SEED, "seed")
    return PROBE.cached(handle, cache, seq_len=seq_len, seed=seed, reverse=reverse)


def profile(on_random: AttentionResult) -> tuple[np.ndarray, np.ndarray]:
    """The offsets and each head's weight on them ((layers, heads, offsets), NaN where a decoder cannot look)."""
    shown = offsets(False)
    nan = np.full((on_random.n_layers, on_random.n_heads), np.nan, dtype=np.float32)
    return shown, np.stack([on_random.scores.get(_offset_name(int(d)), nan) for d in shown], axis=-1)


def classify(on_text: AttentionResult, on_random: AttentionResult, on_reversed: AttentionResult) -> HeadTypes:
    """Every head's score for each type (THRESHOLDS): induction, duplicate token and offsets from R + R, reverse
    induction from R + reversed R, sink and delimiter from the text."""
    shown, weights = profile(on_random)
    at = {int(d): i for i, d in enumerate(shown)}
    scores = {
        "induction": on_random.scores["induction"],
        "reverse induction": on_reversed.scores["reverse induction"],
        "duplicate token": on_random.scores["duplicate token"],
        "previous-token": weights[..., at[1]],
        "previous-k": weights[..., at[2] :].max(axis=-1),
        "next-token": weights[..., at[-1]],
        "sink": on_text.sink_share,
        "delimiter": on_text.delimiter_share,
    }
    return HeadTypes(
        model=on_random.model,
        types=list(THRESHOLDS),
        thresholds=np.array(list(THRESHOLDS.values())),
        scores=np.stack([scores[kind] for kind in THRESHOLDS]).astype(np.float32),
        offsets=shown,
        profile=weights,
    )


def types_of(handle: ModelHandle, text: str, cache: ResultCache, seq_len: int = 50, seed: int = 0) -> Cached[HeadTypes]:
    """The head types of a model on a text and on random tokens (three cached attention passes)."""
    passes = [
        attention.run(handle, text, cache),
        run(handle, cache, seq_len, seed),
        run(handle, cache, seq_len, seed, reverse=True),
    ]
    return Cached(classify(*(p.value for p in passes)), all(p.hit for p in passes))
