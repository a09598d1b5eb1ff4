"""Checks of the long-context section: global tokens keep a sink head's weight; sinks recover a window's loss and
beat any pattern's shape at an equal budget."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from results.attention import AttentionResult
from results.attention_cost import AttentionCost
from results.structured import MaskView, PatternSweep, WindowSweep


def mask_panel(rendered: Rendered) -> str:
    view = rendered.result("masks", MaskView)
    layer, head = int(rendered.query["layer"]), int(rendered.query["head"])
    kept = dict(zip(view.titles, view.kept[:, layer, head].tolist()))
    full, sliding, dilated, global_sliding, block = kept.values()
    if abs(full - 1) > 1e-3 or not min(global_sliding, block) > max(sliding, dilated):
        raise rendered.fail(f"kept shares {kept} do not put the patterns with a global token above the plain windows")
    sink_share = rendered.result("attention", AttentionResult).sink_share[layer, head]
    return (
        f"L{layer}H{head} (sink share {sink_share:.0%}): sliding keeps {sliding:.0%}, dilated {dilated:.0%}, "
        f"global + sliding {global_sliding:.0%}, block-sparse {block:.0%} of its weight"
    )


def window_loss(rendered: Rendered) -> str:
    sweep = rendered.result("sweep", WindowSweep)
    window, with_sinks = sweep.mean_window, sweep.mean_sinks
    if sweep.sinks and not np.all(with_sinks <= window + 1e-6):
        raise rendered.fail("keeping the sink tokens made the loss worse at some window")
    if not window[0] > window[-1] > sweep.mean_full - 0.05:
        raise rendered.fail("the loss does not fall towards full attention as the window grows")
    smallest = int(sweep.windows[0])
    recovered = (window[0] - with_sinks[0]) / (window[0] - sweep.mean_full)
    if sweep.sinks and recovered < 0.5:
        raise rendered.fail(f"the sink tokens recover only {recovered:.0%} of the smallest window's extra loss")
    return (
        f"w = {smallest}: {window[0]:.2f} nats, {with_sinks[0]:.2f} with {sweep.sinks} sinks ({recovered:.0%} of the "
        f"gap recovered); w = {int(sweep.windows[-1])}: {window[-1]:.2f}; full attention {sweep.mean_full:.2f}"
    )


def budget_loss(rendered: Rendered) -> str:
    sweep = rendered.result("patterns", PatternSweep)
    if sweep.nll.shape[-1] != 2 or "dilated" not in sweep.patterns:
        raise rendered.fail("the sweep needs sink tokens and the dilated window")
    without, plain_budget = sweep.nll[..., 0].ravel(), sweep.budget[..., 0].ravel()
    sunk, sunk_budget = sweep.nll[..., 1].ravel(), sweep.budget[..., 1].ravel()
    unbeaten = [
        (b, loss)
        for b, loss in zip(plain_budget, without)
        if np.any(sunk_budget <= b) and not np.any((sunk_budget <= b) & (sunk < loss))
    ]
    if unbeaten:
        raise rendered.fail(
            f"without sinks, budget {unbeaten[0][0]:.0%} (NLL {unbeaten[0][1]:.2f}) beats every pattern with them"
        )
    dilated = sweep.patterns.index("dilated")
    others = np.delete(sweep.nll[..., 1], dilated, axis=0)
    if not np.all(sweep.nll[dilated, :, 1] > others.max(axis=0)):
        raise rendered.fail("with sinks, the dilated window is not the worst pattern at every size")
    best = int(np.argmin(np.where(sunk_budget <= 0.15, sunk, np.inf)))
    plain_best = float(np.where(plain_budget <= 0.4, without, np.inf).min())
    return (
        f"with {sweep.sinks} sinks at budget {sunk_budget[best]:.0%}: NLL {sunk[best]:.2f}; the best without sinks up to "
        f"40%: {plain_best:.2f}; full attention {sweep.nll_full:.2f}"
    )


def attention_cost(rendered: Rendered) -> str:
    cost = rendered.result("cost", AttentionCost)
    slopes = {kind: cost.exponent(kind) for kind in ("eager", "chunked", "window")}
    # Chunked full attention nears n² from below: over a few chunks, causal chunks skip part of the square. The
    # window's exponent is about 1 on a quiet machine (0.93 alone) and up to 1.31 beside another busy process
    # (the suite's other worker): the claim is the gap, full attention well above the window.
    eager, chunked, window = slopes.values()
    if not (eager > 1.6 and chunked > 1.3 and window < 1.5 and chunked > window + 0.3):
        raise rendered.fail(
            f"attention time exponents {slopes} are not about 2 for full attention and 1 for the window"
        )
    stored, chunks = (cost.peak_bytes[cost.kinds.index(k), -1] / 2**20 for k in ("eager", "chunked"))
    if not stored > chunks:
        raise rendered.fail(f"at {cost.lengths[-1]} tokens chunking takes {chunks:.0f} MB, eager {stored:.0f}")
    shown = ", ".join(f"{kind} n^{slope:.2f}" for kind, slope in slopes.items())
    return (
        f"attention time {shown}; memory at {cost.lengths[-1]:,} tokens: eager {stored:.0f} MB, chunked {chunks:.0f} MB"
    )


CHECKS = {
    "mask_panel": mask_panel,
    "window_loss": window_loss,
    "budget_loss": budget_loss,
    "attention_cost": attention_cost,
}
