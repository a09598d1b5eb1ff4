"""Mixture-of-Experts routing: every router's decisions on a text, load balance, and routing over a corpus."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from results.errors import LmscopeError

DROPPED = -1  # an expert slot left empty (Switch: the expert was full)


@dataclass
class LayerRouting:
    """One router's decisions on a sequence of tokens."""

    layer: int  # block index
    module: str  # the router's module name
    label: str  # how charts name it, e.g. "layer 3", "encoder layer 1", "layer 2 attention"
    kind: str  # "mlp", or "attention" for JetMoE's mixture of attention heads
    rule: str  # how `probs` come from `logits`: "softmax", "sigmoid" or "norm share"
    n_shared: int  # shared experts every token also uses (DeepSeekMoE, Qwen2-MoE)
    logits: np.ndarray  # (tokens, experts) raw router scores
    probs: np.ndarray  # (tokens, experts) routing probabilities as the family defines them
    experts: np.ndarray  # (tokens, k) the experts used, best first; DROPPED where none
    weights: np.ndarray  # (tokens, k) the weight each used expert's output gets
    shared_gate: np.ndarray | None  # (tokens,) Qwen2-MoE's sigmoid gate on its shared expert

    @property
    def n_experts(self) -> int:
        return self.logits.shape[1]

    @property
    def top_k(self) -> int:
        return self.experts.shape[1]


@dataclass
class RoutingResult:
    """Every router of a model on one text, in the order the model runs them."""

    model: str
    fingerprint: str
    token_ids: np.ndarray
    tokens: list[str]
    layers: list[LayerRouting]

    def router(self, index: int) -> LayerRouting:
        """The router at position `index` of `layers`, with a clear message when out of range."""
        if not 0 <= index < len(self.layers):
            raise LmscopeError(f"Router {index} does not exist: this model has routers 0-{len(self.layers) - 1}.")
        return self.layers[index]


@dataclass(frozen=True)
class Balance:
    """How evenly one router spreads its token slots over the experts (uniform: cv 0, entropy 1, aux 1)."""

    load: np.ndarray  # (experts,) share of routed slots per expert; sums to 1
    cv: float  # coefficient of variation of the load
    entropy: float  # entropy of the load over log(experts)
    aux_loss: float | None  # Switch/Mixtral auxiliary loss E * sum_e f_e P_e, for softmax routers
    dropped: float  # share of slots that reached no expert


@dataclass
class CorpusRouting:
    """Top-k experts of every router for every token of many sentences (tokens concatenated)."""

    model: str
    fingerprint: str
    token_ids: np.ndarray  # (tokens,)
    experts: np.ndarray  # (routers, tokens, k) int16
    routers: list[str]  # the label of each router
    n_experts: list[int]


@dataclass(frozen=True)
class Preference:
    """A token an expert takes often: how many of its occurrences go to the expert."""

    token_id: int
    token: str
    routed: int
    occurrences: int

    @property
    def share(self) -> float:
        return self.routed / self.occurrences

