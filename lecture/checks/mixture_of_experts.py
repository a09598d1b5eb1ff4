"""Checks of the mixture-of-experts section: top-k routing, skewed load, loss against k."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from probes import routing
from results.moefication import LossByK
from results.routing import RoutingResult


def moe_routing(rendered: Rendered) -> str:
    layer = rendered.result("routing", RoutingResult).router(int(rendered.settings["options"]["layer"]))
    distinct = all(len(set(row)) == layer.top_k for row in layer.experts.tolist())
    top = np.argmax(layer.logits, axis=1)
    if not distinct or not np.array_equal(top, layer.experts[:, 0]):
        raise rendered.fail("the ringed experts are not each token's top-k distinct experts")
    favourites = np.argsort(np.bincount(top, minlength=layer.n_experts))[::-1][:3]
    taken = int(np.isin(top, favourites).sum())
    others = {int(e) for e in layer.experts[:, 1:].ravel()}
    if taken <= len(top) / 2 or len(others) < 2 * layer.top_k:
        raise rendered.fail("three experts do not get most first choices, or the other picks hardly change")
    return (
        f"{layer.label}: experts {', '.join(map(str, sorted(favourites.tolist())))} are the first choice of {taken} of "
        f"{len(top)} tokens; the other picks use {len(others)} of the {layer.n_experts} experts"
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


CHECKS = {
    "moe_routing": moe_routing,
    "moe_load": moe_load,
    "moe_loss_by_k": moe_loss,
}
