"""The lecture's opening slide, live: images are nearly sparse under a Fourier-type basis and data matrices nearly
low-rank; a trained weight matrix is neither, much like a Gaussian matrix of its shape.

Four matrices, each minus its mean (the mean is one DCT coefficient and one rank, and would dominate the image's
energy): a photograph shipped with scikit-learn (china.jpg, in grey levels), a data matrix (scikit-learn's 1,797
handwritten digits x 64 pixels), one block matrix of the model, and a Gaussian matrix of the same shape (seeded).
Sparsity: keep the largest share of the orthonormal 2-D DCT-II coefficients (SciPy), zero the rest; by Parseval
the relative error is the norm of the dropped coefficients over the norm of all. Low rank: the best rank-r
approximation (Eckart-Young), whose relative error is the norm of the dropped singular values over all of them.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from sklearn.datasets import load_digits, load_sample_image

from probes import pruning
from results.pruning import KINDS
from results.sparse_low_rank import Reconstruction, SparseLowRank
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe

NAME = "sparse-low-rank"
VERSION = 1
SHARES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
IMAGE = "china.jpg"
SEED = 0


def sample_image() -> np.ndarray:
    """The photograph in grey levels from 0 to 1 (427 x 640)."""
    return load_sample_image(IMAGE).astype(np.float64).mean(axis=2) / 255.0


def data_matrix() -> np.ndarray:
    """scikit-learn's handwritten digits: 1,797 images x 64 pixels (grey levels 0 to 16)."""
    return np.asarray(load_digits(return_X_y=True)[0], dtype=np.float64)


def _matrix(handle: ModelHandle, layer: int, kind: str) -> pruning.Matrix:
    """Block `layer`'s matrix of a kind (q, k, v, o, gate, up, down), its weight unread; a clear error for a bad
    choice."""
    if kind not in KINDS:
        raise LmscopeError(f"Unknown matrix kind '{kind}': choose one of {', '.join(KINDS)}.")
    if not 0 <= layer < handle.n_layers:
        raise LmscopeError(f"Layer {layer} is out of range: '{handle.name}' has layers 0 to {handle.n_layers - 1}.")
    found = [m for m in pruning.linear_weights(handle, (kind,)) if m.layer == layer]
    if not found:
        raise LmscopeError(f"'{handle.name}' has no {kind} matrix in layer {layer}.")
    return found[0]


def model_matrix(handle: ModelHandle, layer: int, kind: str) -> np.ndarray:
    """Block `layer`'s matrix of a kind as float64 (its weight read from the model)."""
    return _matrix(handle, layer, kind).weight.detach().double().cpu().numpy()


def _dct(matrix: np.ndarray) -> np.ndarray:
    """The orthonormal 2-D DCT-II."""
    return np.asarray(scipy.fft.dctn(matrix, norm="ortho"))


def _kept(count: int, share: float) -> int:
    """How many of `count` coefficients (or singular values) a share keeps: at least 1."""
    return max(1, round(share * count))


def _dropped(energy: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Relative error sqrt(dropped / total) of keeping the largest share of `energy` (sorted, largest first)."""
    kept = np.cumsum(energy)
    dropped = kept[-1] - kept[[_kept(energy.size, s) - 1 for s in shares]]
    return np.sqrt(np.clip(dropped, 0.0, None) / kept[-1])


def dct_error(matrix: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Relative error of keeping the largest `shares` of the mean-centred matrix's 2-D DCT coefficients."""
    return _dropped(np.sort(_dct(matrix - matrix.mean()).ravel() ** 2)[::-1], shares)


def svd_error(matrix: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Relative error of the best approximation of the mean-centred matrix at rank round(share x min side)."""
    return _dropped(np.linalg.svd(matrix - matrix.mean(), compute_uv=False) ** 2, shares)


def sparse_approximation(matrix: np.ndarray, share: float) -> np.ndarray:
    """The matrix rebuilt from its mean and the largest `share` of its centred DCT coefficients."""
    mean = matrix.mean()
    coefficients = _dct(matrix - mean)
    threshold = np.sort(np.abs(coefficients).ravel())[::-1][_kept(coefficients.size, share) - 1]
    kept = np.where(np.abs(coefficients) >= threshold, coefficients, 0.0)
    return np.asarray(scipy.fft.idctn(kept, norm="ortho")) + mean


def low_rank_approximation(matrix: np.ndarray, rank: int) -> np.ndarray:
    """The matrix's mean plus the best rank-`rank` approximation of the rest (truncated SVD)."""
    mean = matrix.mean()
    u, s, vt = np.linalg.svd(matrix - mean, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank] + mean


def _measure(handle: ModelHandle, layer: int, kind: str) -> SparseLowRank:
    weight = model_matrix(handle, layer, kind)
    matrices = {
        "image": (f"a photograph ({IMAGE})", sample_image()),
        "data": ("a data matrix (1,797 digits x 64 pixels)", data_matrix()),
        "weight": (f"{handle.name}: layer {layer} {kind}", weight),
        "gaussian": ("a Gaussian matrix of its shape", np.random.default_rng(SEED).standard_normal(weight.shape)),
    }
    shares = np.asarray(SHARES)
    return SparseLowRank(
        model=handle.name,
        layer=layer,
        kind=kind,
        names=list(matrices),
        labels=[label for label, _ in matrices.values()],
        shapes=[(int(m.shape[0]), int(m.shape[1])) for _, m in matrices.values()],
        shares=shares,
        dct_error=np.stack([dct_error(m, shares) for _, m in matrices.values()]),
        svd_error=np.stack([svd_error(m, shares) for _, m in matrices.values()]),
        image=matrices["image"][1].astype(np.float32),
        weight=weight.astype(np.float32),
    )


PROBE = CachedProbe(NAME, VERSION, _measure)


def run(handle: ModelHandle, layer: int, kind: str, cache: ResultCache) -> Cached[SparseLowRank]:
    """The DCT and SVD error curves of the four matrices, with the model's block `layer` matrix of `kind`."""
    _matrix(handle, layer, kind)  # a plain error before any work (and before any weight is read)
    return PROBE.cached(handle, cache, layer=layer, kind=kind)


def reconstructions(result: SparseLowRank, share: float, rank_share: float) -> list[Reconstruction]:
    """The image and the weight matrix rebuilt from the largest `share` of their DCT coefficients and at the rank
    that keeps `rank_share` of their smaller side."""
    if not 0 < share <= 1 or not 0 < rank_share <= 1:
        raise LmscopeError("The shares kept must be above 0% and at most 100%.")
    found = []
    for name, matrix in (("image", result.image), ("weight", result.weight)):
        original = matrix.astype(np.float64)
        rank = _kept(min(original.shape), rank_share)
        sparse, low = sparse_approximation(original, share), low_rank_approximation(original, rank)
        centred = np.linalg.norm(original - original.mean())
        found.append(
            Reconstruction(
                label=result.labels[result.names.index(name)],
                original=original,
                sparse=sparse,
                low_rank=low,
                share=share,
                rank=rank,
                dct_error=float(np.linalg.norm(original - sparse) / centred),
                svd_error=float(np.linalg.norm(original - low) / centred),
            )
        )
    return found
