"""A built-in Mixture-of-Experts derived from the dense SmolLM2 by MoEfication (Zhang et al. 2022).

Each MLP's 1,536 intermediate neurons are split into E equal experts by clustering neurons that activate
together on the bundled corpus (balanced spherical k-means on each neuron's |a| profile over tokens, where
a = act(gate x) * up x). A token then keeps only the neurons of k experts, chosen by their output norm
||W_down[:, S_e] a_{S_e}||: exactly (the *oracle*), or as predicted from the MLP input by a linear router fitted
with ridge regression (the *fitted* router). The chosen experts' outputs are summed unweighted, so with k = E
the model is the dense model exactly. Built once per base model (about a minute on 2 cores) and stored in the
model store; E, k and the router are chosen per forward pass with `routed(Setting(...))`.

This module holds what the method is (its constants, the corpus pass and the build); probes.moe_state the routing
each forward pass uses, probes.moe_modules the modules, probes.moe_clustering the per-layer fit, probes.moe_store
the stored build and the derived model, probes.moe_loss the loss against k.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from probes import corpus
from probes.batches import Progress, batches, by_length
from probes.moe_clustering import fit_layer
from probes.moe_modules import MoefiedMLP
from probes.residual import blocks, submodule
from probes.text import clean
from results.moefication import EXPERT_COUNTS, Moefication
from runtime.builtin import MOEFIED
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.hooks import observing
from runtime.placement import as_numpy, host

DERIVED_NAME = MOEFIED.name
BASE_NAME = MOEFIED.base
VERSION = 1  # of the stored build
METHOD = "MoEfication: balanced spherical k-means on |a| co-activation profiles; ridge router to expert output norms"

# The first sentences of the corpus are left out of the build, so losses measured on them (the benchmark and
# the tests) are out of sample for both the clustering and the router.
EVAL_SENTENCES = 40
MAX_TOKENS = 6000
HELD_OUT_EVERY = 5  # every 5th build sentence is held out to measure the router's recall
SEED = 0


def _build_sentences(handle: ModelHandle) -> tuple[list[str], list[str]]:
    """(fitting, held-out) corpus sentences after the first EVAL_SENTENCES, up to MAX_TOKENS tokens in all."""
    fitting, held_out, total = [], [], 0
    for index, sentence in enumerate(corpus.sentences()[EVAL_SENTENCES:]):
        total += len(handle.tokenizer(clean(sentence))["input_ids"])
        if total > MAX_TOKENS:
            break
        (held_out if index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else fitting).append(sentence)
    return fitting, held_out


def _capture(
    handle: ModelHandle, parts: Sequence[Sequence[str]], on_progress: Progress | None, extra_steps: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Every MLP's inputs x (layers, tokens, d) float32 and activations a (layers, tokens, n) float16 on the
    sentences of each part, tokens batch-major and part after part; also each part's token count."""
    groups = [by_length(handle, part) for part in parts]
    counts = [sum(length * len(g) for length, g in group.items()) for group in groups]
    mlps = [submodule(block, "mlp", nn.Module) for block in blocks(handle)]
    first = submodule(mlps[0], "gate_proj", nn.Linear)
    xs = np.empty((len(mlps), sum(counts), first.in_features), dtype=np.float32)
    acts = np.empty((len(mlps), sum(counts), first.out_features), dtype=np.float16)
    cursor = [0]

    def keep(target: np.ndarray, layer: int):
        def hook(module: nn.Module, args: tuple) -> None:
            rows = args[0].reshape(-1, args[0].shape[-1])
            target[layer, cursor[0] : cursor[0] + len(rows)] = as_numpy(rows)

        return hook

    hooks = {m: keep(xs, i) for i, m in enumerate(mlps)}
    hooks |= {submodule(m, "down_proj", nn.Linear): keep(acts, i) for i, m in enumerate(mlps)}
    n_sentences = sum(len(part) for part in parts)
    total = n_sentences + extra_steps
    done = 0
    with observing(pre=hooks):
        for group in groups:
            for batch in batches(group):
                forward(handle, batch)
                cursor[0] += batch.size
                done += len(batch)
                if on_progress is not None:
                    on_progress(done, total)
    if not np.isfinite(acts).all():  # float16 storage: an overflow would silently corrupt the clustering
        raise LmscopeError("MoEfication failed: MLP activations overflow float16 storage on the corpus.")
    return xs, acts, counts


def build(handle: ModelHandle, on_progress: Progress | None = None) -> Moefication:
    """Cluster every MLP's neurons into 8, 16 and 32 experts and fit their routers, from one corpus pass of the
    dense model (on_progress: corpus sentences, then layers fitted, as steps done of steps in all)."""
    if any(isinstance(block.mlp, MoefiedMLP) for block in blocks(handle)):
        raise LmscopeError("MoEfication needs the dense model: this one is MoEfied already.")
    started = time.perf_counter()
    fitting, held_out = _build_sentences(handle)
    xs, acts, (n_fit, n_held) = _capture(handle, [fitting, held_out], on_progress, handle.n_layers)
    total = len(fitting) + len(held_out) + handle.n_layers
    assignments = {e: [] for e in EXPERT_COUNTS}
    weights, biases, recalls = ({e: [] for e in EXPERT_COUNTS} for _ in range(3))
    for layer, block in enumerate(blocks(handle)):
        with torch.inference_mode():
            down = submodule(block, "mlp.down_proj", nn.Linear)
            fitted = fit_layer(xs[layer], acts[layer], host(down.weight), n_fit, SEED + layer)
        for e, (assignment, weight, bias, recall) in fitted.items():
            assignments[e].append(assignment.numpy().astype(np.int16))
            weights[e].append(weight.numpy())
            biases[e].append(bias.numpy())
            recalls[e].append(recall)
        if on_progress is not None:
            on_progress(len(fitting) + len(held_out) + layer + 1, total)
    return Moefication(
        base_fingerprint=handle.fingerprint,
        assignments={e: np.stack(v) for e, v in assignments.items()},
        router_weight={e: np.stack(v) for e, v in weights.items()},
        router_bias={e: np.stack(v) for e, v in biases.items()},
        router_recall={e: np.asarray(v, dtype=np.float32) for e, v in recalls.items()},
        n_tokens=n_fit + n_held,
        build_seconds=time.perf_counter() - started,
    )
