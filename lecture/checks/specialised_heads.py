"""Checks of the specialised-heads section: the picked head tops its score and passes the type's threshold; the
offset profile peaks where the caption says; mixed heads exist."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from probes import heads
from results.attention import AttentionResult
from results.heads import HeadTypes
from views.heads import TYPE_SCORES, score_values, top_head


def _kinds(rendered: Rendered) -> tuple[AttentionResult, HeadTypes]:
    """The text's attention and the head types the preset drew from."""
    return rendered.result("text", AttentionResult), heads.classify(
        rendered.result("text", AttentionResult),
        rendered.result("random", AttentionResult),
        rendered.result("reversed", AttentionResult),
    )


def specialised_head(rendered: Rendered) -> str:
    score = rendered.settings["options"]["score"]
    values = score_values(score, *_kinds(rendered))
    layer, head = rendered.query["layer"], rendered.query["head"]
    chosen = float(values[int(layer), int(head)])
    kind = TYPE_SCORES[score]
    threshold = heads.THRESHOLDS[kind]
    runner_up = float(np.sort(values, axis=None)[-2])
    if chosen < float(np.nanmax(values)) or chosen < threshold:
        raise rendered.fail(f"head L{layer}H{head} scores {chosen:.2f} for {kind}: not the top, or below {threshold}")
    return f"L{layer}H{head} has the top {kind} score, {chosen:.2f} (next {runner_up:.2f}; a head counts as {kind} from {threshold})"


def head_atlas(rendered: Rendered) -> str:
    score = rendered.settings["options"]["score"]
    on_text, kinds = _kinds(rendered)
    values = score_values(score, on_text, kinds)
    kind = TYPE_SCORES[score]
    strong = np.argwhere(values >= heads.THRESHOLDS[kind])
    if not len(strong):
        raise rendered.fail(f"no head reaches the {kind} threshold {heads.THRESHOLDS[kind]}")
    layer, head = top_head(values)
    return (
        f"{len(strong)} of {values.size} heads score {heads.THRESHOLDS[kind]} or more for {kind}, in layers "
        f"{int(strong[:, 0].min())} to {int(strong[:, 0].max())}; the top is L{layer}H{head} ({values[layer, head]:.2f})"
    )


def offset_profile(rendered: Rendered) -> str:
    _, kinds = _kinds(rendered)
    layer, head = int(rendered.query["layer"]), int(rendered.query["head"])
    top = int(kinds.dominant_offset[layer, head])
    weight = float(kinds.profile[layer, head, list(kinds.offsets).index(top)])
    two_back = np.nanmax(kinds.score("previous-k"))
    if top != 1 or weight < heads.THRESHOLDS["previous-token"] or two_back >= heads.THRESHOLDS["previous-k"]:
        raise rendered.fail(
            f"L{layer}H{head} looks {top} back ({weight:.2f}); the most weight 2 to 8 back of any head is {two_back:.2f}"
        )
    return f"L{layer}H{head} puts {weight:.2f} on the previous token; no head puts more than {two_back:.2f} on one key 2 to 8 back"


def type_counts(rendered: Rendered) -> str:
    _, kinds = _kinds(rendered)
    several, total = int((kinds.count > 1).sum()), kinds.count.size
    induction, sink = (kinds.passed[kinds.types.index(kind)] for kind in ("induction", "sink"))
    reverse = float(np.nanmax(kinds.score("reverse induction")))
    if several < 5 or not induction.any() or (induction & ~sink).any():
        raise rendered.fail(
            f"{several} of {total} heads are mixed; {int((induction & ~sink).sum())} of {int(induction.sum())} "
            "induction heads are not sinks on the text"
        )
    if reverse >= heads.THRESHOLDS["reverse induction"]:
        raise rendered.fail(f"a head scores {reverse:.2f} for reverse induction")
    return (
        f"{several} of {total} heads pass two types or more; all {int(induction.sum())} induction heads are sinks on "
        f"the text; no reverse-induction head (top score {reverse:.2f})"
    )


CHECKS = {
    "specialised_head": specialised_head,
    "head_atlas": head_atlas,
    "offset_profile": offset_profile,
    "type_counts": type_counts,
}
