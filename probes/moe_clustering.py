"""Fitting the derived MoE, one layer at a time: neurons clustered into equal experts (balanced spherical k-means
on their co-activation profiles) and a linear router fitted by ridge regression to the experts' output norms."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from probes.moe_modules import expert_norms, expert_order
from results.moefication import EXPERT_COUNTS
from runtime.errors import LmscopeError

KMEANS_ITERATIONS = 30
# Ridge penalty, relative to the mean diagonal of X^T X. The held-out recall hardly depends on it (0.741 to
# 0.749 at E = 16 for 1e-4 to 1e-1, every 3rd layer); the largest was best.
RIDGE = 1e-1


def _kmeans_init(gram: torch.Tensor, n_experts: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeds on the unit sphere: indices of E neurons, each drawn far (in cosine) from those before."""
    n = gram.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    closest = gram[:, chosen[0]].clone()
    for _ in range(n_experts - 1):
        distance = (1.0 - closest).clamp(min=0).double() ** 2
        pick = int(torch.multinomial(distance / distance.sum(), 1, generator=generator))
        chosen.append(pick)
        closest = torch.maximum(closest, gram[:, pick])
    return torch.as_tensor(chosen)


def balanced_assign(similarity: torch.Tensor, size: int) -> torch.Tensor:
    """(n,) an expert for each neuron, `size` neurons per expert, from (n, E) similarities: every free neuron
    proposes to its most similar expert with room, and each expert keeps its most similar proposers."""
    n, n_experts = similarity.shape
    assignment = torch.full((n,), -1, dtype=torch.long)
    room = torch.full((n_experts,), size, dtype=torch.long)
    while (free := torch.nonzero(assignment < 0).flatten()).numel():
        options = similarity[free].masked_fill(room[None] == 0, float("-inf"))
        best = options.argmax(dim=1)
        for expert in best.unique().tolist():
            proposers = free[best == expert]
            if len(proposers) > room[expert]:
                ranked = torch.argsort(similarity[proposers, expert], descending=True, stable=True)
                proposers = proposers[ranked[: int(room[expert])]]
            assignment[proposers] = expert
            room[expert] -= len(proposers)
    return assignment


def coactivation(acts: torch.Tensor) -> torch.Tensor:
    """(n, n) the cosine similarities of n neurons' |activation| profiles over the tokens of acts (tokens, n)."""
    profiles = F.normalize(acts.abs().T, dim=1)
    return profiles @ profiles.T


def balanced_kmeans(gram: torch.Tensor, n_experts: int, seed: int) -> torch.Tensor:
    """(n,) balanced spherical k-means of n unit vectors given their Gram matrix; equal-size clusters."""
    n = gram.shape[0]
    if n % n_experts:
        raise LmscopeError(f"{n} neurons do not split into {n_experts} equal experts.")
    generator = torch.Generator().manual_seed(seed)
    similarity = gram[:, _kmeans_init(gram, n_experts, generator)]
    assignment = balanced_assign(similarity, n // n_experts)
    for _ in range(KMEANS_ITERATIONS):
        members = F.one_hot(assignment, n_experts).to(gram.dtype)  # (n, E)
        # Cosine similarity to each cluster's mean direction: p_j . c_e / ||c_e||, with c_e the members' sum.
        dots = gram @ members
        norms = (members * dots).sum(dim=0).clamp(min=1e-12).sqrt()
        updated = balanced_assign(dots / norms, n // n_experts)
        if torch.equal(updated, assignment):
            break
        assignment = updated
    return assignment


def _ridge(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (E, d), bias (E,)) minimising ||x W^T + b - y||^2 + lambda ||W||^2 (bias not penalised)."""
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean  # centring fits the unpenalised bias exactly
    gram = xc.T @ xc
    penalty = RIDGE * gram.diagonal().mean()
    weight = torch.linalg.solve(gram + penalty * torch.eye(len(gram), dtype=gram.dtype), xc.T @ yc).T
    return weight.float(), (y_mean - weight @ x_mean).float()


def top_recall(predicted: torch.Tensor, exact: torch.Tensor, k: int) -> float:
    """The mean over tokens of the share of the exact top-k experts that the predicted top-k also holds."""
    mine = F.one_hot(predicted.topk(k, dim=-1).indices, predicted.shape[-1]).sum(1)
    best = F.one_hot(exact.topk(k, dim=-1).indices, exact.shape[-1]).sum(1)
    return float((mine * best).sum(-1).double().mean() / k)


def fit_layer(
    x: np.ndarray, a: np.ndarray, down_weight: torch.Tensor, n_fit: int, seed: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """E -> (assignment, router weight, router bias, held-out recall) for one layer."""
    acts = torch.from_numpy(a).float()
    inputs = torch.from_numpy(x)
    gram = coactivation(acts[:n_fit])
    fitted = {}
    for n_experts in EXPERT_COUNTS:
        assignment = balanced_kmeans(gram, n_experts, seed)
        norms = expert_norms(acts, down_weight, expert_order(assignment), n_experts)
        weight, bias = _ridge(inputs[:n_fit], norms[:n_fit])
        predicted = F.linear(inputs[n_fit:], weight, bias)
        recall = top_recall(predicted, norms[n_fit:], max(1, n_experts // 4))
        fitted[n_experts] = (assignment, weight, bias, recall)
    return fitted
