"""Text input: clean odd Unicode, tokenise, and enforce the token limit with a clear message."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.settings import settings

_KEEP_CONTROLS = {"\n", "\t"}
# No tokenizer needs more characters than this per token, so a longer text is refused before tokenising it.
_CHARS_PER_TOKEN_CAP = 64


def long_limit(handle: ModelHandle) -> int:
    """The longest text of the views that read long texts (their probes hold no (n, n) map): the model's context,
    at most LMSCOPE_LONG_TOKENS, and never less than LMSCOPE_MAX_TOKENS."""
    limits = settings()
    return max(limits.max_tokens, min(handle.context_length or limits.max_tokens, limits.long_tokens))


def max_characters(max_tokens: int) -> int:
    """The longest text, in characters, that could hold max_tokens tokens: longer ones are refused unread."""
    return max_tokens * _CHARS_PER_TOKEN_CAP


def clean(text: str) -> str:
    """NFC-normalise, replace lone surrogates, and drop control characters other than newline and tab."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cs":  # a lone surrogate cannot be encoded as UTF-8
            kept.append("\ufffd")
        elif category != "Cc" or char in _KEEP_CONTROLS:
            kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept))


@dataclass(frozen=True)
class Encoded:
    """A text as the model sees it: token ids and one readable string per token."""

    text: str
    token_ids: np.ndarray
    tokens: list[str]


def token_strings(handle: ModelHandle, ids: list[int]) -> list[str]:
    """One readable label per token: its decoded text, or the raw piece where bytes are split across tokens."""
    pieces = handle.tokenizer.convert_ids_to_tokens(ids)
    labels = []
    for token_id, piece in zip(ids, pieces):
        decoded = handle.tokenizer.decode([token_id])
        labels.append(piece if "\ufffd" in decoded or not decoded else decoded)
    return labels


def from_ids(handle: ModelHandle, token_ids: list[int]) -> Encoded:
    """Token ids as the model sees them, with their labels (no text: a cached computation receives the ids)."""
    return Encoded("", np.asarray(token_ids, dtype=np.int64), token_strings(handle, token_ids))


class TextTooLong(LmscopeError):
    """The text has more tokens than the configured limit."""

    def __init__(self, n_tokens: int | None, limit: int) -> None:
        size = f"{n_tokens} tokens" if n_tokens is not None else f"over {max_characters(limit):,} characters"
        named = (
            "LMSCOPE_MAX_TOKENS"
            if limit == settings().max_tokens
            else "the longest text this view reads: the model's context, at most LMSCOPE_LONG_TOKENS"
        )
        super().__init__(
            f"The text has {size}, more than the limit of {limit} tokens ({named}). "
            f"Shorten it or truncate it to the first {limit} tokens."
        )
        self.n_tokens = n_tokens
        self.limit = limit


def encode(handle: ModelHandle, text: str, max_tokens: int) -> Encoded:
    """Tokenise a cleaned text as the model would (with its special tokens); refuse empty or too-long text (the
    length is checked before any work on the text)."""
    if len(text) > max_characters(max_tokens):
        raise TextTooLong(None, max_tokens)
    text = clean(text)
    if not text.strip():
        raise LmscopeError("The text is empty: type a sentence or two.")
    ids = handle.tokenizer(text)["input_ids"]
    if len(ids) > max_tokens:
        raise TextTooLong(len(ids), max_tokens)
    return Encoded(text, np.asarray(ids, dtype=np.int64), token_strings(handle, ids))


def truncate(handle: ModelHandle, text: str, max_tokens: int) -> str:
    """The longest prefix of the text, as typed, that stays within max_tokens (special tokens included)."""
    text = clean(text[: max_characters(max_tokens)])
    tokenizer = handle.tokenizer
    ends = [end for _, end in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    keep = min(len(ends), max_tokens - len(tokenizer("")["input_ids"]))
    # Tokenising a cut text can split its last word differently, so step back until it fits.
    while keep > 0:
        prefix = text[: ends[keep - 1]]
        if len(tokenizer(prefix)["input_ids"]) <= max_tokens:
            return prefix
        keep -= 1
    return ""
