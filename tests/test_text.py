"""Text input: odd Unicode cleaned, empty and huge texts refused clearly, truncation within the limit."""

from __future__ import annotations

import time

import pytest

from probes.text import TextTooLong, clean, encode, truncate
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle


def test_clean_handles_odd_unicode() -> None:
    assert clean("a\ud800b") == "a\ufffdb"
    assert clean("line\r\nnext\rlast") == "line\nnext\nlast"
    assert clean("nul\x00bell\x07tab\t") == "nulbelltab\t"
    assert clean("e\u0301") == "\u00e9"  # NFC
    assert clean("zero\u200bwidth 🙂 שלום") == "zero\u200bwidth 🙂 שלום"


@pytest.mark.parametrize("text", ["", "   ", "\n\t\n", "\x00\x01"])
def test_empty_text_is_refused(any_model: ModelHandle, text: str) -> None:
    with pytest.raises(LmscopeError, match="empty"):
        encode(any_model, text, 512)


def test_odd_unicode_tokenises_to_visible_labels(any_model: ModelHandle) -> None:
    encoded = encode(any_model, "naïve café 🙂 \u200b שלום 中文 \ud83d", 512)
    assert len(encoded.tokens) == len(encoded.token_ids) > 3
    assert all(encoded.tokens)


def test_long_text_is_refused_with_counts(smollm2: ModelHandle) -> None:
    text = "word " * 600
    n_tokens = len(smollm2.tokenizer(text)["input_ids"])
    with pytest.raises(TextTooLong) as caught:
        encode(smollm2, text, 512)
    assert caught.value.n_tokens == n_tokens > 512 and caught.value.limit == 512
    assert f"{n_tokens} tokens" in str(caught.value)


def test_huge_text_is_refused_quickly(smollm2: ModelHandle) -> None:
    started = time.perf_counter()
    with pytest.raises(TextTooLong, match="characters"):
        encode(smollm2, "x" * 5_000_000, 512)
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("limit", [4, 17, 512])
def test_truncate_fits_the_limit(any_model: ModelHandle, limit: int) -> None:
    text = "Attention sinks soak up weight. " * 200
    short = truncate(any_model, text, limit)
    assert short and text.startswith(short)
    assert 0 < len(encode(any_model, short, limit).token_ids) <= limit
