"""Mixture-of-Experts routing, read from the model's own router modules through forward hooks.

transformers declares each MoE family's router class in `_can_record_outputs["router_logits"]` (what
`output_router_logits=True` records). A hook on every such module sees the raw router scores and the experts
the block then uses. The families differ in how scores become routing probabilities:
- softmax over all experts (Mixtral, Qwen2/3-MoE, OLMoE, DeepSeek-V2, PhiMoE, Switch), where the top-k are
  taken before or after the softmax (GraniteMoE, GPT-OSS and JetMoE take top-k logits, then softmax over
  them: the same experts, since softmax keeps the order);
- sigmoid affinities, each in (0, 1), with a bias that only steers the choice (DeepSeek-V3 and its kin);
- lmscope's MoEfied model: each expert's predicted share of the MLP output norm.
The experts and mixing weights are read from the router's own outputs, never re-derived, so capacity limits
(Switch drops tokens beyond an expert's capacity: expert -1) and group-limited choices are what the model did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from probes import moe_state
from probes.batches import LengthGroups, Progress, batches, grouped
from probes.text import Encoded, encode, from_ids
from results.moefication import Setting
from results.routing import DROPPED, Balance, CorpusRouting, LayerRouting, Preference, RoutingResult
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.hooks import observing
from runtime.placement import host
from runtime.probe import CachedProbe
from runtime.settings import settings

VERSION = 3  # 3: a Qwen2-MoE's shared expert counted in routed experts' worth


@dataclass
class Router:
    """A router module found in a model, with what is needed to read its outputs."""

    name: str
    module: nn.Module
    logits_index: int
    layer: int
    kind: str
    rule: str
    label: str
    n_shared: int
    shared_gate: nn.Module | None


def _recorded_router_classes(model: nn.Module) -> dict[type, int]:
    """Router classes (and the output index of their logits) that the model's classes declare to transformers."""
    found: dict[type, int] = {}
    for module in model.modules():
        recorder = (getattr(type(module), "_can_record_outputs", None) or {}).get("router_logits")
        if recorder is not None:
            target = getattr(recorder, "target_class", recorder)
            found[target] = getattr(recorder, "index", 0)
    return found


def _rule(module: nn.Module) -> str:
    if getattr(module, "scores_are_norms", False):
        return "norm share"
    if hasattr(module, "e_score_correction_bias"):  # DeepSeek-V3's aux-loss-free balancing bias
        return "sigmoid"
    return "softmax"


def _layer_number(name: str) -> int:
    numbers = [int(part) for part in name.split(".") if part.isdigit()]
    if not numbers:
        raise LmscopeError(f"lmscope cannot tell which block the router '{name}' belongs to.")
    return numbers[0]


def shared_count(config: object) -> int:
    """How many routed experts' worth of always-on shared expert a Qwen2-MoE config has (Qwen1.5-MoE-A2.7B: 4 of
    its 1,408-neuron experts in one of 5,632); 0 without one."""
    size = getattr(config, "shared_expert_intermediate_size", 0) or 0
    return max(1, size // getattr(config, "moe_intermediate_size", size)) if size else 0


def _shared(handle: ModelHandle, name: str) -> tuple[int, nn.Module | None]:
    """Shared experts of the MoE block holding router `name`: their count, and Qwen2-MoE's gate on them."""
    block = handle.model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else handle.model
    if hasattr(block, "shared_experts"):
        return int(getattr(handle.text_config, "n_shared_experts", 1) or 1), None
    if hasattr(block, "shared_expert"):
        return shared_count(handle.text_config), getattr(block, "shared_expert_gate", None)
    return 0, None


def routers(handle: ModelHandle) -> list[Router]:
    """The model's router modules in the order it runs them; an error naming the model if it has none."""
    classes = _recorded_router_classes(handle.model)
    found = []
    for name, module in handle.model.named_modules():
        index = next((i for cls, i in classes.items() if isinstance(module, cls)), None)
        if index is None and getattr(module, "scores_are_norms", False):
            index = 0
        if index is None:
            continue
        n_shared, gate = _shared(handle, name)
        layer, kind = _layer_number(name), "attention" if "attention" in name else "mlp"
        stack = next((f"{s} " for s in ("encoder", "decoder") if name.startswith(s)), "")
        label = f"{stack}layer {layer}" + (" attention" if kind == "attention" else "")
        found.append(Router(name, module, index, layer, kind, _rule(module), label, n_shared, gate))
    if not found:
        raise LmscopeError(
            f"'{handle.name}' is a dense model: it has no Mixture-of-Experts routers. "
            "Choose an MoE checkpoint, or one built from SmolLM2: the trained Mixtral MoE (smollm2-135m-moe) or the "
            "untrained MoEfication (smollm2-135m-moefied)."
        )
    return found


def _best_first(experts: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = weights.argsort(dim=-1, descending=True, stable=True)
    return experts.gather(-1, order), weights.gather(-1, order)


def _jetmoe_choice(module: nn.Module, output: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """JetMoE's gating returns slots sorted by expert: put each slot back at its (token, rank) place."""
    slots, _, gates, sizes, logits = output
    experts = torch.repeat_interleave(torch.arange(len(sizes)), torch.as_tensor(sizes))
    flat_experts = torch.empty_like(experts)
    flat_experts[slots] = experts
    flat_weights = torch.empty_like(gates)
    flat_weights[slots] = gates
    top_k = int(getattr(module, "top_k"))  # a plain int attribute, which torch's Module type does not declare
    return flat_experts.view(logits.shape[0], top_k), flat_weights.view(logits.shape[0], top_k)


def _switch_choice(output: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Switch's router returns a one-hot dispatch mask with over-capacity tokens zeroed, and the top-1 probability."""
    dispatch, top_probability, logits = output
    dispatch = dispatch.reshape(-1, logits.shape[-1])
    experts = torch.where(dispatch.any(-1), dispatch.argmax(-1), DROPPED)
    return experts[:, None], top_probability.reshape(-1, 1)


def _choice(module: nn.Module, output: tuple, logits_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(experts, weights), each (tokens, k), from a router's output."""
    kind = type(module).__name__
    if kind == "JetMoeTopKGating":
        return _jetmoe_choice(module, output)
    if kind == "SwitchTransformersTop1Router":
        return _switch_choice(output)
    rest = [t for i, t in enumerate(output) if i != logits_index and isinstance(t, torch.Tensor)]
    indices = [t for t in rest if not t.is_floating_point()]
    scores = [t for t in rest if t.is_floating_point()]
    if len(indices) != 1 or len(scores) != 1:
        raise LmscopeError(
            f"lmscope cannot read the experts chosen by {kind}: its outputs are not (logits, weights, indices)."
        )
    return indices[0], scores[0]


def _probabilities(logits: torch.Tensor, rule: str) -> torch.Tensor:
    if rule == "sigmoid":
        return logits.sigmoid()
    if rule == "norm share":
        scores = logits.clamp(min=0)
        return scores / scores.sum(-1, keepdim=True).clamp(min=torch.finfo(scores.dtype).tiny)
    return logits.softmax(-1)


# (router, its logits (tokens, experts), experts (tokens, k), weights (tokens, k), shared gate (tokens,) | None)
RouterCallback = Callable[[Router, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], None]


@contextmanager
def hooked_routers(handle: ModelHandle, on_route: RouterCallback) -> Iterator[list[Router]]:
    """Within the block, and only in this call's context, every router call reports its decisions (tokens
    batch-major) to on_route."""
    found = routers(handle)
    # Qwen2-MoE runs its shared expert's gate after the router: report a router once both have run.
    decisions: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # logits, experts, weights
    gates: dict[int, torch.Tensor] = {}

    def report(router: Router) -> None:
        if id(router) in decisions and (router.shared_gate is None or id(router) in gates):
            on_route(router, *decisions.pop(id(router)), gates.pop(id(router), None))

    def router_hook(router: Router) -> Callable:
        def call(module: nn.Module, args: tuple, output: tuple) -> None:
            output = tuple(host(t) if isinstance(t, torch.Tensor) else t for t in output)
            logits = output[router.logits_index].float()
            logits = logits.reshape(-1, logits.shape[-1])
            experts, weights = _choice(module, output, router.logits_index)
            decisions[id(router)] = (logits, *_best_first(experts.long(), weights.float()))
            report(router)

        return call

    def gate_hook(router: Router) -> Callable:
        def call(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            gates[id(router)] = host(output).sigmoid().reshape(-1)
            report(router)

        return call

    hooks = {router.module: router_hook(router) for router in found}
    hooks |= {router.shared_gate: gate_hook(router) for router in found if router.shared_gate is not None}
    with observing(forward=hooks):
        yield found


def _layer_routing(router: Router, logits, experts, weights, gate) -> LayerRouting:
    return LayerRouting(
        layer=router.layer,
        module=router.name,
        label=router.label,
        kind=router.kind,
        rule=router.rule,
        n_shared=router.n_shared,
        logits=logits.numpy().astype(np.float32),
        probs=_probabilities(logits, router.rule).numpy().astype(np.float32),
        experts=experts.numpy().astype(np.int32),
        weights=weights.numpy().astype(np.float32),
        shared_gate=None if gate is None else gate.numpy().astype(np.float32),
    )


def compute(handle: ModelHandle, text: str) -> RoutingResult:
    """Run the model once on the text and record every router."""
    return _recorded(handle, encode(handle, text, settings().max_tokens))


def _recorded(handle: ModelHandle, encoded: Encoded) -> RoutingResult:
    recorded: list[LayerRouting] = []

    def on_route(router: Router, logits, experts, weights, gate) -> None:
        recorded.append(_layer_routing(router, logits, experts, weights, gate))

    with hooked_routers(handle, on_route):
        forward(handle, encoded.token_ids)
    return RoutingResult(handle.name, handle.fingerprint, encoded.token_ids, encoded.tokens, recorded)


def _routed(setting: dict[str, Any] | None) -> AbstractContextManager:
    """The derived MoE's E, k and router (a `Setting` as a dict) for the passes of a probe; nothing to set for a
    real MoE."""
    return moe_state.routed(Setting(**setting)) if setting else nullcontext()


def _routing(handle: ModelHandle, token_ids: list[int], setting: dict[str, Any] | None) -> RoutingResult:
    with _routed(setting):
        return _recorded(handle, from_ids(handle, token_ids))


PROBE = CachedProbe("routing", VERSION, _routing)


def run(handle: ModelHandle, text: str, cache: ResultCache, setting: Setting | None = None) -> Cached[RoutingResult]:
    """Routing of the text, cached per model, token ids and routing setting (the derived MoE's E, k and router,
    which the passes then use)."""
    ids = encode(handle, text, settings().max_tokens).token_ids.tolist()
    return PROBE.cached(handle, cache, token_ids=ids, setting=asdict(setting) if setting else None)


def expert_balance(experts: np.ndarray, n_experts: int, probs: np.ndarray | None = None) -> Balance:
    """Load per expert of (tokens, k) chosen experts and how far it is from uniform; the auxiliary loss when the
    softmax probabilities (tokens, experts) are given."""
    used = experts[experts != DROPPED]
    counts = np.bincount(used, minlength=n_experts).astype(np.float64)
    load = counts / max(counts.sum(), 1.0)
    cv = float(load.std() / load.mean()) if load.mean() > 0 else 0.0
    nonzero = load[load > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(n_experts)) if n_experts > 1 else 1.0
    aux = None if probs is None else float(n_experts * (load * probs.mean(0)).sum())
    return Balance(load, cv, entropy, aux, float((experts == DROPPED).mean()))


def balance(layer: LayerRouting) -> Balance:
    """Load per expert and how far it is from uniform; the auxiliary loss for softmax routers."""
    return expert_balance(layer.experts, layer.n_experts, layer.probs if layer.rule == "softmax" else None)


def confidence(layer: LayerRouting) -> tuple[np.ndarray, np.ndarray]:
    """Per token: the top routing probability, and its margin over the second."""
    top = np.sort(layer.probs, axis=1)[:, ::-1]
    second = top[:, 1] if top.shape[1] > 1 else np.zeros(len(top))
    return top[:, 0], top[:, 0] - second


def transitions(first: np.ndarray, second: np.ndarray, n_first: int, n_second: int) -> np.ndarray:
    """(n_first, n_second) counts of tokens whose top-1 expert goes from `first` to `second`, from two
    routers' (tokens, k) experts."""
    counts = np.zeros((n_first, n_second), dtype=np.int64)
    keep = (first[:, 0] != DROPPED) & (second[:, 0] != DROPPED)
    np.add.at(counts, (first[keep, 0], second[keep, 0]), 1)
    return counts


def _corpus(
    handle: ModelHandle, groups: LengthGroups, setting: dict[str, Any] | None, on_progress: Progress
) -> CorpusRouting:
    per_router: dict[str, list[np.ndarray]] = {}
    sizes: dict[str, int] = {}
    ids: list[np.ndarray] = []

    def on_route(router: Router, logits, experts, weights, gate) -> None:
        per_router.setdefault(router.name, []).append(experts.numpy().astype(np.int16))
        sizes[router.name] = logits.shape[1]

    with _routed(setting), hooked_routers(handle, on_route) as found:
        for batch in batches(dict(groups), on_progress):
            ids.append(batch.reshape(-1))
            forward(handle, batch)
    names = [router.name for router in found]
    return CorpusRouting(
        model=handle.name,
        fingerprint=handle.fingerprint,
        token_ids=np.concatenate(ids),
        experts=np.stack([np.concatenate(per_router[name]) for name in names]),
        routers=[router.label for router in found],
        n_experts=[sizes[name] for name in names],
    )


CORPUS = CachedProbe("routing-corpus", VERSION, _corpus)


def corpus_run(
    handle: ModelHandle,
    sentences: Sequence[str],
    cache: ResultCache,
    setting: Setting | None = None,
    on_progress: Progress | None = None,
) -> Cached[CorpusRouting]:
    """Routing of many sentences, batched by length without padding, cached per routing setting."""
    chosen = asdict(setting) if setting else None
    return CORPUS.cached(handle, cache, on_progress, groups=grouped(handle, sentences), setting=chosen)


def corpus_balance(corpus: CorpusRouting, router: int) -> Balance:
    """Load per expert of one router over the whole corpus (no auxiliary loss: the probabilities are not kept)."""
    return expert_balance(corpus.experts[router], corpus.n_experts[router], None)


def preferences(
    corpus: CorpusRouting, router: int, token_text: Callable[[int], str], top: int = 8, min_count: int = 3
) -> list[list[Preference]]:
    """For each expert of one router, the tokens (seen at least min_count times) it takes most often: by the
    share of their occurrences routed to it, smoothed so that frequent tokens win ties."""
    chosen = corpus.experts[router]
    vocabulary, inverse, occurrences = np.unique(corpus.token_ids, return_inverse=True, return_counts=True)
    result = []
    for expert in range(corpus.n_experts[router]):
        routed = np.bincount(inverse[(chosen == expert).any(1)], minlength=len(vocabulary))
        frequent = np.flatnonzero((occurrences >= min_count) & (routed > 0))
        # Laplace-smoothed share: 300 of 300 ranks above 3 of 3.
        smoothed = (routed[frequent] + 1) / (occurrences[frequent] + 2)
        order = frequent[np.lexsort((-routed[frequent], -smoothed))][:top]
        result.append(
            [
                Preference(int(vocabulary[i]), token_text(int(vocabulary[i])), int(routed[i]), int(occurrences[i]))
                for i in order
            ]
        )
    return result
