"""Checks of the pruning section: quantization keeps the loss where pruning at the same bytes does not."""

from __future__ import annotations

from lecture.render import Rendered
from results.compress import Tradeoff


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


CHECKS = {
    "compress_tradeoff": tradeoff,
}
