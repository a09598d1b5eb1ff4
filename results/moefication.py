"""The derived MoE (MoEfication): how it routes, what its build stores, and its loss against k."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from results.errors import LmscopeError

EXPERT_COUNTS = (8, 16, 32)
ROUTERS = ("fitted", "oracle")


def ks_for(n_experts: int) -> np.ndarray:
    """1, 2, 4, ..., E: the k values measured for E experts."""
    return 2 ** np.arange(int(np.log2(n_experts)) + 1)


@dataclass(frozen=True)
class Setting:
    """How the MoEfied model routes: E experts per MLP, the top k per token, by the fitted router or the oracle."""

    experts: int = 16
    top_k: int = 4
    router: str = "fitted"

    def check(self) -> None:
        """Raise LmscopeError with a plain message for a setting the model does not have."""
        counts = ", ".join(str(e) for e in EXPERT_COUNTS)
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (self.experts, self.top_k)):
            raise LmscopeError(f"E and k must be whole numbers; got E = {self.experts!r}, k = {self.top_k!r}.")
        if self.experts not in EXPERT_COUNTS:
            raise LmscopeError(
                f"E = {self.experts} experts is not available: the MoEfied model has {counts} experts per MLP."
            )
        if self.top_k < 1:
            raise LmscopeError(f"k = {self.top_k}: each token needs at least 1 expert (k from 1 to {self.experts}).")
        if self.top_k > self.experts:
            raise LmscopeError(
                f"k = {self.top_k} is more than the E = {self.experts} experts of each MLP: "
                f"choose k from 1 to {self.experts}."
            )
        if self.router not in ROUTERS:
            raise LmscopeError(
                f"Unknown router '{self.router}': choose 'fitted' (a linear router that predicts each expert's output "
                "norm) or 'oracle' (the exact norms)."
            )


@dataclass
class Moefication:
    """What is stored: each E's neuron -> expert assignment and fitted router, per layer, as plain numpy."""

    base_fingerprint: str
    assignments: dict[int, np.ndarray]  # E -> (n_layers, intermediate) int16 expert of each neuron
    router_weight: dict[int, np.ndarray]  # E -> (n_layers, E, d) float32
    router_bias: dict[int, np.ndarray]  # E -> (n_layers, E) float32
    router_recall: dict[int, np.ndarray]  # E -> (n_layers,) held-out share of the oracle's top-(E/4) also picked
    n_tokens: int
    build_seconds: float


@dataclass
class LossByK:
    """The loss of one text under the MoEfied model for each E, k and router, beside the dense model."""

    model: str
    token_ids: np.ndarray
    dense_nll: float  # mean per-token NLL (nats) of the dense base model
    ks: dict[int, np.ndarray]  # E -> the k values measured (powers of 2 up to E)
    nll: dict[str, dict[int, np.ndarray]]  # router -> E -> mean NLL at each k
