"""Many sentences through a model: token ids grouped by length, run in batches without padding."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from probes.text import clean
from runtime import limits
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.settings import settings

BATCH_SIZE = 32
# (sentences done, sentences in all) -> None
Progress = Callable[[int, int], None]
# Sentences grouped by length as a cached computation's input (JSON has no integer keys): (length, ids) pairs.
LengthGroups = list[tuple[int, list[list[int]]]]


def by_length(handle: ModelHandle, sentences: Sequence[str]) -> dict[int, list[list[int]]]:
    """Token ids of each sentence of two tokens or more, tokenised like `text.encode` and cut to the token limit,
    grouped by length (a key for the cache, too)."""
    limits.check_count(sentences, limits.CORPUS_SENTENCES, "sentences")
    groups: dict[int, list[list[int]]] = defaultdict(list)
    for sentence in sentences:
        ids = handle.tokenizer(clean(sentence))["input_ids"][: settings().max_tokens]
        if len(ids) >= 2:
            groups[len(ids)].append(ids)
    if not groups:
        raise LmscopeError(
            "Nothing to run: every sentence (or the text) has fewer than two tokens, and a measure over tokens needs "
            "two or more. Use a longer text or longer sentences."
        )
    return dict(sorted(groups.items()))


def grouped(handle: ModelHandle, sentences: Sequence[str]) -> LengthGroups:
    """`by_length` as (length, token ids of each sentence) pairs, the form a cached computation receives."""
    return list(by_length(handle, sentences).items())


def batches(groups: dict[int, list[list[int]]], on_progress: Progress | None = None) -> Iterator[np.ndarray]:
    """Equal-length batches (sentences, tokens) of the groups, reporting progress after each batch."""
    total, done = sum(len(group) for group in groups.values()), 0
    for group in groups.values():
        for start in range(0, len(group), BATCH_SIZE):
            batch = np.asarray(group[start : start + BATCH_SIZE], dtype=np.int64)
            yield batch
            done += len(batch)
            if on_progress is not None:
                on_progress(done, total)
