"""How Gaussian a set of values is: moments, tails, histogram and QQ points against a robust Gaussian fit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Distribution:
    """Summary statistics, histogram and QQ points of a set of values."""

    n: int
    mean: float
    std: float
    excess_kurtosis: float  # 0 for a Gaussian
    center: float  # robust Gaussian fit: the median
    scale: float  # robust Gaussian fit: 1.4826 x the median absolute deviation
    beyond_3_std: float  # share of values more than 3 sample standard deviations from the mean
    beyond_6_std: float
    minimum: float
    maximum: float
    edges: np.ndarray  # histogram bin edges over center +- RANGE_SIGMAS * scale
    density: np.ndarray  # values per unit, so it compares with the Gaussian pdf
    below: int  # values left of the histogram's range
    above: int  # values right of it
    qq_theoretical: np.ndarray  # standard normal quantiles
    qq_sample: np.ndarray  # the values' quantiles at the same probabilities, standardised by the robust fit

    def gaussian(self, x: np.ndarray) -> np.ndarray:
        """The fitted Gaussian's density at x."""
        return np.exp(-0.5 * ((x - self.center) / self.scale) ** 2) / (self.scale * np.sqrt(2 * np.pi))

