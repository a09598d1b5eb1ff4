"""Weight spectra: each block matrix's singular values and the statistics read from them (power-law fit,
ranks, norms, entry moments)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from results.errors import LmscopeError

KINDS = ("q", "k", "v", "o", "gate", "up", "down", "embed", "other")


@dataclass(frozen=True)
class WeightRef:
    """One weight matrix: its module name, kind (one of KINDS), block index (-1 for the embedding), [out, in] shape."""

    name: str
    kind: str
    layer: int
    shape: tuple[int, int]


@dataclass(frozen=True)
class PowerLawFit:
    """A power law p(x) ~ x^-alpha fitted to the eigenvalues from xmin up (WeightWatcher's default fit)."""

    alpha: float
    xmin: float
    ks_distance: float  # Kolmogorov-Smirnov distance D between the tail and the fitted law
    n_tail: int  # eigenvalues >= xmin
    sigma: float  # standard error of alpha: (alpha - 1) / sqrt(n_tail)


@dataclass
class MatrixSpectrum:
    """The spectrum of one weight matrix and the statistics read from it."""

    name: str
    kind: str
    layer: int
    shape: tuple[int, int]
    singular_values: np.ndarray  # descending, float64, min(shape) of them
    alpha: float
    xmin: float
    ks_distance: float
    n_tail: int
    sigma: float
    stable_rank: float  # sum of eigenvalues / largest eigenvalue
    spectral_norm: float  # largest singular value (WeightWatcher's "spectral_norm" is its square, lambda_max)
    effective_rank: float  # exp(entropy of the normalised singular values)
    kurtosis: float  # excess kurtosis of the entries (0 for Gaussian entries)
    std: float  # standard deviation of the entries
    beyond_3_std: float  # share of entries more than 3 standard deviations from the mean (Gaussian: 0.27%)
    beyond_6_std: float  # ... more than 6 (Gaussian: 2e-9)

    @property
    def eigenvalues(self) -> np.ndarray:
        """Ascending eigenvalues of W^T W (squared singular values)."""
        return self.singular_values[::-1] ** 2


@dataclass
class ModelSpectra:
    """The spectra of every block weight matrix and the token embedding of one model."""

    model: str
    fingerprint: str
    matrices: list[MatrixSpectrum]

    def get(self, name: str) -> MatrixSpectrum:
        """The spectrum of the matrix with this module name."""
        for matrix in self.matrices:
            if matrix.name == name:
                return matrix
        raise LmscopeError(unknown_matrix(name, self.model))


def unknown_matrix(name: str, model: str) -> str:
    """The message for a matrix name the model does not have."""
    return (
        f"Unknown matrix '{name}' in model '{model}': use a module name such as 'model.layers.0.self_attn.q_proj' "
        "as listed by spectra.block_weights (or the model's named_modules())."
    )


@dataclass(frozen=True)
class EntryMoments:
    """How Gaussian a matrix's entries are: a Gaussian has excess kurtosis 0 and 0.27% / 2e-9 beyond 3 / 6 std."""

    std: float
    kurtosis: float  # excess
    beyond_3_std: float  # share of entries more than 3 standard deviations from the mean
    beyond_6_std: float

