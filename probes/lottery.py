"""Lottery tickets (Frankle and Carbin 2019) on a network small enough to train in a fraction of a second: a
LeNet-300-100-like MLP on scikit-learn's 8 x 8 digits, not the loaded language model.

Iterative magnitude pruning: train, prune the smallest 20% of each layer's remaining weights (the output layer's at
half the rate, as in the paper), rewind the survivors to their original initialisation, train again; repeat. Two
controls per round: the same masks from a fresh initialisation ("reinit"), and random masks of the same per-layer
sparsity from the original initialisation ("random mask"). Every random draw comes from a generator seeded by
(seed, purpose, round), never from torch's global one, so a result depends on its seed alone; the three trainings
of a round see the same order of batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from probes.batches import Progress
from probes.seeds import generator
from results.lottery import LotteryResult
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.probe import CachedProbe

NAME = "lottery"
VERSION = 1
FINGERPRINT = "lottery-digits"  # in place of a model's: the network and the data are fixed here
DATASET = "scikit-learn digits (8 x 8 images, 10 classes)"
LAYER_SIZES = (64, 300, 100, 10)
PRUNE_RATE = 0.2  # of each layer's remaining weights per round; the output layer's at half this rate
EPOCHS = 10
BATCH_SIZE = 128
LEARNING_RATE = 5e-3  # Adam
TEST_SHARE = 0.25
SPLIT_SEED = 0  # the train/test split is the same for every seed
DEFAULT_ROUNDS = 14  # 0.8^14: 4.4% of the hidden layers' weights, 4.8% of all
DEFAULT_SEEDS = 3
# What a generator is drawn for, with the seed (and the round): one stream each.
_INIT, _REINIT, _RANDOM_MASK, _ORDER = range(4)

Weights = list[tuple[torch.Tensor, torch.Tensor]]  # (weight (out, in), bias (out,)) per layer
Masks = list[torch.Tensor]  # bool, one per weight matrix: True where the weight is kept


@dataclass(frozen=True)
class Digits:
    """The fixed split of the digits: pixels scaled to [0, 1], labels 0 to 9."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@cache
def digits() -> Digits:
    """The digits data set, split once (stratified, by SPLIT_SEED) into training and test sets."""
    images, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        images / 16.0, labels, test_size=TEST_SHARE, random_state=SPLIT_SEED, stratify=labels
    )
    to_x, to_y = (lambda a: torch.tensor(a, dtype=torch.float32)), (lambda a: torch.tensor(a, dtype=torch.int64))
    return Digits(to_x(x_train), to_y(y_train), to_x(x_test), to_y(y_test))


def initial_weights(draw: torch.Generator) -> Weights:
    """A fresh network: Glorot-normal weights (as in the paper), zero biases."""
    return [
        (torch.randn(n_out, n_in, generator=draw) * (2.0 / (n_in + n_out)) ** 0.5, torch.zeros(n_out))
        for n_in, n_out in zip(LAYER_SIZES[:-1], LAYER_SIZES[1:])
    ]


def dense_masks() -> Masks:
    """Masks that keep every weight."""
    return [torch.ones(n_out, n_in, dtype=torch.bool) for n_in, n_out in zip(LAYER_SIZES[:-1], LAYER_SIZES[1:])]


def layer_rates() -> list[float]:
    """The pruning rate of each layer: PRUNE_RATE, the output layer's half of it."""
    n_layers = len(LAYER_SIZES) - 1
    return [PRUNE_RATE / 2 if i == n_layers - 1 else PRUNE_RATE for i in range(n_layers)]


def kept_count(n_weights: int, rate: float, round_: int) -> int:
    """Weights a layer keeps after `round_` rounds of pruning `rate` of what remains."""
    return round(n_weights * (1 - rate) ** round_)


def prune(trained: Weights, masks: Masks, round_: int) -> Masks:
    """The masks of round `round_`: in each layer, the surviving weights of largest magnitude, as many as
    `kept_count` allows (ties broken by position)."""
    pruned = []
    for (weight, _), mask, rate in zip(trained, masks, layer_rates()):
        score = weight.abs().masked_fill(~mask, -1.0).flatten()
        keep = torch.argsort(score, descending=True, stable=True)[: kept_count(mask.numel(), rate, round_)]
        pruned.append(torch.zeros(mask.numel(), dtype=torch.bool).index_fill_(0, keep, True).view_as(mask))
    return pruned


def random_masks(masks: Masks, draw: torch.Generator) -> Masks:
    """Masks keeping as many weights per layer as `masks`, at random places."""
    shuffled = []
    for mask in masks:
        keep = torch.randperm(mask.numel(), generator=draw)[: int(mask.sum())]
        shuffled.append(torch.zeros(mask.numel(), dtype=torch.bool).index_fill_(0, keep, True).view_as(mask))
    return shuffled


def rewind(initial: Weights, masks: Masks) -> Weights:
    """The initial weights where the masks keep them, zero elsewhere; the biases as they were."""
    return [(weight * mask, bias.clone()) for (weight, bias), mask in zip(initial, masks)]


def layer_outputs(weights: Weights, masks: Masks, x: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's output on x: the hidden layers' after their ReLU, then the logits."""
    outputs = []
    for i, ((weight, bias), mask) in enumerate(zip(weights, masks)):
        x = F.linear(x, weight * mask, bias)
        if i < len(weights) - 1:
            x = torch.relu(x)
        outputs.append(x)
    return outputs


def logits(weights: Weights, masks: Masks, x: torch.Tensor) -> torch.Tensor:
    """The masked MLP's outputs (ReLU between layers)."""
    return layer_outputs(weights, masks, x)[-1]


def train(initial: Weights, masks: Masks, data: Digits, order: torch.Generator) -> Weights:
    """The masked network trained with Adam from `initial` rewound to the masks. The mask multiplies the weights in
    the forward pass, so a masked weight gets no gradient and stays exactly zero."""
    weights = [(w.requires_grad_(), b.requires_grad_()) for w, b in rewind(initial, masks)]
    optimiser = torch.optim.Adam([p for layer in weights for p in layer], lr=LEARNING_RATE)
    # One thread: on matrices this small more threads only wait for each other (20x slower on a busy machine), and
    # the sums no longer depend on the machine's thread count. OpenMP's limit is the calling thread's own, so the
    # other sessions' computations keep their threads.
    with threadpool_limits(1, user_api="openmp"):
        for _ in range(EPOCHS):
            for batch in torch.randperm(len(data.y_train), generator=order).split(BATCH_SIZE):
                loss = F.cross_entropy(logits(weights, masks, data.x_train[batch]), data.y_train[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    return [(w.detach(), b.detach()) for w, b in weights]


def dense_network(seed: int) -> tuple[Weights, Weights]:
    """The initial and the trained weights of the unpruned network of `seed` (round 0 of `compute`)."""
    initial = initial_weights(generator(seed, _INIT))
    return initial, train(initial, dense_masks(), digits(), generator(seed, _ORDER, 0))


def accuracy(weights: Weights, masks: Masks, data: Digits) -> float:
    """The share of test digits the masked network classifies right."""
    with torch.no_grad():
        return float((logits(weights, masks, data.x_test).argmax(dim=1) == data.y_test).float().mean())


def check(rounds: int, seeds: int) -> None:
    """Refuse counts over the limits before any training."""
    limits.check_range(rounds, 1, limits.LOTTERY_ROUNDS, "number of pruning rounds")
    limits.check_range(seeds, 1, limits.LOTTERY_SEEDS, "number of seeds")


def compute(rounds: int, seeds: int, on_progress: Progress | None = None) -> LotteryResult:
    """Every round of every seed: the winning ticket, reinit and random-mask accuracies; progress per training."""
    check(rounds, seeds)
    data = digits()
    total, done = seeds * (1 + 3 * rounds), 0
    lines = np.zeros((3, seeds, rounds + 1))

    def trained_accuracy(initial: Weights, masks: Masks, seed: int, round_: int) -> tuple[Weights, float]:
        nonlocal done
        weights = train(initial, masks, data, generator(seed, _ORDER, round_))
        done += 1
        if on_progress is not None:
            on_progress(done, total)
        return weights, accuracy(weights, masks, data)

    for seed in range(seeds):
        initial, masks = initial_weights(generator(seed, _INIT)), dense_masks()
        trained, lines[:, seed, 0] = trained_accuracy(initial, masks, seed, 0)
        for round_ in range(1, rounds + 1):
            masks = prune(trained, masks, round_)
            trained, lines[0, seed, round_] = trained_accuracy(initial, masks, seed, round_)
            fresh = initial_weights(generator(seed, _REINIT, round_))
            lines[1, seed, round_] = trained_accuracy(fresh, masks, seed, round_)[1]
            shuffled = random_masks(masks, generator(seed, _RANDOM_MASK, round_))
            lines[2, seed, round_] = trained_accuracy(initial, shuffled, seed, round_)[1]
    sizes = np.array([n_in * n_out for n_in, n_out in zip(LAYER_SIZES[:-1], LAYER_SIZES[1:])])
    kept = np.array([[kept_count(n, rate, r) for n, rate in zip(sizes, layer_rates())] for r in range(rounds + 1)])
    return LotteryResult(
        dataset=DATASET,
        layer_sizes=LAYER_SIZES,
        prune_rate=PRUNE_RATE,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        n_train=len(data.y_train),
        n_test=len(data.y_test),
        remaining=kept.sum(axis=1) / sizes.sum(),
        remaining_per_layer=kept / sizes,
        accuracy_ticket=lines[0],
        accuracy_reinit=lines[1],
        accuracy_random_mask=lines[2],
    )


PROBE = CachedProbe(NAME, VERSION, compute, fingerprint=FINGERPRINT)


def run(
    cache: ResultCache, rounds: int = DEFAULT_ROUNDS, seeds: int = DEFAULT_SEEDS, on_progress: Progress | None = None
) -> Cached[LotteryResult]:
    """The lottery-ticket experiment, from the disk cache when computed before."""
    check(rounds, seeds)
    return PROBE.cached(None, cache, on_progress, rounds=rounds, seeds=seeds)
