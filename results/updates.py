"""What fine-tuning changed in a model: the spectrum of each block matrix's update W1 - W0."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Difference:
    """The spectrum of one block matrix's change W1 - W0 between two models of the same architecture."""

    name: str  # the module name, e.g. "model.layers.3.self_attn.q_proj"
    shape: tuple[int, int]
    singular_values: np.ndarray  # descending, float32; all zero where the matrix is unchanged
    effective_rank: float  # exp of the entropy of the normalised singular values (0 for no change)
    relative_norm: float  # ||W1 - W0||_F / ||W0||_F
    layer: int
    kind: str

