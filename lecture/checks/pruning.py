"""Checks of the pruning section: quantization keeps the loss where pruning at the same bytes does not (the naive
methods or the strong ones on both sides), pruning that reads the layers' inputs (Wanda, SparseGPT) keeps it at 50%
where magnitude does not, and loses more on text unlike the calibration text; sparse products are slower than
dense ones unless most weights are zero; and
iterative pruning finds a winning ticket in a small network; most attention heads can be dropped alone, a few
cannot, and dropping the least important first beats random orders."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from results.dropped_heads import DroppedHeads
from results.lottery import LotteryResult
from results.pruning import CALIBRATED, METHOD_NAMES, PRUNERS, QUANTIZERS, Tradeoff, TradeoffPoint
from results.sparse_cost import SparseCost


def tradeoff(rendered: Rendered) -> str:
    done = rendered.result("tradeoff", Tradeoff)
    # The best pruning at half the weights (unstructured, else 2:4), against every quantization at no more bytes.
    halves = [p for p in done.points if p.method in PRUNERS and p.label in ("50% pruned", "2:4")]
    quantized = [p for p in done.points if p.method in QUANTIZERS]
    if not halves:
        raise rendered.fail("the figure needs a pruning method at 50% or 2:4")
    half = min(halves, key=lambda p: p.nll_text)
    cheaper = [p for p in quantized if p.bytes_per_weight <= half.bytes_per_weight]
    best = min(cheaper, key=lambda p: p.nll_text) if cheaper else None
    if best is None or not best.nll_text < half.nll_text or abs(best.nll_text - done.base_nll_text) > 0.05:
        raise rendered.fail("no quantization at the bytes of 50% pruning keeps the full model's loss and beats it")
    return (
        f"{METHOD_NAMES[best.method]} {best.label}: {best.bytes_per_weight:.2f} bytes per weight, NLL "
        f"{best.nll_text:.2f}; {METHOD_NAMES[half.method]} {half.label}: {half.bytes_per_weight:.2f}, NLL "
        f"{half.nll_text:.2f}; unchanged (2 bytes): {done.base_nll_text:.2f}"
    )


def _at_half(
    rendered: Rendered, needed: tuple[str, ...] = ("prune", "wanda", "sparsegpt")
) -> tuple[Tradeoff, dict[str, TradeoffPoint]]:
    """The trade-off and its unstructured 50% points by method; a failure unless the needed methods are there."""
    done = rendered.result("tradeoff", Tradeoff)
    half = {p.method: p for p in done.points if p.label == "50% pruned"}
    if not set(needed) <= half.keys():
        raise rendered.fail(f"the figure needs {', '.join(METHOD_NAMES[m] for m in needed)} pruning at 50%")
    return done, half


def methods(rendered: Rendered) -> str:
    done, half = _at_half(rendered)
    rise = {method: point.nll_corpus - done.base_nll_corpus for method, point in half.items()}
    if not 0 < rise["sparsegpt"] < rise["prune"] / 2 or not 0 < rise["wanda"] < rise["prune"] / 2:
        raise rendered.fail("Wanda and SparseGPT at 50% do not stay far closer to the model than magnitude pruning")
    return (
        f"held-out NLL at 50%: magnitude +{rise['prune']:.2f}, Wanda +{rise['wanda']:.2f}, SparseGPT "
        f"+{rise['sparsegpt']:.2f} (unchanged {done.base_nll_corpus:.2f})"
    )


FAR_DOMAINS = ("Python code", "French")  # the unlike texts furthest from the English calibration sentences


def robustness(rendered: Rendered) -> str:
    done, half = _at_half(rendered)
    far = [done.domains.index(name) for name in FAR_DOMAINS]
    rises = {
        method: (point.nll_corpus - done.base_nll_corpus, (point.nll_domains - done.base_nll_domains)[far])
        for method, point in half.items()
        if method in CALIBRATED
    }
    shown = "; ".join(
        f"{METHOD_NAMES[method]}: held-out +{held_out:.2f}, "
        + ", ".join(f"{name} +{rise:.2f}" for name, rise in zip(FAR_DOMAINS, unlike))
        for method, (held_out, unlike) in rises.items()
    )
    if not all(held_out > 0 and bool((unlike > 2 * held_out).all()) for held_out, unlike in rises.values()):
        raise rendered.fail(f"Wanda or SparseGPT does not lose twice as much on code and French as held out ({shown})")
    held_out, unlike = rises["sparsegpt"]
    times = float(unlike.mean() / held_out)
    if rendered.own_model and not 3.5 <= times <= 5.5:  # the caption: SparseGPT four to five times
        raise rendered.fail(f"SparseGPT loses {times:.1f} times as much on code and French as held out ({shown})")
    return f"{shown}; SparseGPT {times:.1f} times its held-out loss"


def sparse_cost(rendered: Rendered) -> str:
    done = rendered.result("sparse_cost", SparseCost)
    half = int(np.argmin(np.abs(done.sparsities - 0.5)))
    speedup, crossover = done.speedup(), done.crossover()
    shown = "; ".join(
        f"{n} token{'s' if n > 1 else ''}: {speedup[row, half]:.2f}x at {done.sparsities[half]:.0%} zeros, "
        + (f"faster from {crossover[row]:.0%}" if np.isfinite(crossover[row]) else "never faster")
        for row, n in enumerate(done.tokens)
    )
    found = f"{done.device}, {done.threads} threads: {shown}"
    if not bool((speedup[:, half] < 1).all()) or bool((crossover < 0.7).any()):
        raise rendered.fail(f"sparse products are not slower at half zeros, or pay below 70% zeros ({found})")
    return found


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
    if rendered.own_model and (layer != 1 or top < 20 * median):  # the caption: layer 1, some thirty times the median
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
    "pruning_methods": methods,
    "pruning_robustness": robustness,
    "sparse_cost": sparse_cost,
    "lottery_tickets": tickets,
    "head_drop_grid": head_grid,
    "head_drop_curve": head_curve,
}
