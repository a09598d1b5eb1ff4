"""Bounded work: every count a user can set is refused with a clear message before any work starts, in the probes
(so the pages, their URLs, the CLI and the export obey it), on the pages, and on the command line."""

from __future__ import annotations

import json
import re
import time

import pytest

from probes import batches, corpus, heads, lens, pruning, sinks, structured, text
from runtime import limits
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import cli, open_page, texts

TEXT = "The quick brown fox jumps over the lazy dog. Then it ran home, and the dog slept until noon."


def _refuses_before_work(monkeypatch: pytest.MonkeyPatch, call, message: str) -> None:
    """call() raises a user error with `message`, and no forward pass ran."""

    def no_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("a forward pass ran before the limit was checked")

    for module in (structured, pruning, sinks):
        if hasattr(module, "forward"):
            monkeypatch.setattr(module, "forward", no_pass)
    monkeypatch.setattr("probes.nll.forward", no_pass)
    with pytest.raises(LmscopeError, match=message):
        call()


@pytest.mark.parametrize(
    ("name", "call", "message"),
    [
        (
            "windows",
            lambda h, c: structured.window_sweep(h, TEXT, range(1, limits.WINDOWS + 2), 0, c),
            f"At most {limits.WINDOWS} window sizes",
        ),
        ("sinks", lambda h, c: structured.window_sweep(h, TEXT, [2], 10_000, c), "sink tokens must be from 0 to"),
        (
            "global positions",
            lambda h, c: structured.mask_view(
                h, TEXT, 4, structured.Structure(2, tuple(range(limits.GLOBAL_POSITIONS + 1))), 0, c
            ),
            f"At most {limits.GLOBAL_POSITIONS} global positions",
        ),
        (
            "sparsities",
            lambda h, c: pruning.tradeoff(h, TEXT, [], [0.01 * i for i in range(limits.SPARSITIES + 1)], [], c),
            f"At most {limits.SPARSITIES} sparsities",
        ),
        (
            "bit widths",
            lambda h, c: pruning.tradeoff(h, TEXT, [], [], [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 8], c),
            f"At most {limits.BIT_WIDTHS} bit widths",
        ),
        (
            "ranks",
            lambda h, c: pruning.rank_sweep(h, TEXT, list(range(1, limits.RANKS + 2)), c),
            f"At most {limits.RANKS} ranks",
        ),
        (
            "corpus sentences",
            lambda h, c: sinks.corpus_attention(h, corpus.sentences(), c, limit=limits.CORPUS_SENTENCES + 1),
            f"number of sentences must be from 1 to {limits.CORPUS_SENTENCES}",
        ),
        (
            "corpus tokens",
            lambda h, c: sinks.corpus_attention(h, corpus.sentences(), c, n_tokens=limits.CORPUS_TOKENS + 1),
            f"tokens per sentence must be from 2 to {limits.CORPUS_TOKENS}",
        ),
        (
            "pasted sentences",
            lambda h, c: sinks.corpus_attention(h, ["A sentence."] * (limits.CORPUS_SENTENCES + 1), c),
            f"At most {limits.CORPUS_SENTENCES} sentences",
        ),
        ("head atlas seed", lambda h, c: heads.run(h, c, seed=-1), f"seed must be from 0 to {limits.SEED}"),
    ],
)
def test_probe_limits_are_checked_before_any_work(
    smollm2: ModelHandle, cache: ResultCache, monkeypatch: pytest.MonkeyPatch, name: str, call, message: str
) -> None:
    _refuses_before_work(monkeypatch, lambda: call(smollm2, cache), message)


def test_a_huge_text_is_refused_before_it_is_read(smollm2: ModelHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = "\u0301x" * 5_000_000  # 10 M characters, combining marks that NFC would have to work through

    def unread(value: str) -> str:
        raise AssertionError("the text was cleaned before its length was checked")

    monkeypatch.setattr(text, "clean", unread)
    started = time.perf_counter()
    with pytest.raises(text.TextTooLong, match="characters"):
        text.encode(smollm2, huge, 4096)
    assert time.perf_counter() - started < 0.5


def test_the_text_area_has_a_character_limit(smollm2: ModelHandle) -> None:
    at = open_page("app.py")
    assert at.text_area[0].proto.max_chars == text.max_characters(32768)  # the attention view reads long texts


@pytest.mark.parametrize(
    ("page", "params", "message"),
    [
        (
            "app_pages/3_Structured_attention.py",
            {"windows": ",".join(str(w) for w in range(1, limits.WINDOWS + 2))},
            "At most 16 window sizes",
        ),
        ("app_pages/9_Pruning.py", {"bits": "2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,3"}, "At most 15 bit"),
        ("app_pages/8_Weight_spectra.py", {"ranks": ",".join(str(r) for r in range(1, 30))}, "At most 16 ranks"),
        ("app_pages/4_Attention_sinks.py", {"sentences": "999999"}, "out of range"),
    ],
)
def test_pages_say_what_is_over_a_limit(page: str, params: dict[str, str], message: str) -> None:
    at = open_page(page, text=TEXT, **params)
    assert not at.exception
    assert message in texts(at.error) + texts(at.warning)


@pytest.mark.slow  # loads a model
def test_cli_zero_means_zero(smollm2: ModelHandle) -> None:
    done = cli("pruning", "--model", "smollm2-135m-instruct", "--text", TEXT, "--sparsity", "0")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["amount"] == 0 and out["nll_compressed"] == pytest.approx(out["nll_base"], abs=1e-6)


@pytest.mark.slow  # loads a model
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "0"], "at least 1 expert"),
        (["--experts", "0"], "E = 0 experts is not available"),
    ],
)
def test_cli_zero_is_refused_where_it_means_nothing(args: list[str], message: str) -> None:
    done = cli("moe", "--model", "smollm2-135m-moefied", "--text", TEXT, *args)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow  # loads a model
def test_cli_zero_on_a_dense_model_is_still_a_derived_moe_option() -> None:
    done = cli("moe", "--model", "smollm2-135m-instruct", "--text", TEXT, "--k", "0")
    assert done.returncode == 1 and "derived MoE" in done.stderr


@pytest.mark.parametrize("command", ["activations", "ablate"])
@pytest.mark.parametrize(
    ("option", "value"), [("--min-magnitude", "nan"), ("--min-ratio", "inf"), ("--min-magnitude", "-1")]
)
def test_cli_thresholds_have_the_pages_limits(command: str, option: str, value: str) -> None:
    """NaN once made nothing massive, silently; the page allows 0 to limits.THRESHOLD, and so does the CLI."""
    done = cli(command, "--model", "smollm2-135m-instruct", "--text", TEXT, option, value)
    assert done.returncode == 2 and f"{value} is not from 0 to 1e+09" in done.stderr


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h, c: lens.run(h, "a", c), "the text has 1: lengthen it."),
        (lambda h, c: batches.by_length(h, ["a", "b"]), "every sentence (or the text) has fewer than two tokens"),
        (
            lambda h, c: text.encode(h, "word " * 9000, text.long_limit(h)),
            "more than the limit of 8192 tokens (the longest text this view reads: the model's context, at most "
            "LMSCOPE_LONG_TOKENS)",
        ),
        (lambda h, c: text.encode(h, "word " * 5000, 4096), "more than the limit of 4096 tokens (LMSCOPE_MAX_TOKENS)"),
    ],
)
def test_refusals_say_what_to_change(smollm2: ModelHandle, cache: ResultCache, call, message: str) -> None:
    with pytest.raises(LmscopeError, match=re.escape(message)):
        call(smollm2, cache)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sparsity", "0.5", "--method", "gptq"], "gptq quantizes: give it --bits"),
        (["--bits", "4", "--method", "sparsegpt"], "sparsegpt prunes: give it --sparsity"),
    ],
)
def test_cli_pruning_refuses_a_method_with_the_other_kinds_setting(args: list[str], message: str) -> None:
    done = cli("pruning", "--model", "smollm2-135m-instruct", "--text", TEXT, *args)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
