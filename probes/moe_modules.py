"""The derived MoE's modules: a gated MLP split into experts, and the router that picks each token's experts."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from probes.moe_state import active, current
from probes.residual import submodule
from results.moefication import EXPERT_COUNTS

NORM_CHUNK = 1024  # tokens per chunk when computing all experts' output norms (bounds the (E, N, d) buffer)


def expert_order(assignment: torch.Tensor) -> torch.Tensor:
    """Neuron indices sorted by expert (stable), so expert e's neurons are positions e*m .. (e+1)*m - 1."""
    return torch.argsort(assignment, stable=True)


def expert_norms(a: torch.Tensor, down_weight: torch.Tensor, order: torch.Tensor, n_experts: int) -> torch.Tensor:
    """(N, E): ||W_down[:, S_e] a_{S_e}|| for each token's activations a (N, n), experts given by `order`."""
    size = order.numel() // n_experts
    # (E, m, d): each expert's slice of the down projection, transposed for a batched matmul.
    slices = down_weight[:, order].T.reshape(n_experts, size, -1)
    norms = []
    for chunk in a.split(NORM_CHUNK):
        grouped = chunk[:, order].reshape(len(chunk), n_experts, size).transpose(0, 1)
        norms.append(torch.bmm(grouped, slices).norm(dim=-1).T)
    return torch.cat(norms) if norms else a.new_zeros((0, n_experts))


class MoefiedRouter(nn.Module):
    """Scores experts by their (predicted or exact) output norm and picks the top k, best first."""

    scores_are_norms = True  # probes.routing reads the scores as norms, not logits

    def __init__(self, weights: dict[int, torch.Tensor], biases: dict[int, torch.Tensor]) -> None:
        super().__init__()
        # Buffers, not parameters: the model's parameter list must stay the base model's matrices.
        for experts in EXPERT_COUNTS:
            self.register_buffer(f"weight_{experts}", weights[experts].float(), persistent=False)
            self.register_buffer(f"bias_{experts}", biases[experts].float(), persistent=False)

    @property
    def n_experts(self) -> int:
        return active().experts

    @property
    def top_k(self) -> int:
        return active().top_k

    def forward(
        self, hidden: torch.Tensor, oracle_scores: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        setting = active()
        if oracle_scores is None:
            hidden = hidden.reshape(-1, hidden.shape[-1]).float()
            weight, bias = getattr(self, f"weight_{setting.experts}"), getattr(self, f"bias_{setting.experts}")
            scores = F.linear(hidden, weight, bias)
        else:
            scores = oracle_scores.float()
        experts = scores.topk(setting.top_k, dim=-1, sorted=True).indices
        # MoEfication sums the chosen experts' outputs unweighted.
        weights = torch.ones(experts.shape, dtype=torch.float32, device=scores.device)
        return scores, weights, experts


class MoefiedMLP(nn.Module):
    """A gated MLP whose neurons are split into experts; each token keeps only its top-k experts' neurons."""

    def __init__(
        self,
        mlp: nn.Module,
        assignments: dict[int, torch.Tensor],
        weights: dict[int, torch.Tensor],
        biases: dict[int, torch.Tensor],
    ) -> None:
        super().__init__()
        # The original modules, under their own names: other probes hook `...mlp.gate_proj` and friends.
        self.gate_proj = submodule(mlp, "gate_proj", nn.Linear)
        self.up_proj = submodule(mlp, "up_proj", nn.Linear)
        self.down_proj = submodule(mlp, "down_proj", nn.Linear)
        self.act_fn = submodule(mlp, "act_fn", nn.Module)
        self.config = getattr(mlp, "config", None)
        self.hidden_size = self.gate_proj.in_features
        self.intermediate_size = self.gate_proj.out_features
        self.router = MoefiedRouter(weights, biases)
        for experts in EXPERT_COUNTS:
            assignment = assignments[experts].long()
            self.register_buffer(f"assignment_{experts}", assignment, persistent=False)
            self.register_buffer(f"order_{experts}", expert_order(assignment), persistent=False)

    def assignment(self, experts: int) -> torch.Tensor:
        """(intermediate,) the expert of each neuron when the MLP has `experts` experts."""
        return getattr(self, f"assignment_{experts}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act_fn(self.gate_proj(x)) * self.up_proj(x)
        setting = current()
        if setting is None:
            return self.down_proj(a)
        flat = a.reshape(-1, a.shape[-1])
        oracle = None
        if setting.router == "oracle":
            order = getattr(self, f"order_{setting.experts}")
            oracle = expert_norms(flat.float(), self.down_proj.weight.float(), order, setting.experts)
        _, _, chosen = self.router(x.reshape(-1, x.shape[-1]), oracle)
        picked = torch.zeros(len(flat), setting.experts, dtype=a.dtype, device=a.device)
        picked.scatter_(1, chosen, 1.0)
        mask = picked[:, self.assignment(setting.experts)]  # (N, intermediate) 0/1
        # Multiplying by an all-ones mask (k = E) leaves a bit for bit unchanged: the dense model exactly.
        return self.down_proj(a * mask.reshape(a.shape))
