"""Head types: every head's score for each type the lecture names, its offset profile, and how mixed it is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE = "none"  # a head that reaches no type's threshold


@dataclass
class HeadTypes:
    """Scores (types, layers, heads) against each type's threshold; NaN where a type cannot apply (a decoder has no
    next-token head). `profile` is each head's mean weight on the key `offset` tokens before its query."""

    model: str
    types: list[str]
    thresholds: np.ndarray  # (types,)
    scores: np.ndarray  # (types, layers, heads)
    offsets: np.ndarray  # (offsets,) key offsets q - k; negative offsets are later keys (encoders only)
    profile: np.ndarray  # (layers, heads, offsets); NaN at offsets a causal head cannot see

    def score(self, kind: str) -> np.ndarray:
        """(layers, heads) scores of one type."""
        return self.scores[self.types.index(kind)]

    @property
    def ratios(self) -> np.ndarray:
        """Each score over its type's threshold (0 where the type does not apply): 1 or more passes."""
        return np.nan_to_num(self.scores / self.thresholds[:, None, None], nan=0.0)

    @property
    def passed(self) -> np.ndarray:
        """(types, layers, heads): which types each head passes."""
        return self.ratios >= 1.0

    @property
    def count(self) -> np.ndarray:
        """(layers, heads): how many types each head passes (2 or more: a mixed head)."""
        return self.passed.sum(axis=0)

    @property
    def dominant(self) -> np.ndarray:
        """(layers, heads): the passed type furthest above its threshold, or "none"."""
        best = np.asarray(self.types)[self.ratios.argmax(axis=0)]
        return np.where(self.count > 0, best, NONE)

    @property
    def labels(self) -> np.ndarray:
        """(layers, heads): every passed type, strongest first ("induction + sink"), or "none"."""
        ratios, passed = self.ratios, self.passed
        out = np.full(ratios.shape[1:], NONE, dtype=object)
        for layer, head in np.ndindex(out.shape):
            order = [i for i in np.argsort(-ratios[:, layer, head], kind="stable") if passed[i, layer, head]]
            if order:
                out[layer, head] = " + ".join(self.types[i] for i in order)
        return out

    @property
    def entropy(self) -> np.ndarray:
        """(layers, heads): entropy of the head's ratios normalised to sum 1, over log(number of types that apply to
        the model; a decoder has no next-token type): 0 when one type holds all of its score, 1 when every type
        holds the same share (a head that is a bit of everything)."""
        ratios = np.clip(self.ratios, 0.0, None)
        total = ratios.sum(axis=0, keepdims=True)
        p = np.divide(ratios, total, out=np.zeros_like(ratios), where=total > 0)
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        applicable = int(np.isfinite(self.scores).any(axis=(1, 2)).sum())
        return terms.sum(axis=0) / np.log(max(applicable, 2))

    @property
    def dominant_offset(self) -> np.ndarray:
        """(layers, heads): the offset other than 0 that a head puts the most weight on."""
        away = np.where(self.offsets == 0, np.nan, 0.0)
        return self.offsets[np.nanargmax(np.nan_to_num(self.profile, nan=-1.0) + away, axis=-1)]

    @property
    def n_layers(self) -> int:
        return self.scores.shape[1]

    @property
    def n_heads(self) -> int:
        return self.scores.shape[2]
