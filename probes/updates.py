"""Fine-tuning updates as low-rank matrices: the singular values of W1 - W0 for every block matrix of a base model
and a tuned one of the same architecture (LoRA's W = W0 + BA has rank at most r)."""

from __future__ import annotations

import math

import numpy as np
import torch

from probes import spectra
from probes.pruning import linear_weights
from results.updates import Difference
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.placement import as_numpy


def differences(base: ModelHandle, tuned: ModelHandle) -> list[Difference]:
    """The singular values of W1 - W0 for every block matrix of a base model (W0) and a tuned one (W1)."""
    if base.architecture != tuned.architecture or base.n_layers != tuned.n_layers:
        raise LmscopeError(
            f"'{base.name}' ({base.architecture}, {base.n_layers} layers) and '{tuned.name}' ({tuned.architecture}, "
            f"{tuned.n_layers} layers) differ in architecture, so their weights cannot be compared."
        )
    before, after = linear_weights(base), linear_weights(tuned)
    if [(m.layer, m.name, m.shape) for m in before] != [(m.layer, m.name, m.shape) for m in after]:
        raise LmscopeError(
            f"'{base.name}' and '{tuned.name}' have different block matrices or shapes, so their weights cannot be "
            "compared."
        )
    found = []
    with torch.inference_mode():
        for w0, w1 in zip(before, after):
            original = w0.weight.detach().float()
            change = w1.weight.detach().float() - original
            if change.any():
                values = as_numpy(torch.linalg.svdvals(change))
            else:  # most matrices of a LoRA merge are untouched: skip their SVD
                values = np.zeros(min(w0.shape), dtype=np.float32)
            norm = float(torch.linalg.norm(original))
            found.append(
                Difference(
                    name=w0.name,
                    shape=w0.shape,
                    singular_values=values.astype(np.float32),
                    effective_rank=spectra.effective_rank(values),
                    relative_norm=float(torch.linalg.norm(change)) / norm if norm > 0 else math.inf,
                    layer=w0.layer,
                    kind=w0.kind,
                )
            )
    return found
