"""The logit lens's result: what each layer of the residual stream would predict, read out as the last one is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from results.errors import LmscopeError


@dataclass
class LensResult:
    """Readouts of the residual stream at every depth: row 0 the embeddings, row l + 1 the output of block l (the
    last row is the model's own prediction). Per row and position: the `top` most likely next tokens, the
    probability of the token that really comes next, the entropy, and the KL divergence from the model's own
    prediction (its unzeroed last readout)."""

    model: str
    fingerprint: str
    token_ids: np.ndarray  # (n,)
    tokens: list[str]
    zeroed: list[int]  # residual features set to 0 before every readout (none: the plain lens)
    top_ids: np.ndarray  # (layers + 1, n, top) int64, most likely first
    top_tokens: np.ndarray  # (layers + 1, n, top) str: the decoded top_ids
    top_probs: np.ndarray  # (layers + 1, n, top) float32
    next_prob: np.ndarray  # (layers + 1, n - 1) float32: probability of token i + 1 read out at position i
    next_rank: np.ndarray  # (layers + 1, n - 1) int64: its rank among the vocabulary (0: the most likely)
    entropy: np.ndarray  # (layers + 1, n) float32, nats
    kl_final: np.ndarray  # (layers + 1, n) float32, nats: KL(the model's own prediction || this readout)

    @property
    def n_layers(self) -> int:
        """Blocks of the model (the rows are one more: the embeddings first)."""
        return self.top_ids.shape[0] - 1

    def check_position(self, position: int) -> None:
        """Raise a clear error for a position the text does not have."""
        if not 0 <= position < len(self.tokens):
            raise LmscopeError(
                f"Position {position} does not exist: the text has positions 0 to {len(self.tokens) - 1}."
            )


@dataclass
class LogitAttribution:
    """Direct logit attribution at one position toward one next token: what the embeddings, each attention head
    and each MLP add to that token's logit through the final norm (its scale frozen) and the unembedding. The parts
    sum to `logit`, the logit before any soft-capping."""

    model: str
    fingerprint: str
    token_ids: np.ndarray  # (n,)
    tokens: list[str]
    position: int
    target_id: int
    target: str
    logit: float
    embedding: float
    heads: np.ndarray  # (layers, heads) float64
    attention_bias: np.ndarray  # (layers,) float64: o_proj's bias, where the family has one (else 0)
    mlps: np.ndarray  # (layers,) float64

    @property
    def total(self) -> float:
        """The sum of the parts (equal to `logit` up to float rounding of the forward pass)."""
        return float(self.embedding + self.heads.sum() + self.attention_bias.sum() + self.mlps.sum())
