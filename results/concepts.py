"""Concepts as sparse combinations: a dictionary of atoms learned on a model's word vectors, and one word's sparse
code over it (Arora et al. 2018, "Linear algebraic structure of word senses")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ConceptDictionary:
    """Atoms learned on one model's vectors (token embeddings, or one block's output over the corpus), each
    labelled by the tokens that use it most, with how well sparse codes over it reconstruct held-out vectors.

    Vectors are centred (minus `center`) and scaled to unit length before coding, so coefficients compare across
    words and a residual's norm is the relative reconstruction error."""

    model: str
    fingerprint: str
    layer: int | None  # None: the input embedding matrix; else the block whose output was decomposed
    source: str  # what the rows are, in words
    n_nonzero: int  # non-zeros per sparse code (OMP)
    atoms: np.ndarray  # (n_atoms, d) float32 unit rows, signed so that their main users have positive coefficients
    center: np.ndarray  # (d,) float32: the mean of the fitted vectors
    labels: list[list[str]]  # per atom: the distinct tokens with the largest coefficients on it, largest first
    label_coefficients: np.ndarray  # (n_atoms, labels) their coefficients, NaN where an atom has fewer users
    usage: np.ndarray  # (n_atoms,) how many fitted rows use each atom
    fit_token_ids: np.ndarray  # (rows,) the token of each fitted row
    n_candidates: int  # rows there were to sample from
    n_heldout: int
    heldout_nonzeros: float  # mean non-zeros per held-out code
    heldout_error: float  # mean relative reconstruction error on held-out rows
    fit_error: float  # the same on the fitted rows
    fit_seconds: float

    @property
    def n_atoms(self) -> int:
        return self.atoms.shape[0]

    def label(self, atom: int, n: int = 3) -> str:
        """An atom's name: its first n label tokens."""
        return ", ".join(self.labels[atom][:n]) or f"atom {atom}"


@dataclass
class WordConcepts:
    """One word's vector as a sparse combination of atoms: x = sum_i a_i phi_i + r."""

    model: str
    layer: int | None
    word: str
    tokens: list[str]  # the word's tokens (as it appears after a space)
    token_ids: np.ndarray
    vector: np.ndarray  # (d,) x: the word's vector, centred and scaled to unit length
    atoms: np.ndarray  # (k,) atom indices, by |coefficient|, largest first
    coefficients: np.ndarray  # (k,) a_i
    shares: np.ndarray  # (k,) a_i <phi_i, x>: each atom's part of |x|^2 = 1 (the rest is |r|^2)
    reconstruction_error: float  # |x - sum_i a_i phi_i| / |x|

    @property
    def residual_share(self) -> float:
        """The part of |x|^2 the atoms leave: |r|^2 (OMP's residual is orthogonal to the atoms it chose)."""
        return self.reconstruction_error**2
