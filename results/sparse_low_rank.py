"""The lecture's opening slide, measured: how well a few DCT coefficients (sparsity) or a few singular directions
(low rank) describe an image, a data matrix, a weight matrix of the model, and a Gaussian matrix of its shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SparseLowRank:
    """Relative Frobenius errors (matrices, shares) of each mean-centred matrix kept to the largest `shares` of its
    2-D DCT coefficients, or to the rank round(share x min(rows, columns)) (at least 1)."""

    model: str
    layer: int
    kind: str
    names: list[str]  # "image", "data", "weight", "gaussian"
    labels: list[str]
    shapes: list[tuple[int, int]]
    shares: np.ndarray
    dct_error: np.ndarray
    svd_error: np.ndarray
    image: np.ndarray  # the image, grey levels 0..1 (float32)
    weight: np.ndarray  # the model's matrix (float32)

    def error(self, basis: str, name: str, share: float) -> float:
        """The error of matrix `name` at a share on the grid, `basis` "dct" or "svd"."""
        errors = self.dct_error if basis == "dct" else self.svd_error
        return float(errors[self.names.index(name), int(np.argmin(np.abs(self.shares - share)))])


@dataclass
class Reconstruction:
    """One matrix, its reconstruction from the largest `share` of its DCT coefficients, and from its best rank
    `rank` approximation, with their relative errors (mean-centred, as in SparseLowRank)."""

    label: str
    original: np.ndarray
    sparse: np.ndarray
    low_rank: np.ndarray
    share: float
    rank: int
    dct_error: float
    svd_error: float
