"""Checks of the long-context section: global tokens keep a sink head's weight; sinks recover a window's loss."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from results.attention import AttentionResult
from results.structured import MaskView, WindowSweep


def mask_panel(rendered: Rendered) -> str:
    view = rendered.result("masks", MaskView)
    layer, head = int(rendered.query["layer"]), int(rendered.query["head"])
    kept = dict(zip(view.titles, view.kept[:, layer, head].tolist()))
    full, sliding, dilated, global_sliding = kept.values()
    if abs(full - 1) > 1e-3 or not global_sliding > max(sliding, dilated):
        raise rendered.fail(f"kept shares {kept} do not put global + sliding above the plain windows")
    sink_share = rendered.result("attention", AttentionResult).sink_share[layer, head]
    return (
        f"L{layer}H{head} (sink share {sink_share:.0%}): sliding keeps "
        f"{sliding:.0%}, dilated {dilated:.0%}, global + sliding {global_sliding:.0%} of its weight"
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


CHECKS = {
    "mask_panel": mask_panel,
    "window_loss": window_loss,
}
