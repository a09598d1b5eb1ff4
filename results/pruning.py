"""Compression: a pruning, quantization or low-rank setting, the loss it costs against its storage, and the
spectra of a fine-tuning update."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from results.errors import LmscopeError

KINDS = ("q", "k", "v", "o", "gate", "up", "down")
PRUNERS = ("prune", "wanda", "sparsegpt")  # "prune" is magnitude pruning
QUANTIZERS = ("quantize", "gptq")  # "quantize" is round-to-nearest
CALIBRATED = ("wanda", "sparsegpt", "gptq")  # read the layers' inputs on calibration text
METHODS = (*PRUNERS, *QUANTIZERS, "rank")
METHOD_NAMES = {
    "prune": "magnitude pruning",
    "wanda": "Wanda",
    "sparsegpt": "SparseGPT",
    "quantize": "round-to-nearest",
    "gptq": "GPTQ",
    "rank": "low rank",
}
PATTERNS = ("2:4", "4:8")  # N:M: n kept of every m consecutive inputs of a row
DENSE_BYTES = 2.0  # the fp16 baseline every format is compared with
MAX_BITS = 16
MAX_GROUP = 4096  # inputs sharing one quantization scale


@dataclass(frozen=True)
class Compression:
    """One compression setting: the method, its amount, and which kinds of block matrix it applies to.

    amount is the sparsity in [0, 1) for the pruners (with an N:M `pattern` it is 1 - n/m), the number of bits
    (a whole number from 2 to 16; 16 means the fp16 baseline, left as loaded) for the quantizers, and the rank r
    (a whole number of at least 1) for "rank". `group` is the number of consecutive inputs that share a
    quantization scale (0: one scale per output row).
    """

    method: str
    amount: float
    kinds: tuple[str, ...] = KINDS
    pattern: str = ""
    group: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if self.pattern in PATTERNS:
            n, m = self.nm or (0, 1)
            object.__setattr__(self, "amount", 1 - n / m)

    @property
    def nm(self) -> tuple[int, int] | None:
        """The N:M pattern as (n, m), or None for unstructured pruning."""
        if not self.pattern:
            return None
        n, m = self.pattern.split(":")
        return int(n), int(m)

    def check(self) -> None:
        """Raise LmscopeError with a plain message if the setting cannot be applied."""
        if self.method not in METHODS:
            raise LmscopeError(f"Unknown compression method '{self.method}': choose one of {', '.join(METHODS)}.")
        if not self.kinds:
            raise LmscopeError(f"Choose at least one kind of matrix to compress ({', '.join(KINDS)}).")
        for kind in self.kinds:
            if kind not in KINDS:
                raise LmscopeError(f"Unknown matrix kind '{kind}': choose from {', '.join(KINDS)}.")
        if self.pattern and (self.method not in PRUNERS or self.pattern not in PATTERNS):
            raise LmscopeError(
                f"N:M patterns ({', '.join(PATTERNS)}) apply to pruning ({', '.join(PRUNERS)}), "
                f"not '{self.pattern}' with {self.method}."
            )
        if self.group and (self.method not in QUANTIZERS or not 1 <= self.group <= MAX_GROUP):
            raise LmscopeError(
                f"A group size applies to quantization and is a whole number from 1 to {MAX_GROUP} (got {self.group!r})."
            )
        amount = self.amount
        is_number = isinstance(amount, Real) and not isinstance(amount, bool)
        if self.method in PRUNERS and not (is_number and 0 <= amount < 1):
            raise LmscopeError(
                f"The sparsity is the share of weights set to zero: at least 0 and below 1 (got {amount!r})."
            )
        whole = is_number and math.isfinite(amount) and float(amount).is_integer()
        if self.method in QUANTIZERS and not (whole and 2 <= amount <= MAX_BITS):
            raise LmscopeError(f"Quantization needs a whole number of bits from 2 to {MAX_BITS} (got {amount!r}).")
        if self.method == "rank" and not (whole and amount >= 1):
            raise LmscopeError(f"The rank must be a whole number of at least 1 (got {amount!r}).")

    @property
    def label(self) -> str:
        """A short name for charts, within its method: "50% pruned", "2:4", "4-bit", "4-bit g128", "rank 32"."""
        if self.method in PRUNERS:
            return self.pattern or f"{self.amount:.0%} pruned"
        if self.method in QUANTIZERS:
            return f"{int(self.amount)}-bit" + (f" g{self.group}" if self.group else "")
        return f"rank {int(self.amount)}"


@dataclass
class TradeoffPoint:
    """The loss of the text, of the sentences and of each domain's text under one compression setting, and its
    storage cost."""

    method: str
    amount: float
    label: str  # Compression.label: "50% pruned", "2:4", "4-bit"
    bytes_per_weight: float
    nll_text: float
    nll_corpus: float
    nll_domains: np.ndarray  # (domains,) mean per-token NLL of each text of Tradeoff.domains


@dataclass
class Tradeoff:
    """Loss against bytes per weight for each pruning and quantization method on the same matrices."""

    model: str
    fingerprint: str
    kinds: tuple[str, ...]
    n_tokens_text: int
    n_sentences: int
    base_nll_text: float  # mean per-token NLL (nats) of the uncompressed model
    base_nll_corpus: float  # NaN without sentences
    points: list[TradeoffPoint]
    calibration_tokens: int  # tokens the calibrated methods read (none of them held out)
    domains: list[str]  # texts unlike the corpus (probes.domains), scored under every setting
    base_nll_domains: np.ndarray  # (domains,)


@dataclass
class SettingScore:
    """One compression setting on a text (the pruning command's result): the loss of each token of the text before
    and after, each layer's output error, and the mean loss of each text unlike the corpus (probes.domains)."""

    model: str
    fingerprint: str
    method: str
    amount: float
    pattern: str
    group: int
    kinds: tuple[str, ...]
    calibration_tokens: int  # tokens a calibrated method read; 0 for the others
    bytes_per_weight: float
    nll_base: np.ndarray  # (tokens - 1,) per-token NLL (nats) of the text, uncompressed
    nll_compressed: np.ndarray  # (tokens - 1,)
    reconstruction_error: np.ndarray  # (layers,) relative output error of each layer's compressed matrices
    domains: list[str]
    domain_nll_base: np.ndarray  # (domains,) mean per-token NLL
    domain_nll_compressed: np.ndarray  # (domains,)


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
