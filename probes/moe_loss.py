"""Loss against k: the mean NLL of a text at each number of active experts, for the MoEfied model (each E and router,
against the dense model's) and for a trained Mixtral-style MoE (its own softmax router at each k)."""

from __future__ import annotations

import numpy as np

from probes.moe_equation import sparse_block
from probes.moe_modules import MoefiedMLP
from probes.moe_state import dense, routed
from probes.moe_trained import active_count, at_k, routed_count
from probes.moefication import DERIVED_NAME
from probes.nll import token_nll
from probes.residual import blocks
from probes.routing import shared_count
from probes.text import encode
from results.moe_trained import active_ks
from results.moefication import EXPERT_COUNTS, ROUTERS, LossByK, Setting, ks_for
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe
from runtime.settings import settings

VERSION = 2  # of the cached loss against k
TRAINED_VERSION = 3  # of the trained MoE's; 2: shared experts counted in E and k; 3: S + 1, 2, 4, ... and the trained k


def _loss_by_k(handle: ModelHandle, token_ids: list[int]) -> LossByK:
    ids = np.asarray(token_ids, dtype=np.int64)
    with dense():
        dense_nll = float(token_nll(handle, ids).mean())
    ks = {e: ks_for(e) for e in EXPERT_COUNTS}
    nll: dict[str, dict[int, np.ndarray]] = {}
    for router in ROUTERS:
        nll[router] = {}
        for e in EXPERT_COUNTS:
            values = []
            for k in ks[e]:
                with routed(Setting(e, int(k), router)):
                    values.append(token_nll(handle, ids).mean())
            nll[router][e] = np.asarray(values, dtype=np.float64)
    return LossByK(handle.name, ids, dense_nll, ks, nll)


PROBE = CachedProbe("moefication-loss", VERSION, _loss_by_k)


def loss_by_k(handle: ModelHandle, text: str, cache: ResultCache) -> Cached[LossByK]:
    """Mean NLL of the text at each E, k and router of the MoEfied model, and of the dense model; cached."""
    if not all(isinstance(block.mlp, MoefiedMLP) for block in blocks(handle)):
        raise LmscopeError(f"'{handle.name}' is not a MoEfied model: choose {DERIVED_NAME}.")
    return PROBE.cached(handle, cache, token_ids=encode(handle, text, settings().max_tokens).token_ids.tolist())


TRAINED_ROUTER = "softmax (trained)"


def _trained_loss_by_k(handle: ModelHandle, token_ids: list[int]) -> LossByK:
    ids = np.asarray(token_ids, dtype=np.int64)
    shared = shared_count(handle.config)
    n_experts = routed_count(handle.config) + shared
    ks = active_ks(n_experts, shared, active_count(handle.config))
    values = []
    for k in ks:
        with at_k(handle.model, int(k)):
            values.append(token_nll(handle, ids).mean())
    nll = {TRAINED_ROUTER: {n_experts: np.asarray(values, dtype=np.float64)}}
    return LossByK(handle.name, ids, float("nan"), {n_experts: ks}, nll)


TRAINED = CachedProbe("moe-trained-loss", TRAINED_VERSION, _trained_loss_by_k)


def trained_loss_by_k(handle: ModelHandle, text: str, cache: ResultCache) -> Cached[LossByK]:
    """Mean NLL of the text under a Mixtral-style MoE with k experts active per token (its S shared ones and the top
    k − S routed ones, by its routers' own rule; E counts both), for k = S + 1, S + 2, S + 4, ..., E and the k it
    routes by; no dense reference: `dense_nll` is NaN; cached."""
    sparse_block(handle, 0)
    return TRAINED.cached(handle, cache, token_ids=encode(handle, text, settings().max_tokens).token_ids.tolist())
