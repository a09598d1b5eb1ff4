"""Compression: a pruning, quantization or low-rank setting, the loss it costs against its storage, and the
spectra of a fine-tuning update."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from results.errors import LmscopeError

KINDS = ("q", "k", "v", "o", "gate", "up", "down")
METHODS = ("prune", "prune-2:4", "quantize", "rank")
DENSE_BYTES = 2.0  # the fp16 baseline every format is compared with
MAX_BITS = 16


@dataclass(frozen=True)
class Compression:
    """One compression setting: the method, its amount, and which kinds of block matrix it applies to.

    amount is the sparsity in [0, 1) for "prune", ignored for "prune-2:4" (always half the weights), the number
    of bits (a whole number from 2 to 16; 16 means the fp16 baseline, left as loaded) for "quantize", and the
    rank r (a whole number of at least 1) for "rank".
    """

    method: str
    amount: float
    kinds: tuple[str, ...] = KINDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))

    def check(self) -> None:
        """Raise LmscopeError with a plain message if the setting cannot be applied."""
        if self.method not in METHODS:
            raise LmscopeError(f"Unknown compression method '{self.method}': choose one of {', '.join(METHODS)}.")
        if not self.kinds:
            raise LmscopeError(f"Choose at least one kind of matrix to compress ({', '.join(KINDS)}).")
        for kind in self.kinds:
            if kind not in KINDS:
                raise LmscopeError(f"Unknown matrix kind '{kind}': choose from {', '.join(KINDS)}.")
        amount = self.amount
        is_number = isinstance(amount, Real) and not isinstance(amount, bool)
        if self.method == "prune" and not (is_number and 0 <= amount < 1):
            raise LmscopeError(
                f"The sparsity is the share of weights set to zero: at least 0 and below 1 (got {amount!r})."
            )
        whole = is_number and math.isfinite(amount) and float(amount).is_integer()
        if self.method == "quantize" and not (whole and 2 <= amount <= MAX_BITS):
            raise LmscopeError(f"Quantization needs a whole number of bits from 2 to {MAX_BITS} (got {amount!r}).")
        if self.method == "rank" and not (whole and amount >= 1):
            raise LmscopeError(f"The rank must be a whole number of at least 1 (got {amount!r}).")

    @property
    def label(self) -> str:
        """A short name for charts: "50% pruned", "2:4", "4-bit", "rank 32"."""
        if self.method == "prune":
            return f"{self.amount:.0%} pruned"
        if self.method == "prune-2:4":
            return "2:4"
        if self.method == "quantize":
            return f"{int(self.amount)}-bit"
        return f"rank {int(self.amount)}"


@dataclass
class TradeoffPoint:
    """The loss of the text and of the sentences under one compression setting, and its storage cost."""

    method: str
    amount: float
    label: str  # Compression.label: "50% pruned", "2:4", "4-bit"
    bytes_per_weight: float
    nll_text: float
    nll_corpus: float


@dataclass
class Tradeoff:
    """Loss against bytes per weight for unstructured pruning, 2:4 pruning and quantization of the same matrices."""

    model: str
    fingerprint: str
    kinds: tuple[str, ...]
    n_tokens_text: int
    n_sentences: int
    base_nll_text: float  # mean per-token NLL (nats) of the uncompressed model
    base_nll_corpus: float  # NaN without sentences
    points: list[TradeoffPoint]


@dataclass
class RankSweep:
    """Loss of the text against the rank r to which the chosen matrices are truncated."""

    model: str
    fingerprint: str
    kinds: tuple[str, ...]
    ranks: np.ndarray  # int64, as asked
    nll: np.ndarray  # mean per-token NLL (nats) of the text at each rank
    base_nll: float
    bytes_per_weight: np.ndarray
    n_tokens: int


