"""Checks of the mixture-of-experts section: top-k routing, skewed load, loss against k, and the trained MoE's
capacity against compute and its training."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from probes import moe_trained, routing
from results.moe_trained import TrainingLog, tenths
from results.moefication import LossByK
from results.routing import LayerRouting, RoutingResult


def moe_routing(rendered: Rendered) -> str:
    layer = rendered.result("routing", RoutingResult).router(int(rendered.settings["options"]["layer"]))
    distinct = all(len(set(row)) == layer.top_k for row in layer.experts.tolist())
    top = np.argmax(layer.logits, axis=1)
    if not distinct or not np.array_equal(top, layer.experts[:, 0]):
        raise rendered.fail("the ringed experts are not each token's top-k distinct experts")
    if layer.rule == "softmax":
        return _softmax_gates(rendered, layer)
    favourites = np.argsort(np.bincount(top, minlength=layer.n_experts))[::-1][:3]
    taken = int(np.isin(top, favourites).sum())
    others = {int(e) for e in layer.experts[:, 1:].ravel()}
    if taken <= len(top) / 2 or len(others) < 2 * layer.top_k:
        raise rendered.fail("three experts do not get most first choices, or the other picks hardly change")
    return (
        f"{layer.label}: experts {', '.join(map(str, sorted(favourites.tolist())))} are the first choice of {taken} of "
        f"{len(top)} tokens; the other picks use {len(others)} of the {layer.n_experts} experts"
    )


def _softmax_gates(rendered: Rendered, layer: LayerRouting) -> str:
    """A trained softmax router: G(x) = Softmax(x·W_g), the chosen are the top k of G, their gates G renormalised."""
    shifted = np.exp(layer.logits - layer.logits.max(axis=1, keepdims=True))
    softmax = shifted / shifted.sum(axis=1, keepdims=True)
    chosen = np.take_along_axis(layer.probs, layer.experts, axis=1)
    best = -np.sort(-layer.probs, axis=1)[:, : layer.top_k]
    renormalised = chosen / chosen.sum(axis=1, keepdims=True)
    if not np.allclose(layer.probs, softmax, atol=1e-5) or not np.allclose(chosen, best, atol=1e-6):
        raise rendered.fail("the probabilities are not the softmax of the router's scores, or the chosen not its top k")
    if not np.allclose(layer.weights, renormalised, atol=1e-5):
        raise rendered.fail("the chosen experts' gates are not their probabilities renormalised to sum to 1")
    return (
        f"{layer.label}: each of {len(layer.probs)} tokens uses its top {layer.top_k} of {layer.n_experts} by "
        f"Softmax(x·W_g), which hold {chosen.sum(axis=1).mean():.0%} of its probability on average; renormalised, "
        f"the first choice's gate is {layer.weights[:, 0].mean():.2f} on average"
    )


def moe_load(rendered: Rendered) -> str:
    layer = rendered.result("routing", RoutingResult).router(int(rendered.settings["options"]["layer"]))
    balance = routing.balance(layer)
    counts = np.bincount(layer.experts.ravel(), minlength=layer.n_experts)
    if not np.allclose(balance.load, counts / counts.sum()):
        raise rendered.fail("the bars are not the shares of routed slots")
    return (
        f"{layer.label}: busiest expert {balance.load.max():.0%} of slots, quietest {balance.load.min():.0%} "
        f"(even: {1 / layer.n_experts:.0%}); CV {balance.cv:.2f}, load entropy {balance.entropy:.2f} of 1"
    )


def moe_loss(rendered: Rendered) -> str:
    loss = rendered.result("loss", LossByK)
    if not np.isfinite(loss.dense_nll):
        return _trained_loss(rendered, loss)
    at_e = {(router, e): float(values[-1]) for router, by_e in loss.nll.items() for e, values in by_e.items()}
    if any(value != loss.dense_nll for value in at_e.values()):
        raise rendered.fail(f"k = E differs from the dense model ({loss.dense_nll}): {at_e}")
    if any(np.any(loss.nll["oracle"][e] > loss.nll["fitted"][e] + 1e-9) for e in loss.nll["oracle"]):
        raise rendered.fail("the oracle router loses more than the fitted one somewhere")
    quarter = {router: float(by_e[16][list(loss.ks[16]).index(4)]) for router, by_e in loss.nll.items()}
    return (
        f"k = E equals the dense model ({loss.dense_nll:.3f} nats) for every E and router; at E = 16, k = 4: "
        + ", ".join(f"{router} {value:.2f}" for router, value in quarter.items())
    )


def _trained_loss(rendered: Rendered, loss: LossByK) -> str:
    ((experts, values),) = next(iter(loss.nll.values())).items()
    ks = list(loss.ks[experts])
    trained = moe_trained.active_count(rendered.handle.config)
    best = ks[int(np.argmin(values))]
    if values[0] <= values[ks.index(trained)] or best == ks[0]:
        raise rendered.fail(
            f"the fewest experts (k = {ks[0]}) do not lose more than the trained k = {trained}: {values}"
        )
    return (
        f"k = {ks[0]}: {values[0]:.2f} nats, k = {trained} (as trained): {values[ks.index(trained)]:.2f}, "
        f"k = {experts}: {values[-1]:.2f}; lowest at k = {best}"
    )


def moe_capacity(rendered: Rendered) -> str:
    log = rendered.result("training", TrainingLog)
    at = list(log.costs.ks).index(log.recipe.top_k)
    share = log.costs.moe_active[at] / log.costs.dense_active
    if not log.dense_nll < log.trained_nll[at] < log.untrained_nll[at] or not share < 1:
        raise rendered.fail(
            f"at k = {log.recipe.top_k} the trained MoE ({log.trained_nll[at]:.2f}) does not lie between the untrained "
            f"router ({log.untrained_nll[at]:.2f}) and dense ({log.dense_nll:.2f}), or is not cheaper than dense "
            f"({share:.0%} of its active parameters)"
        )
    return (
        f"k = {log.recipe.top_k} of {log.recipe.experts}: {log.costs.moe_active[at] / 1e6:.0f} M active parameters "
        f"({share:.0%} of dense), NLL {log.trained_nll[at]:.2f} trained vs {log.untrained_nll[at]:.2f} untrained; "
        f"dense {log.dense_nll:.2f}"
    )


def moe_training(rendered: Rendered) -> str:
    log = rendered.result("training", TrainingLog)
    (first, last), (balance_first, balance) = tenths(log.kl), tenths(log.balance)
    if not last < first:
        raise rendered.fail(f"the distillation KL does not fall ({first:.2f} at the start, {last:.2f} at the end)")
    untrained_cv, trained_cv = np.median(log.untrained_cv), np.median(log.trained_cv)
    if not balance < balance_first or not trained_cv < untrained_cv:
        raise rendered.fail(
            f"the balance loss does not fall ({balance_first:.2f} -> {balance:.2f}), or the routed experts are used "
            f"less evenly than by the untrained router (load CV {untrained_cv:.2f} -> {trained_cv:.2f})"
        )
    converted, fitted, *distilled = log.curve_nll
    if not converted - fitted > fitted - distilled[-1] > 0:
        raise rendered.fail(f"the layer-wise fit does not buy most of the loss: {log.curve_nll.round(2)}")
    gains = -np.diff([fitted, *distilled])
    if not gains[0] > gains[-1]:
        raise rendered.fail(f"the distillation's returns do not diminish: {gains.round(3)}")
    return (
        f"KL {first:.2f} → {last:.2f} nats per token over {len(log.kl)} steps; held-out NLL {log.curve_nll[0]:.2f} → "
        f"{log.curve_nll[-1]:.2f} in {log.curve_seconds[-1] / 60:.1f} min (dense {log.dense_nll:.2f}); layer errors "
        f"{log.layer_error.min():.2f}–{log.layer_error.max():.2f}; balance loss {balance_first:.2f} → {balance:.2f} "
        f"(1 = even), load CV {untrained_cv:.2f} untrained → {trained_cv:.2f}"
    )


CHECKS = {
    "moe_routing": moe_routing,
    "moe_load": moe_load,
    "moe_loss_by_k": moe_loss,
    "moe_capacity": moe_capacity,
    "moe_training": moe_training,
}
