"""The derived MoE's loss against k: the mean NLL of a text at each number of experts, k and router, against the
dense model's."""

from __future__ import annotations

import numpy as np

from probes.moe_modules import MoefiedMLP
from probes.moe_state import dense, routed
from probes.moefication import DERIVED_NAME
from probes.nll import token_nll
from probes.residual import blocks
from probes.text import encode
from results.moefication import EXPERT_COUNTS, ROUTERS, LossByK, Setting
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe
from runtime.settings import settings

VERSION = 2  # of the cached loss against k


def ks_for(n_experts: int) -> np.ndarray:
    """1, 2, 4, ..., E: the k values measured for E experts."""
    return 2 ** np.arange(int(np.log2(n_experts)) + 1)


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
