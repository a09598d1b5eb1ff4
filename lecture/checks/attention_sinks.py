"""Checks of the attention-sinks section: the first token takes the most attention from layer 2 on, leads with its
logit, brings less of the output than of the weight, and cannot be taken away without cost."""

from __future__ import annotations

import numpy as np

from lecture.render import Rendered
from probes import sinks
from results.attention import AttentionResult
from results.sinks import SINK_HEAD, CorpusAttention, FirstKeyMasked, SinkNorms
from runtime.untrained import base_name
from viz.compare import relative_depth


def column_means(values: np.ndarray) -> np.ndarray:
    """Per key column of an (n, n) average map: the mean over the queries q >= 1 that see it (NaN ignored)."""
    n = values.shape[0]
    return np.array([np.nanmean(values[max(k, 1) :, k]) for k in range(n)])


def sink_layers(maps: np.ndarray) -> np.ndarray:
    """Per layer of (layers, n, n) average maps: is the first token's column the largest of all columns?"""
    return np.array([int(np.argmax(column_means(m))) == 0 for m in maps])


# The layers from 2 on that the captions of sinks-average-logits and sinks-share-by-layer name as SmolLM2's exceptions
# (they look at nearby tokens): checked on the model the captions were written for.
LOCAL_LAYERS = [10, 11]


def corpus_maps(rendered: Rendered) -> str:
    value = rendered.result("corpus", CorpusAttention)
    logits = bool(rendered.settings["options"]["logits"])
    maps = value.layer_logits if logits else value.layer_probabilities
    sinking = sink_layers(maps)[2:]
    others = [i + 2 for i in np.flatnonzero(~sinking)]
    if sinking.mean() < 0.75:
        raise rendered.fail(f"the first token's column is the largest in only {sinking.sum()} of {len(sinking)} layers")
    if sink_layers(maps)[:2].any():
        raise rendered.fail("layer 0 or 1 already has the first token's column as its largest")
    if rendered.own_model and others != LOCAL_LAYERS:
        raise rendered.fail(f"from layer 2 on the first token's column is not the largest in layers {others}")
    what = "logit" if logits else "weight"
    return (
        f"{value.n_sentences} sentences of {value.n_tokens} tokens: the first token's mean {what} is the largest "
        f"column in {sinking.sum()} of the {len(sinking)} layers from layer 2 on"
        + (f" (not in {', '.join(map(str, others))})" if others else "")
    )


def sink_share(rendered: Rendered) -> str:
    profile = sinks.sink_profile(rendered.result("attention", AttentionResult))
    share = profile.layer_share[2:]
    low = [i + 2 for i in np.flatnonzero(share <= 2 * profile.uniform_share)]
    if len(low) > len(share) / 4:
        raise rendered.fail(
            f"{len(low)} of {len(share)} layers from layer 2 on put under twice the even share on token 0"
        )
    if rendered.own_model and low != LOCAL_LAYERS:
        raise rendered.fail(f"the layers from layer 2 on under twice the even share are {low}")
    return (
        f"from layer 2 on, {len(share) - len(low)} of {len(share)} layers put over twice the even share "
        f"({profile.uniform_share:.0%}) on token 0"
        + (f" (not {', '.join(map(str, low))})" if low else "")
        + f"; median {np.median(share):.0%}"
    )


def every_decoder(rendered: Rendered) -> str:
    """Past the first third of its depth, each trained model puts at least 35% and 3x the even share of its
    attention on token 0; each untrained twin at most 1.5x the even share."""
    found = []
    for handle in (rendered.handle, *rendered.others):
        profile = sinks.sink_profile(rendered.result(handle.name, AttentionResult))
        deep = profile.layer_share[relative_depth(len(profile.layer_share)) >= 1 / 3]
        share, even = float(deep.mean()), profile.uniform_share
        if base_name(handle.name) is None and (share < 0.35 or share < 3 * even):
            raise rendered.fail(
                f"{handle.name} puts {share:.0%} on token 0 past a third of its depth (even: {even:.0%})"
            )
        if base_name(handle.name) is not None and share > 1.5 * even:
            raise rendered.fail(f"the untrained {handle.name} puts {share:.0%} on token 0 (even: {even:.0%})")
        found.append(f"{handle.name}: {share:.0%} on token 0 past a third of its depth ({share / even:.1f}x even)")
    return "; ".join(found)


def mechanism(rendered: Rendered) -> str:
    """Every head with a sink share of at least 70% leads with token 0's logit by more than a nat (mean lead), the
    heads under 20% trail (median lead < 0), and the share rises with the lead (rank correlation at least 0.8)."""
    exact = rendered.result("attention", AttentionResult)
    lead, share = sinks.logit_lead(exact).ravel(), exact.sink_share.ravel()
    sinking, spread = share >= 0.7, share < 0.2
    ranks = np.corrcoef(np.argsort(np.argsort(lead)), np.argsort(np.argsort(share)))[0, 1]
    least = lead[sinking].min() if sinking.any() else np.nan
    trailing = np.median(lead[spread]) if spread.any() else np.nan
    if not least > 1 or not trailing < 0 or ranks < 0.8:
        raise rendered.fail(
            f"{sinking.sum()} heads at 70% or more (least lead {least:.2f}), {spread.sum()} under 20% (median lead "
            f"{trailing:.2f}); rank correlation {ranks:.2f}"
        )
    return (
        f"{sinking.sum()} of {share.size} heads put 70% or more on token 0, each leading by more than a nat (least "
        f"{least:.1f}, median {np.median(lead[sinking]):.1f}); the {spread.sum()} under 20% trail (median "
        f"{trailing:.1f}); rank correlation of lead and share {ranks:.2f}"
    )


def value_norms(rendered: Rendered) -> str:
    """At least nine heads in ten, and every sink head, below the diagonal; the sink heads' mean norm share at least
    0.15 below their mean weight share; the first token's values at most a quarter as long as the others'."""
    norms = rendered.result("norms", SinkNorms)
    strong, below = norms.attention_share >= SINK_HEAD, norms.norm_share < norms.attention_share
    weight, norm = norms.attention_share[strong].mean(), norms.norm_share[strong].mean()
    ratio = float(np.median((norms.first_value_norm / norms.other_value_norm)[strong]))
    if below.mean() < 0.9 or not below[strong].all() or norm > weight - 0.15 or ratio > 0.25:
        raise rendered.fail(
            f"{below.mean():.0%} of heads below the diagonal; sink heads: weight {weight:.0%}, norms {norm:.0%}, "
            f"value ratio {ratio:.2f}"
        )
    return (
        f"{below.mean():.0%} of heads below the diagonal, all {int(strong.sum())} sink heads: weight {weight:.0%}, "
        f"norms {norm:.0%}; the first token's values {ratio:.2f} of the others' (median)"
    )


def first_key_masked(rendered: Rendered) -> str:
    """Masking the first key costs at least a nat, as does the window alone; the window with sinks under 0.5."""
    masked = rendered.result("masked", FirstKeyMasked)
    cost = {name: loss - masked.full for name, loss in masked.losses.items()}
    named = ", ".join(f"{name} {loss:.2f}" for name, loss in masked.losses.items())
    if (
        masked.masked - masked.full < 1.0
        or masked.window_alone - masked.full < 1.0
        or masked.window_sinks - masked.full > 0.5
    ):
        raise rendered.fail(f"losses: {named}")
    return f"losses: {named} (costs {', '.join(f'{v:+.2f}' for v in cost.values())})"


CHECKS = {
    "corpus_average_maps": corpus_maps,
    "sink_share": sink_share,
    "sink_mechanism": mechanism,
    "sink_norms": value_norms,
    "first_key_masked": first_key_masked,
    "sinks_by_depth": every_decoder,
}
