"""Weight spectra: the eigenvalues of every weight matrix's W^T W, their power-law tail and a random-matrix baseline.

Heavy-tailed self-regularisation (Martin & Mahoney 2021): the eigenvalue density of a trained layer's W^T W has a
power-law tail whose exponent alpha is small (2-4) where the layer learnt correlations and large (> 6) where it is
close to random. The fit is WeightWatcher 0.7.7's default one, recomputed here (vectorised over every xmin
candidate) so that alpha, xmin and D agree with it; the Marchenko-Pastur law is the bulk of a random matrix of the
same shape and entry variance.

Eigenvalues come from the smaller Gram matrix (W W^T or W^T W) in float64 rather than from an SVD, several times
faster: on smollm2 they differ from squared singular values (scipy's gesdd, WeightWatcher's way) by under 1e-14 of
the largest eigenvalue, and every eigenvalue above WeightWatcher's 1e-5 cut-off by under 1e-9 of itself. Token
embeddings are analysed whatever their vocabulary size (WeightWatcher skips matrices with more than 50,000 rows,
such as Gemma's 262k vocabulary): the Gram matrix is then accumulated over blocks of rows so that memory stays
bounded (all of gemma3-270m took 3.6 s on 2 cores). A tied output head shares the embedding's matrix and is not
repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from probes.distribution import describe
from probes.residual import blocks
from results.distribution import Distribution
from results.spectra import EntryMoments, MatrixSpectrum, ModelSpectra, PowerLawFit, WeightRef, unknown_matrix
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.machine import usable_cores
from runtime.placement import as_numpy
from runtime.probe import CachedProbe

NAME = "spectra"
VERSION = 3
DISTRIBUTION_NAME = "weight-distribution"
DISTRIBUTION_VERSION = 1  # of weight_distribution's cached histograms
EVALS_THRESH = 1e-5  # WeightWatcher fits only eigenvalues above this
EMBED_LAYER = -1
_MAX_WORKERS = 8
_CHUNK_ELEMENTS = 2**20  # float64 temporaries of 8 MiB: memory stays bounded on big matrices
# Module names (suffixes relative to the block) per kind, most specific first: BERT's "output.dense" is the MLP's
# down projection unless it is "attention.output.dense".
_SUFFIXES = (
    ("o", ("attention.output.dense", "o_proj", "out_proj", "attn.c_proj", "attention.dense", "self_attention.dense")),
    ("q", ("q_proj", "query")),
    ("k", ("k_proj", "key")),
    ("v", ("v_proj", "value")),
    ("gate", ("gate_proj", "w1")),
    ("up", ("up_proj", "intermediate.dense", "fc1", "c_fc", "dense_h_to_4h", "w3")),
    ("down", ("down_proj", "output.dense", "fc2", "mlp.c_proj", "dense_4h_to_h", "w2")),
)


def _kind(relative: str) -> str:
    for kind, suffixes in _SUFFIXES:
        if any(relative == s or relative.endswith("." + s) for s in suffixes):
            return kind
    return "other"


def _module_names(handle: ModelHandle) -> dict[int, str]:
    return {id(module): name for name, module in handle.model.named_modules()}


def _matrix_shape(weight: torch.Tensor) -> tuple[int, int]:
    rows, cols = weight.shape
    return rows, cols


def block_weights(handle: ModelHandle) -> list[WeightRef]:
    """The token embedding (layer -1) and every 2-D weight matrix of the transformer blocks, in model order."""
    names = _module_names(handle)
    refs: list[WeightRef] = []
    embedding = handle.model.get_input_embeddings()
    weight = getattr(embedding, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.ndim == 2:
        refs.append(WeightRef(names[id(embedding)], "embed", EMBED_LAYER, _matrix_shape(weight)))
    for layer, block in enumerate(blocks(handle)):
        for relative, module in block.named_modules():
            weight = module._parameters.get("weight")
            if isinstance(weight, nn.Parameter) and weight.ndim == 2:
                refs.append(WeightRef(names[id(module)], _kind(relative), layer, _matrix_shape(weight)))
    return refs


def _weight(handle: ModelHandle, name: str) -> torch.Tensor:
    try:
        module = handle.model.get_submodule(name)
    except AttributeError:
        module = None
    weight = getattr(module, "weight", None) if module is not None else None
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise LmscopeError(unknown_matrix(name, handle.name))
    return weight.detach()


def weight_matrix(handle: ModelHandle, name: str) -> np.ndarray:
    """A float32 copy of the weight of the module with this name ([out, in] as stored)."""
    return as_numpy(_weight(handle, name)).copy()


def _distribution(handle: ModelHandle, matrix: str) -> Distribution:
    return describe(weight_matrix(handle, matrix))


DISTRIBUTION = CachedProbe(DISTRIBUTION_NAME, DISTRIBUTION_VERSION, _distribution)


def weight_distribution(handle: ModelHandle, matrix: str, cache: ResultCache) -> Cached[Distribution]:
    """The histogram and tail statistics of one weight matrix's entries, cached."""
    return DISTRIBUTION.cached(handle, cache, matrix=matrix)


def _rows_per_chunk(weight: np.ndarray) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, weight.shape[1]))


def _gram(weight: np.ndarray) -> np.ndarray:
    """The smaller Gram matrix in float64, accumulated over blocks of rows of the taller orientation."""
    tall = weight if weight.shape[0] >= weight.shape[1] else weight.T
    step = _rows_per_chunk(tall)
    if tall.shape[0] <= step * 4:
        whole = tall.astype(np.float64)
        return whole.T @ whole
    gram = np.zeros((tall.shape[1], tall.shape[1]))
    for start in range(0, tall.shape[0], step):
        part = tall[start : start + step].astype(np.float64)
        gram += part.T @ part
    return gram


def eigenvalues(weight: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of W^T W (squared singular values, no 1/N), the min(shape) largest, float64."""
    weight = np.asarray(weight)
    if weight.ndim != 2 or min(weight.shape) == 0:
        raise LmscopeError(f"A weight matrix must be 2-D and non-empty; this one has shape {weight.shape}.")
    # On one BLAS thread, as every lmscope process runs its BLAS (runtime.machine.one_blas_thread): eigvalsh's
    # tridiagonalisation is a long chain of small matrix-vector products that, threaded, slows 20-300 fold whenever
    # another process holds a core. `compute` uses the cores by working on several matrices at once instead.
    return np.clip(np.linalg.eigvalsh(_gram(weight)), 0.0, None)


def fit_power_law(evals: np.ndarray) -> PowerLawFit:
    """WeightWatcher's power-law fit: the maximum-likelihood alpha for each xmin candidate, the xmin of least D.

    Data: eigenvalues above 1e-5, ascending, x_0..x_{n-1}; candidates x_0..x_{n-2}. For candidate i with
    k = n - i: alpha_i = 1 + k / sum_{j>=i} log(x_j / x_i), and D_i = max_{j>=i} |1 - (x_j/x_i)^(1-alpha_i) -
    (j-i)/k| (1 where alpha_i <= 1). The first candidate with the smallest D wins. WeightWatcher switches to a
    different estimator below 20 eigenvalues; this fit does not.
    """
    x = np.sort(np.asarray(evals, dtype=np.float64).ravel())
    x = x[x > EVALS_THRESH]
    n = len(x)
    if n < 2:
        return PowerLawFit(float("nan"), float("nan"), float("nan"), n, float("nan"))
    logs = np.log(x)
    tail_sums = np.cumsum(logs[::-1])[::-1][:-1]  # sum_{j>=i} log x_j for each candidate
    k = np.arange(n, 1, -1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1.0 + k / (tail_sums - k * logs[:-1])
    ds = np.ones(n - 1)
    step = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n - 1, step):
        rows = np.arange(start, min(start + step, n - 1))
        gaps = logs[start:][None, :] - logs[rows][:, None]  # log(x_j / x_i), j from start
        offsets = np.arange(start, n)[None, :] - rows[:, None]  # j - i
        with np.errstate(over="ignore", invalid="ignore"):
            deviation = np.abs(1.0 - np.exp((1.0 - alphas[rows])[:, None] * gaps) - offsets / k[rows][:, None])
        deviation[offsets < 0] = 0.0
        ds[rows] = deviation.max(axis=1)
    ds[~(np.isfinite(alphas) & (alphas > 1.0))] = 1.0
    best = int(np.argmin(ds))
    return PowerLawFit(
        alpha=float(alphas[best]),
        xmin=float(x[best]),
        ks_distance=float(ds[best]),
        n_tail=int(k[best]),
        sigma=float((alphas[best] - 1.0) / np.sqrt(k[best])),
    )


def marchenko_pastur(shape: tuple[int, int], variance: float, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """The Marchenko-Pastur density of the min(shape) eigenvalues of W^T W for an out x in matrix of iid entries.

    Same unnormalised scale as `eigenvalues`: with N = max(shape), M = min(shape), the bulk spans
    variance * (sqrt(N) -+ sqrt(M))^2 and the density integrates to 1 over it. Points crowd towards the edges.
    """
    if min(shape) < 1 or variance <= 0 or points < 2:
        raise LmscopeError(
            "The Marchenko-Pastur law needs a non-empty shape, a positive variance and 2 points or more."
        )
    big, small = max(shape), min(shape)
    low = variance * (np.sqrt(big) - np.sqrt(small)) ** 2
    high = variance * (np.sqrt(big) + np.sqrt(small)) ** 2
    # Chebyshev-like nodes; a square matrix's density diverges at 0, so its nodes stop short of the ends.
    theta = np.linspace(0.0, np.pi, points) if low > 0 else np.pi * (np.arange(points) + 0.5) / points
    x = low + (high - low) * (1.0 - np.cos(theta)) / 2.0
    density = np.sqrt(np.clip((high - x) * (x - low), 0.0, None)) / (2.0 * np.pi * variance * small * x)
    return x, density


def effective_rank(singular_values: np.ndarray) -> float:
    """exp of the Shannon entropy of s / sum(s) (Roy & Vetterli 2007): between 1 and the number of values."""
    s = np.asarray(singular_values, dtype=np.float64)
    s = s[s > 0]
    if len(s) == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def stable_rank(evals: np.ndarray) -> float:
    """sum of eigenvalues / largest eigenvalue (the squared Frobenius over the squared spectral norm)."""
    evals = np.asarray(evals, dtype=np.float64)
    top = evals.max() if len(evals) else 0.0
    return float(evals.sum() / top) if top > 0 else 0.0


def entry_moments(weight: np.ndarray) -> EntryMoments:
    """Standard deviation, excess kurtosis and tail shares of the entries, in float64 over blocks of rows."""
    mean = float(np.mean(weight, dtype=np.float64))
    second = fourth = 0.0
    step = _rows_per_chunk(weight)
    for start in range(0, weight.shape[0], step):
        squared = weight[start : start + step].astype(np.float64).ravel()
        squared -= mean
        np.square(squared, out=squared)
        second += float(squared.sum())
        fourth += float(np.dot(squared, squared))
    variance, fourth = second / weight.size, fourth / weight.size
    beyond = np.zeros(2)
    for start in range(0, weight.shape[0], step):
        deviation = np.abs(weight[start : start + step].astype(np.float64) - mean)
        beyond += [np.count_nonzero(deviation > 3 * variance**0.5), np.count_nonzero(deviation > 6 * variance**0.5)]
    return EntryMoments(
        std=float(np.sqrt(variance)),
        kurtosis=fourth / variance**2 - 3.0 if variance > 0 else 0.0,
        beyond_3_std=float(beyond[0] / weight.size),
        beyond_6_std=float(beyond[1] / weight.size),
    )


def spectrum(ref: WeightRef, weight: np.ndarray) -> MatrixSpectrum:
    """The spectrum, power-law fit and statistics of one weight matrix."""
    evals = eigenvalues(weight)
    moments = entry_moments(np.asarray(weight))
    fit = fit_power_law(evals)
    singular_values = np.sqrt(evals[::-1])
    return MatrixSpectrum(
        name=ref.name,
        kind=ref.kind,
        layer=ref.layer,
        shape=ref.shape,
        singular_values=singular_values,
        alpha=fit.alpha,
        xmin=fit.xmin,
        ks_distance=fit.ks_distance,
        n_tail=fit.n_tail,
        sigma=fit.sigma,
        stable_rank=stable_rank(evals),
        spectral_norm=float(singular_values[0]),
        effective_rank=effective_rank(singular_values),
        kurtosis=moments.kurtosis,
        std=moments.std,
        beyond_3_std=moments.beyond_3_std,
        beyond_6_std=moments.beyond_6_std,
    )


def worker_count() -> int:
    """Threads for work on many matrices at once, each with one BLAS thread: one per core this process may use, at
    most 8."""
    return min(_MAX_WORKERS, usable_cores())


def compute(handle: ModelHandle, on_progress: Callable[[int, int], None] | None = None) -> ModelSpectra:
    """The spectra of all block matrices and the embedding, without the cache; progress after each matrix.

    Matrices are worked on in parallel, one per core (numpy releases the GIL), each with one BLAS thread; progress
    is reported from the calling thread, in model order.
    """
    refs = block_weights(handle)
    matrices = []
    # The weights are views of the model's parameters: no copy of the model.
    with ThreadPoolExecutor(worker_count()) as pool:
        jobs = pool.map(lambda ref: spectrum(ref, as_numpy(_weight(handle, ref.name))), refs)
        for done, matrix in enumerate(jobs, start=1):
            matrices.append(matrix)
            if on_progress is not None:
                on_progress(done, len(refs))
    return ModelSpectra(handle.name, handle.fingerprint, matrices)


PROBE = CachedProbe(NAME, VERSION, compute)


def run(
    handle: ModelHandle, cache: ResultCache, on_progress: Callable[[int, int], None] | None = None
) -> Cached[ModelSpectra]:
    """The spectra of all block matrices and the embedding, from the disk cache when computed before."""
    return PROBE.cached(handle, cache, on_progress)
