"""Structured sparse attention applied for real: causal masks (sliding window, dilated, global + sliding,
block-sparse, sink tokens), the share of each head's attention they keep, and the loss of a text when every layer
obeys them, alone or against the attention budget each pattern keeps.

Masks are (queries, keys) boolean arrays, True where a query may attend. They are imposed on every attention
layer through runtime.capture, on top of the model's own causal (and sliding-window) mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from probes.attention import MAX_MAP_SIDE, block_pool, query_chunk
from probes.nll import perplexity, token_nll
from probes.text import Encoded, encode, from_ids, long_limit
from results.structured import MaskView, PatternSweep, WindowLoss, WindowSweep
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.capture import Chunking, chunking
from runtime.chunked import CHUNK
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe

NAME = "window_sweep"
VERSION = 3
MASKS_NAME = "structured_masks"
MASKS_VERSION = 4
PATTERNS_NAME = "pattern_sweep"
PATTERNS_VERSION = 2
DEFAULT_WINDOWS = (2, 4, 8, 16, 32, 64)
# The structures the model can run under, by the name the URL and the CLI use; `size` is the window of the first
# three and the block of the last.
PATTERNS = {
    "sliding": "sliding window",
    "dilated": "dilated window",
    "global": "global + sliding",
    "block": "block-sparse",
}

Progress = Callable[[int, int], None]  # (forward passes done, forward passes in all)


def _at_least(value: int, low: int, what: str) -> None:
    if value < low:
        raise LmscopeError(f"The {what} must be at least {low}; got {value}.")


def _offsets(n: int, queries: np.ndarray | None = None) -> np.ndarray:
    """q - k for the queries (default: all n) against every key: 0 on the diagonal, positive for keys in the past."""
    positions = np.arange(n)
    return (positions if queries is None else queries)[:, None] - positions[None, :]


# Every mask below is (queries, n): all n queries, or the rows of `queries` only (a long text's masks are built a
# chunk of rows at a time).


def full_mask(n: int, queries: np.ndarray | None = None) -> np.ndarray:
    """Causal attention: each query sees itself and every earlier key."""
    return _offsets(n, queries) >= 0


def sliding_window_mask(n: int, window: int, queries: np.ndarray | None = None) -> np.ndarray:
    """Query q sees keys q-window+1 .. q (Mistral-style sliding window)."""
    _at_least(window, 1, "window")
    offsets = _offsets(n, queries)
    return (offsets >= 0) & (offsets < window)


def dilated_window_mask(n: int, window: int, dilation: int, queries: np.ndarray | None = None) -> np.ndarray:
    """Query q sees q, q-d, q-2d, ...: `window` keys in all, `dilation` apart."""
    _at_least(window, 1, "window")
    _at_least(dilation, 1, "dilation")
    offsets = _offsets(n, queries)
    return (offsets >= 0) & (offsets % dilation == 0) & (offsets < window * dilation)


def _global(n: int, global_positions: Iterable[int], queries: np.ndarray | None = None) -> np.ndarray:
    """The pairs a global token adds, kept causal: it sees every earlier token and every later one sees it."""
    is_global = np.zeros(n, dtype=bool)
    for position in global_positions:
        if not 0 <= position < n:
            raise LmscopeError(f"Global position {position} is outside the text: its positions are 0 to {n - 1}.")
        is_global[position] = True
    rows = is_global if queries is None else is_global[queries]
    return full_mask(n, queries) & (is_global[None, :] | rows[:, None])


def global_sliding_mask(
    n: int, window: int, global_positions: Iterable[int], queries: np.ndarray | None = None
) -> np.ndarray:
    """A sliding window plus global tokens that see, and are seen by, every token (Longformer, kept causal)."""
    return sliding_window_mask(n, window, queries) | _global(n, global_positions, queries)


def block_sparse_mask(
    n: int,
    block: int,
    random_blocks: int,
    global_positions: Iterable[int],
    seed: int,
    queries: np.ndarray | None = None,
) -> np.ndarray:
    """BigBird's pattern, kept causal: the tokens cut into blocks of `block`; a query sees its own block and the
    one before it, `random_blocks` earlier blocks drawn for its block (seeded), and the global tokens."""
    _at_least(block, 1, "block size")
    _at_least(random_blocks, 0, "number of random blocks")
    of = np.arange(n) // block
    blocks = of[-1] + 1 if n else 0
    seen = np.zeros((blocks, blocks), dtype=bool)
    rng = np.random.default_rng(seed)
    for b in range(blocks):
        seen[b, max(0, b - 1) : b + 1] = True
        farther = b - 1  # blocks 0 .. b-2 are neither this block nor the one before
        if farther > 0 and random_blocks:
            seen[b, rng.choice(farther, size=min(random_blocks, farther), replace=False)] = True
    rows = of if queries is None else of[queries]
    return (seen[rows[:, None], of[None, :]] & full_mask(n, queries)) | _global(n, global_positions, queries)


def with_sinks(mask: np.ndarray, k: int, queries: np.ndarray | None = None) -> np.ndarray:
    """The mask with the first k tokens also visible to every (later) query, as StreamingLLM keeps its sinks."""
    _at_least(k, 0, "number of sink tokens")
    n = mask.shape[-1]
    return mask | (full_mask(n, queries) & (np.arange(n) < k)[None, :])


@dataclass(frozen=True)
class Structure:
    """What a pattern needs besides its size: the dilated window's step, the global tokens (global + sliding and
    block-sparse), and the block-sparse pattern's random blocks per query block and their seed."""

    dilation: int = 2
    global_positions: tuple[int, ...] = ()
    random_blocks: int = 1
    seed: int = 0

    def mask(self, pattern: str, n: int, size: int, queries: np.ndarray | None = None) -> np.ndarray:
        """One of `PATTERNS` over n tokens (the rows of `queries`, or all); `size` is the window (sliding, dilated,
        global) or the block (block)."""
        if pattern == "sliding":
            return sliding_window_mask(n, size, queries)
        if pattern == "dilated":
            return dilated_window_mask(n, size, self.dilation, queries)
        if pattern == "global":
            return global_sliding_mask(n, size, self.global_positions, queries)
        if pattern == "block":
            return block_sparse_mask(n, size, self.random_blocks, self.global_positions, self.seed, queries)
        raise LmscopeError(f"Unknown attention pattern '{pattern}': choose one of {', '.join(PATTERNS)}.")

    def title(self, pattern: str, size: int) -> str:
        """The pattern with its settings, e.g. 'dilated w=8, d=2'."""
        shown = ", ".join(map(str, self.global_positions[:4]))
        if len(self.global_positions) > 4:
            shown += f", … ({len(self.global_positions)} in all)"
        return {
            "sliding": f"sliding w={size}",
            "dilated": f"dilated w={size}, d={self.dilation}",
            "global": f"global [{shown}] + sliding w={size}",
            "block": f"block-sparse b={size}, r={self.random_blocks}" + (f" + global [{shown}]" if shown else ""),
        }[pattern]

    def describe(self) -> str:
        """The settings in words, for a figure's subtitle."""
        shown = ", ".join(map(str, self.global_positions)) or "none"
        return (
            f"dilation d={self.dilation}; global tokens at {shown}; "
            f"{self.random_blocks} random block(s) per query block, seed {self.seed}"
        )

    def check(self, n: int) -> None:
        """Refuse settings over their limits before any work: too many global tokens or random blocks."""
        limits.check_count(self.global_positions, limits.GLOBAL_POSITIONS, "global positions")
        limits.check_range(self.random_blocks, 0, limits.RANDOM_BLOCKS, "number of random blocks")
        limits.check_range(self.dilation, 1, max(1, n - 1), "dilation")
        limits.check_range(self.seed, 0, limits.SEED, "seed")

    def inputs(self) -> dict[str, object]:
        """The settings as a cached probe's inputs."""
        return {
            "dilation": self.dilation,
            "global_positions": sorted(set(self.global_positions)),
            "random_blocks": self.random_blocks,
            "seed": self.seed,
        }


def budget(mask: np.ndarray) -> float:
    """The attention budget a mask keeps: the share of the causal n(n+1)/2 query-key pairs it allows."""
    n = mask.shape[-1]
    return float((mask & full_mask(n)).sum() / (n * (n + 1) / 2))


def check_mask(mask: np.ndarray, n: int) -> None:
    """Refuse a mask of the wrong shape or one that leaves some query nothing to attend to."""
    if mask.shape != (n, n):
        raise LmscopeError(f"The mask is {mask.shape[0]} x {mask.shape[1]} but the text has {n} tokens.")
    blind = np.flatnonzero(~mask.any(axis=-1))
    if blind.size:
        raise LmscopeError(f"Under this mask query {blind[0]} may see no token: every query needs at least one key.")


def check_window(window: int, n: int) -> None:
    """A window must restrict attention: at least 1 token and fewer than the text's n tokens."""
    _at_least(window, 1, "window")
    if window >= n:
        raise LmscopeError(
            f"Window {window} is larger than the text allows: the text has {n} tokens, so a window of {n} or more "
            f"is full attention. Choose a window from 1 to {n - 1}."
        )


def parse_ints(text: str, what: str) -> list[int]:
    """Whole numbers from a comma- or space-separated list, e.g. "2, 4, 8"; a clear error otherwise."""
    parts = text.replace(",", " ").split()
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise LmscopeError(
            f"The {what} must be whole numbers separated by commas, e.g. 2, 4, 8; got {text!r}."
        ) from None


def masked_nll(handle: ModelHandle, token_ids: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Per-token NLL (nats) of tokens 1..n-1 with the mask imposed on every attention layer (None: no mask), the
    attention computed a chunk of queries at a time (runtime.chunked: no (n, n) float scores or mask)."""
    if mask is not None:
        check_mask(mask, len(token_ids))
    with chunking(handle.model, Chunking(None, CHUNK, allowed=mask)):
        return token_nll(handle, token_ids)


def _decoder_text(handle: ModelHandle, text: str) -> Encoded:
    """The text's tokens, for a decoder and at least two tokens; a clear error otherwise."""
    if not handle.is_causal:
        raise LmscopeError(
            f"'{handle.name}' is an encoder: it does not predict the next token, so it has no loss. "
            "The windowed loss needs a decoder (a causal language model)."
        )
    encoded = encode(handle, text, long_limit(handle))
    if len(encoded.token_ids) < 2:
        raise LmscopeError("The loss needs at least two tokens: type a longer text.")
    return encoded


def windowed_mask(n: int, window: int, sinks: int) -> np.ndarray:
    """A sliding window of `window` tokens that also keeps the first `sinks` tokens visible."""
    return with_sinks(sliding_window_mask(n, window), sinks)


def _sweep(
    handle: ModelHandle, token_ids: list[int], windows: list[int], sinks: int, on_progress: Progress
) -> WindowSweep:
    """One forward pass with full attention, then one per window (and per window with sinks)."""
    encoded = from_ids(handle, token_ids)
    n = len(token_ids)
    # Built one at a time: a long text's masks are (n, n) each, and a sweep may ask for many.
    settings_ = [(None, 0)] + [(w, 0) for w in windows] + ([(w, sinks) for w in windows] if sinks else [])
    losses = []
    for done, (window, kept) in enumerate(settings_, start=1):
        mask = None if window is None else windowed_mask(n, window, kept)
        losses.append(masked_nll(handle, encoded.token_ids, mask))
        on_progress(done, len(settings_))
    per_window = np.stack(losses[1 : 1 + len(windows)])
    return WindowSweep(
        model=handle.name,
        fingerprint=handle.fingerprint,
        token_ids=encoded.token_ids,
        tokens=encoded.tokens,
        windows=np.asarray(windows, dtype=np.int64),
        sinks=sinks,
        nll_full=losses[0],
        nll_window=per_window,
        nll_sinks=np.stack(losses[1 + len(windows) :]) if sinks else per_window,
    )


SWEEP = CachedProbe(NAME, VERSION, _sweep)


def window_sweep(
    handle: ModelHandle,
    text: str,
    windows: Iterable[int],
    sinks: int,
    cache: ResultCache,
    on_progress: Progress | None = None,
) -> Cached[WindowSweep]:
    """The text's loss for each sliding window, without and with sink tokens, from the disk cache when possible."""
    encoded = _decoder_text(handle, text)
    n = len(encoded.token_ids)
    chosen = sorted({int(w) for w in windows})
    if not chosen:
        raise LmscopeError("Give at least one window size, e.g. 2, 4, 8.")
    limits.check_count(chosen, limits.WINDOWS, "window sizes")
    for window in chosen:
        check_window(window, n)
    limits.check_range(sinks, 0, n - 1, "number of sink tokens")
    return SWEEP.cached(handle, cache, on_progress, token_ids=encoded.token_ids.tolist(), windows=chosen, sinks=sinks)


def _pattern(pattern: str) -> str:
    if pattern not in PATTERNS:
        raise LmscopeError(f"Unknown attention pattern '{pattern}': choose one of {', '.join(PATTERNS)}.")
    return pattern


def window_nll(
    handle: ModelHandle,
    text: str,
    window: int,
    sinks: int = 0,
    pattern: str = "sliding",
    structure: Structure = Structure(),
) -> WindowLoss:
    """The text's mean loss with full attention and with every layer limited to a pattern of size `window` (the
    window, or the block of block-sparse), plus the first `sinks` tokens."""
    encoded = _decoder_text(handle, text)
    n = len(encoded.token_ids)
    check_window(window, n)
    limits.check_range(sinks, 0, n - 1, "number of sink tokens")
    structure.check(n)
    mask = with_sinks(structure.mask(_pattern(pattern), n, window), sinks)
    full = masked_nll(handle, encoded.token_ids, None)
    windowed = masked_nll(handle, encoded.token_ids, mask)
    return WindowLoss(
        model=handle.name,
        n_tokens=n,
        pattern=pattern,
        window=window,
        sinks=sinks,
        budget=budget(mask),
        nll_full=float(full.mean()),
        nll_window=float(windowed.mean()),
        perplexity_full=perplexity(full),
        perplexity_window=perplexity(windowed),
    )


def _pattern_sweep(
    handle: ModelHandle,
    token_ids: list[int],
    patterns: list[str],
    sizes: list[int],
    sinks: int,
    dilation: int,
    global_positions: list[int],
    random_blocks: int,
    seed: int,
    on_progress: Progress,
) -> PatternSweep:
    """One forward pass with full attention, then one per pattern, size and (with sinks) sink setting."""
    ids = np.asarray(token_ids, dtype=np.int64)
    n = len(ids)
    structure = Structure(dilation, tuple(global_positions), random_blocks, seed)
    kept_first = (0, sinks) if sinks else (0,)
    shape = (len(patterns), len(sizes), len(kept_first))
    nll, budgets = np.empty(shape), np.empty(shape)
    total = 1 + nll.size
    full = float(masked_nll(handle, ids, None).mean())
    on_progress(1, total)
    for done, (i, j, k) in enumerate(np.ndindex(shape), start=2):
        mask = with_sinks(structure.mask(patterns[i], n, sizes[j]), kept_first[k])  # one (n, n) mask at a time
        budgets[i, j, k] = budget(mask)
        nll[i, j, k] = masked_nll(handle, ids, mask).mean()
        on_progress(done, total)
    return PatternSweep(
        model=handle.name,
        n_tokens=n,
        patterns=patterns,
        labels=[PATTERNS[p] for p in patterns],
        settings=structure.describe(),
        sizes=np.asarray(sizes, dtype=np.int64),
        sinks=sinks,
        nll_full=full,
        nll=nll,
        budget=budgets,
    )


PATTERN_SWEEP = CachedProbe(PATTERNS_NAME, PATTERNS_VERSION, _pattern_sweep)


def pattern_sweep(
    handle: ModelHandle,
    text: str,
    patterns: Iterable[str],
    sizes: Iterable[int],
    sinks: int,
    structure: Structure,
    cache: ResultCache,
    on_progress: Progress | None = None,
) -> Cached[PatternSweep]:
    """The text's mean loss with every layer under each pattern at each size, without and with the first `sinks`
    tokens, and the attention budget each keeps (cached)."""
    encoded = _decoder_text(handle, text)
    n = len(encoded.token_ids)
    chosen = [_pattern(p) for p in dict.fromkeys(patterns)]
    widths = sorted({int(s) for s in sizes})
    if not chosen or not widths:
        raise LmscopeError("Choose at least one pattern and one size, e.g. 2, 4, 8.")
    limits.check_count(widths, limits.WINDOWS, "sizes")
    for width in widths:
        check_window(width, n)
    limits.check_range(sinks, 0, n - 1, "number of sink tokens")
    structure.check(n)
    passes = 1 + len(chosen) * len(widths) * (2 if sinks else 1)
    if passes > limits.SWEEP_PASSES:
        raise LmscopeError(
            f"That sweep needs {passes} forward passes; at most {limits.SWEEP_PASSES} in one request. "
            "Choose fewer patterns or sizes."
        )
    return PATTERN_SWEEP.cached(
        handle,
        cache,
        on_progress,
        token_ids=encoded.token_ids.tolist(),
        patterns=chosen,
        sizes=widths,
        sinks=sinks,
        **structure.inputs(),
    )


def structure_masks(
    n: int, window: int, structure: Structure, sinks: int, queries: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Full causal attention, then every pattern of `PATTERNS` at size `window` (plus `sinks`), by title: (queries,
    n) each, all n queries by default."""
    check_window(window, n)
    masks = [with_sinks(structure.mask(p, n, window, queries), sinks, queries) for p in PATTERNS]
    return dict(zip(mask_titles(window, structure, sinks), [full_mask(n, queries), *masks]))


def mask_titles(window: int, structure: Structure, sinks: int) -> list[str]:
    """The titles of `structure_masks`, in order."""
    kept = f" + {sinks} sinks" if sinks else ""
    return ["full causal", *(structure.title(p, window) + kept for p in PATTERNS)]


MASK_BYTES = 2**28  # a text's masks are built once and kept up to this size; longer texts' rows are rebuilt per layer


def _mask_view(
    handle: ModelHandle,
    token_ids: list[int],
    window: int,
    sinks: int,
    dilation: int,
    global_positions: list[int],
    random_blocks: int,
    seed: int,
) -> MaskView:
    """Run the model once with its attention in chunks of queries (runtime.chunked), measuring each head's kept mass
    under every mask (`structure_masks`) chunk by chunk: the mean over queries of the weight inside the mask. The
    masks are built a chunk of rows at a time and pooled for display, so no (n, n) array is needed."""
    n = len(token_ids)
    structure = Structure(dilation, tuple(global_positions), random_blocks, seed)
    titles = mask_titles(window, structure, sinks)
    pool = -(-n // MAX_MAP_SIDE)
    chunk = query_chunk(pool)
    memo: dict[int, torch.Tensor] = {}
    keep = len(titles) * n * n <= MASK_BYTES

    def rows(start: int, stop: int) -> torch.Tensor:
        """The masks' rows start..stop-1: (masks, rows, n) bool."""
        if start in memo:
            return memo[start]
        built = structure_masks(n, window, structure, sinks, np.arange(start, stop))
        block = torch.from_numpy(np.stack(list(built.values())))
        if keep:
            memo[start] = block
        return block

    cells = torch.empty(len(titles), -(-n // pool), -(-n // pool))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        pooled = block_pool(rows(start, stop).float(), pool, reduce_keys="mean")
        cells[:, start // pool : start // pool + pooled.shape[1]] = pooled
    kept: dict[int, torch.Tensor] = {}

    def on_chunk(layer: int, start: int, first: int, weights: torch.Tensor, _scores: torch.Tensor) -> None:
        stop, last = start + weights.shape[2], first + weights.shape[3]
        inside = torch.einsum("hqk,mqk->mh", weights[0].double(), rows(start, stop)[:, :, first:last].double())
        kept[layer] = kept.get(layer, 0) + inside

    with chunking(handle.model, Chunking(None, chunk), on_chunk=on_chunk):
        forward(handle, np.asarray(token_ids, dtype=np.int64))
    if not kept:
        raise LmscopeError(f"Model '{handle.name}' reported no attention layers to lmscope.")
    return MaskView(
        model=handle.name,
        titles=titles,
        pool=pool,
        cells=cells.numpy(),
        kept=(torch.stack([kept[i] for i in sorted(kept)], dim=1) / n).numpy().astype(np.float32),
    )


MASKS = CachedProbe(MASKS_NAME, MASKS_VERSION, _mask_view)


def mask_view(
    handle: ModelHandle, text: str, window: int, structure: Structure, sinks: int, cache: ResultCache
) -> Cached[MaskView]:
    """The structured masks on this text and the attention mass of every head each keeps (cached)."""
    token_ids = encode(handle, text, long_limit(handle)).token_ids.tolist()
    check_window(window, len(token_ids))  # the other settings are checked as the masks are built
    structure.check(len(token_ids))
    return MASKS.cached(handle, cache, None, token_ids=token_ids, window=window, sinks=sinks, **structure.inputs())
