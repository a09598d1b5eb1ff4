"""The checks that a rendered preset shows what its caption says, by lecture section: each recomputes the claim from
the probe results and returns it as one line, or raises CaptionMismatch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lecture.checks import (
    attention_sinks,
    long_context,
    low_rank,
    massive_activations,
    mixture_of_experts,
    model_weights,
    pruning,
    sparsity_and_low_rankness,
    specialised_heads,
)
from lecture.render import CaptionMismatch, Rendered

Check = Callable[[Rendered], str]

CHECKS: dict[str, Check] = {
    **sparsity_and_low_rankness.CHECKS,
    **model_weights.CHECKS,
    **pruning.CHECKS,
    **specialised_heads.CHECKS,
    **attention_sinks.CHECKS,
    **long_context.CHECKS,
    **massive_activations.CHECKS,
    **mixture_of_experts.CHECKS,
    **low_rank.CHECKS,
}


@dataclass(frozen=True)
class Verdict:
    """Whether the caption's claim holds on the rendered results (None: its figure has no check), and what was
    measured (or why it does not hold)."""

    ok: bool | None
    finding: str


def judge(rendered: Rendered) -> Verdict:
    """Recompute the claim of the preset's caption from its results."""
    found = CHECKS.get(rendered.preset.figure)
    if found is None:
        return Verdict(None, "this figure has no check")
    try:
        return Verdict(True, found(rendered))
    except CaptionMismatch as exc:
        return Verdict(False, exc.reason)


def caption(rendered: Rendered, verdict: Verdict) -> str:
    """The caption to print under the figure. On the model it was written for, the preset's own; on another model
    its numbers would be that model's, so the caption becomes what was measured here, or says plainly that it was
    written for another model."""
    preset = rendered.preset
    if rendered.own_model:
        return preset.caption
    written = f"The lecture's caption was written for {preset.model}"
    if verdict.ok is None:
        return f"{written}; it was not checked on {rendered.model}."
    if not verdict.ok:
        return f"{written} and does not hold on {rendered.model}: {verdict.finding}"
    return f"Measured on {rendered.model}: {verdict.finding}. ({written}.)"
