"""How Gaussian a set of values is: moments, tails, a histogram and a QQ plot against a robust Gaussian fit.

The fit is robust (centre = median, scale = 1.4826 x the median absolute deviation) so that a few huge outliers,
the point of the lecture, do not widen the Gaussian they are compared with; the sample standard deviation is
reported too, and the tail shares use it, as the literature does.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from results.distribution import Distribution

BINS = 121
RANGE_SIGMAS = 8.0  # the histogram spans the robust centre +- this many robust scales
QQ_POINTS = 201
MAD_TO_SIGMA = 1.4826  # the MAD of a Gaussian is 0.6745 sigma


def describe(values: np.ndarray) -> Distribution:
    """Moments, tails, histogram and QQ points of the values (any shape, at least two of them)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    mean, std = float(x.mean()), float(x.std())
    center = float(np.median(x))
    scale = MAD_TO_SIGMA * float(np.median(np.abs(x - center))) or std or 1.0
    low, high = center - RANGE_SIGMAS * scale, center + RANGE_SIGMAS * scale
    counts, edges = np.histogram(x, bins=BINS, range=(low, high))
    # Probabilities from 1/(2n) to 1 - 1/(2n), evenly spaced in normal quantiles, so the extremes are shown.
    z_end = -special.ndtri(0.5 / len(x))
    z = np.linspace(-z_end, z_end, QQ_POINTS)
    deviation = np.abs(x - mean)
    return Distribution(
        n=len(x),
        mean=mean,
        std=std,
        excess_kurtosis=float(np.mean((x - mean) ** 4) / std**4 - 3.0) if std > 0 else 0.0,
        center=center,
        scale=scale,
        beyond_3_std=float(np.mean(deviation > 3 * std)),
        beyond_6_std=float(np.mean(deviation > 6 * std)),
        minimum=float(x.min()),
        maximum=float(x.max()),
        edges=edges,
        density=counts / (len(x) * np.diff(edges)),
        below=int(np.sum(x < low)),
        above=int(np.sum(x > high)),
        qq_theoretical=z,
        qq_sample=(np.quantile(x, special.ndtr(z)) - center) / scale,
    )
