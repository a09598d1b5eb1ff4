"""The trained MoE: the recipe it is built by, and what its build measured (training curve, loss against k, costs)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from results.errors import LmscopeError
from results.moefication import EXPERT_COUNTS, ks_for

MAX_STEPS = 2000  # distillation steps of one build (each about 2 s of 2 cores on SmolLM2)
MAX_LAYER_STEPS = 1000  # local fitting steps per layer (each about 0.1 s)
MAX_TOKENS = 131072  # training tokens (the corpus, then Python's documentation: about 110,000 tokens in all)
MIN_TOKENS = 1024
MAX_BALANCE = 10.0  # weight of the load-balancing loss
MAX_RANK = 512  # of the experts' kept update per layer (the update matrices are 576 wide on SmolLM2)


@dataclass(frozen=True)
class Recipe:
    """How an MoE is made from the dense SmolLM2: E experts per MLP, k of them active per token; `shared` of the k
    always on as one shared expert (DeepSeekMoE's: the neurons that carry the most of the MLP's output energy; a
    Qwen2-MoE) and the top k − shared of the others (the MoEfication's clusters) routed, or, with none shared, a
    Mixtral on the MoEfication split; `layer_steps` steps fitting each layer's router and experts to the dense MLP on
    its own inputs, then `steps` steps of distillation from the dense model through the whole network, on `tokens`
    training tokens, both with the Switch load-balancing loss weighted by `balance`; `seed` fixes the router's
    initialisation, the split and the batches. The experts' update from their converted weights is kept at `rank` per
    layer and weight (0: in full), so that the build is a small file."""

    experts: int = 16
    top_k: int = 4
    layer_steps: int = 60
    steps: int = 50
    tokens: int = 8192
    seed: int = 0
    balance: float = 0.05
    shared: int = 2
    rank: int = 32

    @property
    def routed_k(self) -> int:
        """Experts the router chooses per token (the shared ones are always on)."""
        return self.top_k - self.shared

    def family(self) -> str:
        """The transformers MoE architecture the recipe builds."""
        return "Qwen2-MoE" if self.shared else "Mixtral"

    def routing(self) -> str:
        """How the k active experts are found, in words."""
        chosen = f"the top {self.routed_k} of {self.experts - self.shared} by a softmax router"
        return f"{self.shared} always on as a shared expert, {chosen}" if self.shared else chosen

    def check(self) -> None:
        """Refuse a recipe outside the limits, before any work."""
        if self.experts not in EXPERT_COUNTS:
            raise LmscopeError(f"E = {self.experts}: the MoEfication split has {EXPERT_COUNTS} experts per MLP.")
        if not 1 <= self.top_k <= self.experts:
            raise LmscopeError(f"k = {self.top_k}: choose from 1 to the E = {self.experts} experts.")
        if not 0 <= self.shared < self.top_k:
            raise LmscopeError(f"Shared experts must be from 0 to k − 1 = {self.top_k - 1}; got {self.shared}.")
        if not 0 <= self.layer_steps <= MAX_LAYER_STEPS:
            raise LmscopeError(f"Layer steps must be from 0 to {MAX_LAYER_STEPS}; got {self.layer_steps}.")
        if not 0 <= self.steps <= MAX_STEPS:
            raise LmscopeError(f"Distillation steps must be from 0 to {MAX_STEPS}; got {self.steps}.")
        if not MIN_TOKENS <= self.tokens <= MAX_TOKENS:
            raise LmscopeError(f"Training tokens must be from {MIN_TOKENS} to {MAX_TOKENS}; got {self.tokens}.")
        if not 0 <= self.balance <= MAX_BALANCE:
            raise LmscopeError(f"The balancing loss's weight must be from 0 to {MAX_BALANCE}; got {self.balance}.")
        if not 0 <= self.rank <= MAX_RANK:
            raise LmscopeError(f"The update's rank must be from 0 (full) to {MAX_RANK}; got {self.rank}.")

    def digest(self) -> str:
        """A short name for the recipe, for the model store."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Costs:
    """Parameters and compute of the dense model and of the MoE at each k (per token, attention over the context
    left out: it is the same in both)."""

    ks: np.ndarray  # the k values
    dense_parameters: int
    moe_parameters: int  # every expert included
    dense_active: int  # parameters a token passes through (embeddings excluded; the head included)
    moe_active: np.ndarray  # at each k
    dense_mlp_seconds: float  # measured: one MLP on a batch of tokens, per token
    moe_mlp_seconds: np.ndarray  # measured: the family's own sparse block at each k, per token

    @property
    def dense_flops(self) -> int:
        return 2 * self.dense_active

    @property
    def moe_flops(self) -> np.ndarray:
        return 2 * self.moe_active


def active_ks(experts: int, shared: int, trained: int) -> np.ndarray:
    """The numbers of active experts per token measured for E experts of which `shared` are always on: the shared
    ones and 1, 2, 4, ... routed ones, all E, and the k the MoE was trained with."""
    return np.unique(np.concatenate([shared + ks_for(experts - shared), [experts, trained]]))


def tenths(series: np.ndarray) -> tuple[float, float]:
    """The mean of the first and of the last tenth (one value at least) of a per-step series such as the KL."""
    tenth = max(1, len(series) // 10)
    return float(series[:tenth].mean()), float(series[-tenth:].mean())


@dataclass
class TrainingLog:
    """What a build measured: each layer's fit, the distillation curve, and the held-out loss at each k."""

    recipe: Recipe
    base_fingerprint: str
    train_tokens: int
    eval_tokens: int
    layer_error: np.ndarray  # (layers,) relative squared error of each MoE MLP against the dense one, after fitting
    kl: np.ndarray  # (steps,) distillation KL (nats per token) at each step
    balance: np.ndarray  # (steps,) the Switch load-balancing loss at each step (1 when perfectly balanced)
    seconds: float  # the whole build
    dense_nll: float  # held-out mean NLL of the dense model
    untrained_nll: np.ndarray  # at each k of costs.ks: the converted MoE before training (router: the family's init)
    trained_nll: np.ndarray  # at each k: the model kept (trained at recipe.top_k, its update at recipe.rank)
    costs: Costs
    curve_seconds: np.ndarray  # build time at each held-out measurement: converted, layers fitted, distillation steps
    curve_steps: np.ndarray  # distillation steps done at each (-1: before the layer-wise fit)
    curve_nll: np.ndarray  # held-out mean NLL at recipe.top_k at each (the last: the full update, before its rank cut)
    untrained_cv: np.ndarray  # (layers,) coefficient of variation of the experts' load on the held-out tokens, before
    trained_cv: np.ndarray  # (layers,) and after training

    def curve_stages(self) -> list[str]:
        """What each point of the held-out curve follows: "converted", "layers fitted", or "step N" of the
        distillation."""
        named = {-1: "converted", 0: "layers fitted"}
        return [named.get(int(steps), f"step {steps}") for steps in self.curve_steps]

    def to_json(self) -> str:
        """The log as JSON (numbers as lists)."""

        def plain(value: object) -> object:
            if isinstance(value, np.ndarray):
                return value.tolist()
            if isinstance(value, (Recipe, Costs)):
                return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
            return value

        return json.dumps({f.name: plain(getattr(self, f.name)) for f in fields(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> TrainingLog:
        """The log written by `to_json`; KeyError or TypeError if it is not one."""
        data = json.loads(text)
        costs = data["costs"]
        arrays = (
            *("layer_error", "kl", "balance", "untrained_nll", "trained_nll"),
            *("curve_seconds", "curve_nll", "untrained_cv", "trained_cv"),
        )
        return cls(
            **{
                **data,
                "recipe": Recipe(**data["recipe"]),
                **{name: np.asarray(data[name], dtype=np.float64) for name in arrays},
                "curve_steps": np.asarray(data["curve_steps"], dtype=np.int64),
                "costs": Costs(
                    **{
                        **costs,
                        "ks": np.asarray(costs["ks"], dtype=np.int64),
                        "moe_active": np.asarray(costs["moe_active"], dtype=np.int64),
                        "moe_mlp_seconds": np.asarray(costs["moe_mlp_seconds"], dtype=np.float64),
                    }
                ),
            }
        )


@dataclass
class Equation:
    """y = Σᵢ G(x)ᵢ Eᵢ(x) (+ g_s E_s(x) for a shared expert) for one token at one MoE block, as the model computed
    it."""

    model: str
    layer: int
    position: int
    token: str
    probs: np.ndarray  # (E,) Softmax(x·W_g) over every expert
    experts: np.ndarray  # (k,) the chosen experts, best first
    gates: np.ndarray  # (k,) their weights in the sum (renormalised over the chosen)
    expert_norms: np.ndarray  # (k,) ||Eᵢ(x)||
    shared_gate: float  # σ(x·w_s), the weight of the always-on shared expert (Qwen2-MoE); NaN without one
    shared_norm: float  # ||E_s(x)||, the shared expert's output; NaN without one
    output_norm: float  # ||y||, the block's MoE output for the token
    mismatch: float  # ||y − Σᵢ gᵢ Eᵢ(x) − g_s E_s(x)|| / ||y||: the equation recomputed from the experts' weights
