"""Checks of the massive-activations section: a run of layers with huge values, which the model needs; and dead
neurons where ReLU is real."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from results.activations import Ablation, ActivationResult, LayerActivations, Thresholds
from results.lens import LensResult
from results.relu_neurons import ReluNeurons
from runtime.untrained import base_name


def perplexities(done: Ablation) -> dict[str, float]:
    """The ablation chart's bars: perplexity unchanged, massive zeroed, set to the mean, random zeroed (mean)."""
    random = float(np.mean(np.exp(done.nll_random.mean(axis=1))))
    base, zeroed, mean = (float(np.exp(n.mean())) for n in (done.nll_base, done.nll_zeroed, done.nll_mean))
    return {"unchanged": base, "zeroed": zeroed, "mean": mean, "random": random}


SPIKE = 5  # times the next largest value: the surface's peak is a single spike


def surface(rendered: Rendered) -> str:
    result, values = rendered.result("activations", ActivationResult), rendered.result("layer", LayerActivations)
    magnitude = np.abs(values.values)
    position, dim = np.unravel_index(int(np.argmax(magnitude)), magnitude.shape)
    peak = float(magnitude[position, dim])
    if not np.isclose(peak, float(result.max_abs[values.layer]), rtol=1e-5):
        raise rendered.fail(f"the layer's largest |h| {peak} is not the probe's {result.max_abs[values.layer]}")
    ratio = peak / float(result.median_abs[values.layer])
    second = float(np.partition(magnitude.ravel(), -2)[-2])
    found = (
        f"layer {values.layer}: |h| = {peak:,.0f} in feature {dim} at token {position} ({values.tokens[position]!r}), "
        f"{ratio:,.0f}x the layer's median, {peak / second:.1f}x the next largest value"
    )
    if position != 0 or peak < SPIKE * second:  # the caption: a single spike, at the first token
        raise rendered.fail(found)
    return found


def lines(rendered: Rendered) -> str:
    result = rendered.result("activations", ActivationResult)
    massive = np.flatnonzero(Thresholds().passes(result.max_abs, result.median_abs))
    if not len(massive) or len(massive) != massive[-1] - massive[0] + 1:
        raise rendered.fail("the layers with an activation above 100 and 1,000x their median are not one run")
    peak = int(np.argmax(result.max_abs))
    return (
        f"top-1 |h| above 100 and 1,000x the median in {len(massive)} of {result.n_layers} layers ({massive[0]} to "
        f"{massive[-1]}); largest {result.max_abs[peak]:,.0f} at layer {peak}, median there {result.median_abs[peak]:.2f}"
    )


def ablation_bars(rendered: Rendered) -> str:
    done = rendered.result("ablation", Ablation)
    bars = perplexities(done)
    base = bars["unchanged"]
    if (
        not len(done.layers)
        or bars["zeroed"] < 2 * base
        or max(abs(bars[k] / base - 1) for k in ("mean", "random")) > 0.1
    ):
        shown = ", ".join(f"{name} {value:,.1f}" for name, value in bars.items())
        raise rendered.fail(f"perplexities ({shown}) do not show zeroing breaking the model and the other edits not")
    return (
        f"{len(done.layers)} entries edited: perplexity {base:.1f} unchanged, {bars['zeroed']:,.0f} zeroed, "
        f"{bars['mean']:.1f} at their mean, {bars['random']:.1f} with random entries zeroed"
    )


def every_decoder(rendered: Rendered) -> str:
    """Each trained model has massive activations (|h| >= 1,000, and >= 1,000x its layer's median in some layer);
    each untrained twin has none (|h| < 10)."""
    found = []
    for handle in (rendered.handle, *rendered.others):
        result = rendered.result(handle.name, ActivationResult)
        peak = int(np.argmax(result.max_abs))
        top, ratio = float(result.max_abs[peak]), float(np.max(result.max_abs / result.median_abs))
        if base_name(handle.name) is None and (top < 1000 or ratio < 1000):
            raise rendered.fail(f"{handle.name}'s largest |h| is {top:,.0f} (at most {ratio:,.0f}x a median)")
        if base_name(handle.name) is not None and top >= 10:
            raise rendered.fail(f"the untrained {handle.name} has |h| = {top:,.1f}")
        found.append(f"{handle.name}: largest |h| {top:,.0f} at layer {peak}, up to {ratio:,.0f}x its layer's median")
    return "; ".join(found)


def lens_forms_late(rendered: Rendered) -> str:
    """The embeddings' readout is mostly the input token; the next token's mean probability reaches half of its
    final value only past half of the blocks."""
    result = rendered.result("lens", LensResult)
    echo = float(np.mean(result.top_ids[0, :, 0] == result.token_ids))
    by_layer = result.next_prob.mean(axis=1)
    half = int(np.argmax(by_layer >= by_layer[-1] / 2)) - 1  # row 0 is the embeddings
    if echo < 0.5 or half < result.n_layers / 2:
        raise rendered.fail(
            f"the embeddings predict the input token at {echo:.0%} of positions, and the next token's probability "
            f"reaches half of its final {by_layer[-1]:.3f} at block {half} of {result.n_layers}"
        )
    return (
        f"embeddings predict the input token at {echo:.0%} of positions; the next token's mean probability reaches "
        f"half of its final {by_layer[-1]:.3f} at block {half} of {result.n_layers}"
    )


def relu_dead(rendered: Rendered) -> str:
    """Trained: at least 30% of the hidden activations exactly 0, and at least twice the dead neurons of the
    initialised network."""
    relu = rendered.result("relu", ReluNeurons)
    trained, initialised = relu.stages.index("trained"), relu.stages.index("initialised")
    zeros, dead, before = (
        relu.zero_share[trained].mean(),
        int(relu.dead[trained].sum()),
        int(relu.dead[initialised].sum()),
    )
    summary = f"trained: {zeros:.0%} of hidden activations are 0, {dead} dead neurons (initialised: {before})"
    if zeros < 0.3 or dead < 2 * max(before, 1):
        raise rendered.fail(summary)
    return summary


CHECKS = {
    "magnitude_surface": surface,
    "magnitude_lines": lines,
    "ablation_bars": ablation_bars,
    "massive_by_depth": every_decoder,
    "lens_by_layer": lens_forms_late,
    "relu_activity": relu_dead,
}
