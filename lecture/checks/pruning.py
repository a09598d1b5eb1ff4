"""Checks of the pruning section: quantization keeps the loss where pruning at the same bytes does not, and
iterative pruning finds a winning ticket in a small network; most attention heads can be dropped alone, a few
cannot, and dropping the least important first beats random orders."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from results.dropped_heads import DroppedHeads
from results.lottery import LotteryResult
from results.pruning import Tradeoff


def tradeoff(rendered: Rendered) -> str:
    done = rendered.result("tradeoff", Tradeoff)
    pruned = {p.label: p for p in done.points if p.method.startswith("prune")}
    quantized = [p for p in done.points if p.method == "quantize"]
    half = pruned.get("50% pruned") or pruned["2:4"]
    cheaper = [p for p in quantized if p.bytes_per_weight <= half.bytes_per_weight]
    best = min(cheaper, key=lambda p: p.nll_text) if cheaper else None
    if best is None or not best.nll_text < half.nll_text or abs(best.nll_text - done.base_nll_text) > 0.05:
        raise rendered.fail("no quantization at the bytes of 50% pruning keeps the full model's loss and beats it")
    return (
        f"{best.label}: {best.bytes_per_weight:.2f} bytes per weight, NLL {best.nll_text:.2f}; {half.label}: "
        f"{half.bytes_per_weight:.2f}, NLL {half.nll_text:.2f}; unchanged (2 bytes): {done.base_nll_text:.2f}"
    )


def tickets(rendered: Rendered) -> str:
    done = rendered.result("lottery", LotteryResult)
    near, last, dense = done.nearest_round(0.1), done.n_rounds, done.dense.mean()
    means = {name: accuracy.mean(axis=0) for name, accuracy in done.lines().items()}
    ticket, reinit, random = means["winning ticket"], means["reinit"], means["random mask"]

    def at(round_: int) -> str:
        return (
            f"at {done.remaining[round_]:.1%} of the weights: ticket {ticket[round_]:.1%}, reinit "
            f"{reinit[round_]:.1%}, random mask {random[round_]:.1%}"
        )

    if ticket[near] < dense - 0.01 or ticket[near] <= max(reinit[near], random[near]):
        raise rendered.fail(f"dense {dense:.1%}; {at(near)}")
    if not all(ticket[last] - line[last] > ticket[near] - line[near] for line in (reinit, random)):
        raise rendered.fail(f"the ticket's lead does not grow: {at(near)}; {at(last)}")
    return f"{done.n_seeds} seeds; dense {dense:.1%}; {at(near)}; {at(last)}"


SMALL_DELTA = 0.05  # nats: a head whose dropping changes the loss by less than this barely matters alone
EARLY_SHARE = 0.3  # the share of heads over which the importance order must beat every random order


def head_grid(rendered: Rendered) -> str:
    done = rendered.result("dropped_heads", DroppedHeads)
    size = np.abs(done.delta)
    small, top, median = float(np.mean(size < SMALL_DELTA)), float(done.delta.max()), float(np.median(size))
    layer, head = np.unravel_index(int(done.delta.argmax()), done.delta.shape)
    found = (
        f"{small:.0%} of {done.delta.size} heads change the loss by less than {SMALL_DELTA} nats; the top one "
        f"(layer {layer}, head {head}) by {top:.3f}, {top / median:.0f} times the median |change| {median:.4f}"
    )
    if small < 0.8 or top < 10 * median:
        raise rendered.fail(found)
    return found


def head_curve(rendered: Rendered) -> str:
    done = rendered.result("dropped_heads", DroppedHeads)
    early = (done.removed > 0) & (done.removed <= EARLY_SHARE * done.delta.size)
    last = int(np.flatnonzero(early)[-1])
    by_importance, random = done.nll_by_importance - done.nll_base, done.nll_random - done.nll_base
    found = (
        f"{done.removed[last]} of {done.delta.size} heads dropped: +{by_importance[last]:.2f} nats least important "
        f"first, +{random[:, last].min():.2f} to +{random[:, last].max():.2f} in {done.n_seeds} random orders"
    )
    beaten = np.all(by_importance[early] < random[:, early].min(axis=0))
    if not beaten or by_importance[last] > 0.5 or random[:, last].mean() < 1.0:
        raise rendered.fail(found)
    return found


CHECKS = {
    "pruning_tradeoff": tradeoff,
    "lottery_tickets": tickets,
    "head_drop_grid": head_grid,
    "head_drop_curve": head_curve,
}
