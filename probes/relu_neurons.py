"""Dead ReLU neurons (the lecture: "many ReLU activations are zero in MLPs") where ReLU is real: the lottery-ticket
MLP (probes.lottery: 64-300-100-10 on scikit-learn's digits), unpruned, at its initialisation and after training.

The language models' MLPs use SiLU or GELU, which are never exactly 0, so their pages count a neuron as active
above a threshold; here an activation is 0 or it is not. Each hidden layer's ReLU outputs are read on the test
digits: the share that are exactly 0, each neuron's firing rate, and the neurons that never fire.
"""

from __future__ import annotations

import numpy as np
import torch

from probes import lottery
from results.relu_neurons import ReluNeurons
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.probe import CachedProbe

NAME = "relu-neurons"
VERSION = 1


def compute(seed: int) -> ReluNeurons:
    """ReLU activity of the seed's dense network on the test digits, initialised and trained."""
    data = lottery.digits()
    masks = lottery.dense_masks()
    stages = dict(zip(("initialised", "trained"), lottery.dense_network(seed), strict=True))
    zero_share, rates, accuracy = [], [], []
    with torch.no_grad():
        for weights in stages.values():
            hidden = lottery.layer_outputs(weights, masks, data.x_test)[:-1]
            zero_share.append([float((h == 0).float().mean()) for h in hidden])
            rates.append([(h > 0).double().mean(dim=0).numpy() for h in hidden])
            accuracy.append(lottery.accuracy(weights, masks, data))
    return ReluNeurons(
        dataset=lottery.DATASET,
        layer_sizes=lottery.LAYER_SIZES,
        seed=seed,
        n_inputs=len(data.y_test),
        stages=list(stages),
        accuracy=np.array(accuracy),
        zero_share=np.array(zero_share),
        rates=rates,
    )


PROBE = CachedProbe(NAME, VERSION, compute, fingerprint=lottery.FINGERPRINT)


def run(cache: ResultCache, seed: int = 0) -> Cached[ReluNeurons]:
    """The ReLU activity of the lottery network of `seed`, from the disk cache when computed before."""
    limits.check_range(seed, 0, limits.LOTTERY_SEEDS - 1, "seed")
    return PROBE.cached(None, cache, seed=seed)
