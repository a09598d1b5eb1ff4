"""MLP neurons: how many are active per token, and which never are (dead neurons), per layer.

A neuron is active on a token when its pre-activation z (the input of the MLP's activation function: the gate
projection of a gated MLP) exceeds a threshold tau. For ReLU with tau = 0 that is exactly "output non-zero".
SiLU and GELU are not ReLU: they are close to zero for z well below 0 and close to z above it, so z > tau
splits their neurons the same way, with tau a choice. A neuron is dead when it is never active on a corpus.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from probes.batches import LengthGroups, Progress, batches, grouped
from probes.residual import blocks
from results.neurons import EDGES, NeuronStats
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.hooks import observing
from runtime.placement import host
from runtime.probe import CachedProbe

NAME = "neurons"
VERSION = 2
# Names (last parts) of the linear layer whose output goes through the activation, by model family.
PRE_ACTIVATION = ("mlp.gate_proj", "intermediate.dense", "mlp.fc1", "mlp.c_fc", "mlp.dense_h_to_4h", "mlp.w1")


def _pre_activations(block: nn.Module) -> list[nn.Module]:
    return [m for name, m in block.named_modules() if name.endswith(PRE_ACTIVATION)]


def has_dense_mlp(handle: ModelHandle) -> bool:
    """Whether every block has one dense MLP whose neurons lmscope can read (an MoE's experts are not one)."""
    return all(len(_pre_activations(block)) == 1 for block in blocks(handle))


def pre_activation_modules(handle: ModelHandle) -> list[nn.Module]:
    """Per block, the linear layer whose output is the MLP neurons' pre-activations."""
    found = []
    for block in blocks(handle):
        modules = _pre_activations(block)
        if len(modules) != 1:
            raise LmscopeError(
                f"lmscope finds MLP neurons in dense MLPs ({', '.join(PRE_ACTIVATION)}); "
                f"model '{handle.name}' has {len(modules)} such layers per block."
            )
        found.append(modules[0])
    return found


def activation_name(handle: ModelHandle) -> str:
    """The MLP activation function as the config names it (silu, gelu_pytorch_tanh, ...)."""
    config = handle.text_config
    return str(getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", "unknown"))


def check_threshold(tau: float) -> int:
    """The index into EDGES of the threshold; a clear error for one off the grid."""
    index = int(np.argmin(np.abs(EDGES - tau)))
    if abs(EDGES[index] - tau) > 1e-6:
        raise LmscopeError(f"The threshold must be a multiple of 0.05 between {EDGES[0]} and {EDGES[-1]}; got {tau}.")
    return index


def active_share(stats: NeuronStats, tau: float) -> np.ndarray:
    """Per layer: the mean over tokens of the share of neurons with z > tau."""
    index = check_threshold(tau)
    return stats.counts[:, index:].sum(axis=1) / stats.counts.sum(axis=1)


def dead_share(stats: NeuronStats, tau: float) -> np.ndarray:
    """Per layer: the share of neurons whose z never exceeds tau."""
    check_threshold(tau)
    return (stats.peak <= tau).mean(axis=1)


def _compute(handle: ModelHandle, groups: LengthGroups, on_progress: Progress) -> NeuronStats:
    modules = pre_activation_modules(handle)
    inner = torch.as_tensor(EDGES[1:-1], dtype=torch.float32)
    counts = np.zeros((len(modules), len(EDGES) - 1), dtype=np.int64)
    peaks: dict[int, np.ndarray] = {}

    def hook(layer: int):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            z = host(output).reshape(-1, output.shape[-1])
            counts[layer] += np.bincount(torch.bucketize(z.flatten(), inner).numpy(), minlength=counts.shape[1])
            highest = z.amax(dim=0).numpy()
            peaks[layer] = np.maximum(peaks[layer], highest) if layer in peaks else highest

        return record

    with observing(forward={m: hook(i) for i, m in enumerate(modules)}):
        for batch in batches(dict(groups), on_progress):
            forward(handle, batch)
    return NeuronStats(
        model=handle.name,
        activation=activation_name(handle),
        gated=any(name.endswith("gate_proj") for name, _ in blocks(handle)[0].named_modules()),
        n_sequences=sum(len(g) for _, g in groups),
        n_tokens=sum(length * len(g) for length, g in groups),
        counts=counts,
        peak=np.stack([peaks[i] for i in range(len(modules))]),
    )


PROBE = CachedProbe(NAME, VERSION, _compute)


def run(
    handle: ModelHandle, sentences: Sequence[str], cache: ResultCache, on_progress: Progress | None = None
) -> Cached[NeuronStats]:
    """Neuron statistics over the sentences (one text is one sentence), run in batches, cached."""
    return PROBE.cached(handle, cache, on_progress, groups=grouped(handle, sentences))
