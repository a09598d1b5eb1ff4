"""Checks of the specialised-heads section: the picked head tops its score and passes the type's threshold."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from probes import heads
from results.attention import AttentionResult
from views.heads import SCORE_TYPES, score_values, top_head


def specialised_head(rendered: Rendered) -> str:
    score = rendered.settings["options"]["score"]
    values = score_values(
        score,
        rendered.result("text", AttentionResult) if "text" in rendered.results else None,
        rendered.result("random", AttentionResult),
    )
    layer, head = rendered.query["layer"], rendered.query["head"]
    chosen = float(values[int(layer), int(head)])
    kind = SCORE_TYPES[score]
    threshold = heads.THRESHOLDS[kind]
    runner_up = float(np.sort(values, axis=None)[-2])
    if chosen < float(np.nanmax(values)) or chosen < threshold:
        raise rendered.fail(f"head L{layer}H{head} scores {chosen:.2f} for {kind}: not the top, or below {threshold}")
    return f"L{layer}H{head} has the top {kind} score, {chosen:.2f} (next {runner_up:.2f}; a head counts as {kind} from {threshold})"


def head_atlas(rendered: Rendered) -> str:
    score = rendered.settings["options"]["score"]
    values = score_values(score, rendered.result("text", AttentionResult), rendered.result("random", AttentionResult))
    kind = SCORE_TYPES[score]
    strong = np.argwhere(values >= heads.THRESHOLDS[kind])
    if not len(strong):
        raise rendered.fail(f"no head reaches the {kind} threshold {heads.THRESHOLDS[kind]}")
    layer, head = top_head(values)
    return (
        f"{len(strong)} of {values.size} heads score {heads.THRESHOLDS[kind]} or more for {kind}, in layers "
        f"{int(strong[:, 0].min())} to {int(strong[:, 0].max())}; the top is L{layer}H{head} ({values[layer, head]:.2f})"
    )


CHECKS = {
    "specialised_head": specialised_head,
    "head_atlas": head_atlas,
}
