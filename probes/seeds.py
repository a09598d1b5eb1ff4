"""Random streams of their own: a torch generator per (seed, purpose, index), never torch's global one, so a result
depends on its seed alone and no other computation draws from the same stream."""

from __future__ import annotations

import numpy as np
import torch


def generator(seed: int, purpose: int, index: int = 0) -> torch.Generator:
    """A generator for one purpose of one seed (and an index, e.g. a round), seeded through numpy's SeedSequence."""
    state = np.random.SeedSequence([seed, purpose, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))
