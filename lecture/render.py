"""Render a lecture preset headless: load its model once per process, run its probes through the disk cache,
and draw its figure with the same viz builder the dashboard page uses.

Each view (a preset's `view`) is a pair of functions in VIEWS: `draw` runs the probes and builds the figure;
`check` recomputes, from the probe results, the fact the caption promises and returns it as one line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import plotly.graph_objects as go

from lecture.presets import Preset
from probes import (
    ablation,
    activations,
    attention,
    compress,
    corpus,
    distribution,
    heads,
    moefication,
    routing,
    sinks,
    spectra,
    structured,
)
from probes.activations import Thresholds
from probes.attention import AttentionResult
from probes.batches import Progress
from probes.cache import Cached, ResultCache, cache_key
from probes.errors import LmscopeError
from probes.handle import ModelHandle
from probes.models import load
from viz.activations import ablation_chart, magnitude_lines, magnitude_surface
from viz.attention import attention_heatmap, head_grid
from viz.compress import rank_loss_figure, tradeoff_figure
from viz.distribution import distribution_figure
from viz.routing import load_figure, loss_by_k_figure, routing_heatmap
from viz.sinks import corpus_maps, sink_share_by_layer
from viz.spectra import alpha_by_layer, energy_figure, esd_figure
from viz.structured import loss_by_window, mask_panel

T = TypeVar("T")
# Bump when a result this module caches itself (the weight distribution) changes.
VERSION = 1
WEIGHT_DISTRIBUTION = "lecture-weight-distribution"


class CaptionMismatch(LmscopeError):
    """A rendered figure does not show what its preset's caption says."""


@dataclass
class Rendered:
    """A preset's figure, with everything needed to regenerate it and say where it came from."""

    preset: Preset
    figure: go.Figure
    model: str
    fingerprint: str
    settings: dict  # preset name and version, view, model, text, options as used, probe versions
    seconds: float  # running the probes (or reading them from the cache) and drawing; the model load excluded
    cached: bool  # every probe result came from the disk cache
    query: dict[str, str] = field(default_factory=dict)  # preset.query, with the model and what the render picked
    results: dict[str, object] = field(default_factory=dict)  # the probe results drawn, by name (what check reads)


# ---- models: one handle per name and process --------------------------------------------------------------

_models: dict[str, ModelHandle] = {}
_models_lock = threading.Lock()


def loaded(name: str) -> ModelHandle:
    """The model, loaded once per process, so that exporting many presets loads each model once."""
    with _models_lock:
        if name not in _models:
            _models[name] = load(name)
        return _models[name]


def share(handle: ModelHandle) -> None:
    """Let presets reuse a model loaded elsewhere (a test session's fixture, the dashboard's resource cache)."""
    with _models_lock:
        _models.setdefault(handle.name, handle)


# ---- one render -------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What a view's draw function works with, and what it reports back: the results, their cache hits, and
    the choices the render made (options as used, heads and layers picked from measurements)."""

    handle: ModelHandle
    preset: Preset
    cache: ResultCache
    on_progress: Progress | None
    hits: list[bool] = field(default_factory=list)
    results: dict[str, object] = field(default_factory=dict)
    used: dict[str, object] = field(default_factory=dict)
    picked: dict[str, object] = field(default_factory=dict)

    def option(self, key: str) -> object:
        """An option of the preset; a clear error when the data file lacks it."""
        if key not in self.preset.options:
            raise LmscopeError(f"Preset '{self.preset.name}' needs the option '{key}' (view {self.preset.view}).")
        value = self.preset.options[key]
        self.used.setdefault(key, value)
        return value

    def use(self, key: str, value: object) -> None:
        """Record the value an option actually took (a default, or one adapted to the model)."""
        self.used[key] = value

    def pick(self, **values: int) -> None:
        """Record what the render chose from measurements; they go into the page's URL too."""
        self.picked.update(values)

    @property
    def text(self) -> str:
        if self.preset.text is None:
            raise LmscopeError(f"Preset '{self.preset.name}' needs a text (view {self.preset.view}).")
        return self.preset.text

    def keep(self, name: str, cached: Cached[T]) -> T:
        """A probe result, kept for the check and counted for `cached`."""
        self.hits.append(cached.hit)
        self.results[name] = cached.value
        return cached.value


@dataclass(frozen=True)
class View:
    """How one kind of preset is drawn and checked, and which probes (with their versions) it runs."""

    draw: Callable[[_Run], go.Figure]
    check: Callable[[Rendered], str]
    probes: tuple = ()


def _argmax(values: np.ndarray) -> tuple[int, int]:
    layer, head = np.unravel_index(int(np.nanargmax(values)), values.shape)
    return int(layer), int(head)


def _layers(wanted: Sequence[int], n_layers: int) -> list[int]:
    """The preset's layers, or the sinks page's defaults on a model that lacks some of them."""
    chosen = sorted({int(i) for i in wanted})
    return chosen if chosen and all(0 <= i < n_layers for i in chosen) else sinks.default_layers(n_layers)


def _handle(rendered: Rendered) -> ModelHandle:
    """The loaded model a preset was rendered on."""
    return loaded(rendered.model)


def _fail(rendered: Rendered, message: str) -> CaptionMismatch:
    return CaptionMismatch(f"Preset '{rendered.preset.name}' on {rendered.model}: {message}")


# ---- attention sinks --------------------------------------------------------------------------------------


def _draw_corpus_maps(run: _Run) -> go.Figure:
    layers = _layers(run.option("layers"), run.handle.n_layers)
    run.use("layers", layers)
    value = run.keep(
        "corpus",
        sinks.corpus_attention(
            run.handle,
            corpus.sentences(),
            run.cache,
            n_tokens=int(run.option("tokens")),
            limit=int(run.option("sentences")),
            on_progress=run.on_progress,
        ),
    )
    run.pick(layers=",".join(map(str, layers)))
    return corpus_maps(value, layers, logits=bool(run.option("logits")))


def column_means(values: np.ndarray) -> np.ndarray:
    """Per key column of an (n, n) average map: the mean over the queries q >= 1 that see it (NaN ignored)."""
    n = values.shape[0]
    return np.array([np.nanmean(values[max(k, 1) :, k]) for k in range(n)])


def sink_layers(maps: np.ndarray) -> np.ndarray:
    """Per layer of (layers, n, n) average maps: is the first token's column the largest of all columns?"""
    return np.array([int(np.argmax(column_means(m))) == 0 for m in maps])


def _check_corpus_maps(rendered: Rendered) -> str:
    value = rendered.results["corpus"]
    logits = bool(rendered.settings["options"]["logits"])
    maps = value.layer_logits if logits else value.layer_probabilities
    sinking = sink_layers(maps)[2:]
    others = [i + 2 for i in np.flatnonzero(~sinking)]
    if sinking.mean() < 0.75:
        raise _fail(
            rendered, f"the first token's column is the largest in only {sinking.sum()} of {len(sinking)} layers"
        )
    what = "logit" if logits else "weight"
    return (
        f"{value.n_sentences} sentences of {value.n_tokens} tokens: the first token's mean {what} is the largest "
        f"column in {sinking.sum()} of the {len(sinking)} layers from layer 2 on"
        + (f" (not in {', '.join(map(str, others))})" if others else "")
    )


def _draw_sink_share(run: _Run) -> go.Figure:
    result = run.keep("attention", attention.run(run.handle, run.text, run.cache))
    k = int(run.option("k"))
    return sink_share_by_layer(sinks.sink_profile(result), sinks.first_k_share(result, k), k)


def _check_sink_share(rendered: Rendered) -> str:
    profile = sinks.sink_profile(rendered.results["attention"])
    share = profile.layer_share[2:]
    low = [i + 2 for i in np.flatnonzero(share <= 2 * profile.uniform_share)]
    if len(low) > len(share) / 4:
        raise _fail(
            rendered, f"{len(low)} of {len(share)} layers from layer 2 on put under twice the even share on token 0"
        )
    return (
        f"from layer 2 on, {len(share) - len(low)} of {len(share)} layers put over twice the even share "
        f"({profile.uniform_share:.0%}) on token 0"
        + (f" (not {', '.join(map(str, low))})" if low else "")
        + f"; median {np.median(share):.0%}"
    )


# ---- specialised heads ------------------------------------------------------------------------------------

# The atlas page's scores (its `score` URL values), where each is measured, and the head-type threshold.
HEAD_SCORES = {
    "induction": ("induction", "Induction score: weight on the token after the earlier occurrence"),
    "previous_token_random": ("previous-token", "Previous-token score: weight on token q-1 (random tokens)"),
    "delimiter_share": ("delimiter", "Delimiter score: weight on punctuation and newlines (your text)"),
}


def _head_results(run: _Run) -> tuple[AttentionResult | None, AttentionResult]:
    """Attention on the preset's text (if it has one) and on the repeated random tokens."""
    seq_len, seed = int(run.option("seq_len")), int(run.option("seed"))
    on_random = run.keep("random", heads.run(run.handle, run.cache, seq_len, seed))
    on_text = run.keep("text", attention.run(run.handle, run.text, run.cache)) if run.preset.text else None
    return on_text, on_random


def head_scores(score: str, on_text: AttentionResult | None, on_random: AttentionResult) -> np.ndarray:
    """Layers x heads values of one of the atlas page's scores."""
    if score == "induction":
        return on_random.scores["induction"]
    if score == "previous_token_random":
        return on_random.previous_token
    if score == "delimiter_share" and on_text is not None:
        return on_text.delimiter_share
    raise LmscopeError(f"Unknown head score '{score}' (or it needs a text): choose one of {', '.join(HEAD_SCORES)}.")


def _draw_specialised_head(run: _Run) -> go.Figure:
    on_text, on_random = _head_results(run)
    layer, head = _argmax(head_scores(str(run.option("score")), on_text, on_random))
    run.pick(layer=layer, head=head)
    shown = on_random if run.option("on") == "random" else on_text
    if shown is None:
        raise LmscopeError(f"Preset '{run.preset.name}' draws its head on a text but has none.")
    return attention_heatmap(shown, layer, head)


def _check_specialised_head(rendered: Rendered) -> str:
    score = rendered.settings["options"]["score"]
    values = head_scores(score, rendered.results.get("text"), rendered.results["random"])
    layer, head = rendered.query["layer"], rendered.query["head"]
    chosen = float(values[int(layer), int(head)])
    kind, _ = HEAD_SCORES[score]
    threshold = heads.THRESHOLDS[kind]
    runner_up = float(np.sort(values, axis=None)[-2])
    if chosen < float(np.nanmax(values)) or chosen < threshold:
        raise _fail(rendered, f"head L{layer}H{head} scores {chosen:.2f} for {kind}: not the top, or below {threshold}")
    return (
        f"L{layer}H{head} has the top {kind} score, {chosen:.2f} (next {runner_up:.2f}; a {kind} head from {threshold})"
    )


def _draw_head_atlas(run: _Run) -> go.Figure:
    on_text, on_random = _head_results(run)
    score = str(run.option("score"))
    if on_text is None:
        raise LmscopeError(f"Preset '{run.preset.name}' needs a text: the head types use the text's sink scores.")
    types = heads.head_types(on_text, on_random)
    return head_grid(head_scores(score, on_text, on_random), HEAD_SCORES[score][1], score.replace("_", " "), 1.0, types)


def _check_head_atlas(rendered: Rendered) -> str:
    score = rendered.settings["options"]["score"]
    values = head_scores(score, rendered.results["text"], rendered.results["random"])
    kind, _ = HEAD_SCORES[score]
    strong = np.argwhere(values >= heads.THRESHOLDS[kind])
    if not len(strong):
        raise _fail(rendered, f"no head reaches the {kind} threshold {heads.THRESHOLDS[kind]}")
    layer, head = _argmax(values)
    return (
        f"{len(strong)} of {values.size} heads score {heads.THRESHOLDS[kind]} or more for {kind}, in layers "
        f"{int(strong[:, 0].min())} to {int(strong[:, 0].max())}; the top is L{layer}H{head} ({values[layer, head]:.2f})"
    )


# ---- structured attention ---------------------------------------------------------------------------------


def _draw_mask_panel(run: _Run) -> go.Figure:
    result = run.keep("attention", attention.run(run.handle, run.text, run.cache))
    pick = str(run.option("pick"))
    if pick not in attention.SUMMARIES:
        raise LmscopeError(f"pick must be one of {', '.join(attention.SUMMARIES)}; got '{pick}'.")
    layer, head = _argmax(getattr(result, pick))
    run.pick(layer=layer, head=head)
    view = run.keep(
        "masks",
        structured.mask_view(
            run.handle,
            run.text,
            int(run.option("window")),
            int(run.option("dilation")),
            [int(p) for p in run.option("global")],
            int(run.option("sinks")),
            run.cache,
        ),
    )
    return mask_panel(result, view, layer, head)


def _check_mask_panel(rendered: Rendered) -> str:
    view = rendered.results["masks"]
    layer, head = int(rendered.query["layer"]), int(rendered.query["head"])
    kept = dict(zip(view.titles, view.kept[:, layer, head].tolist()))
    full, sliding, dilated, global_sliding = kept.values()
    if abs(full - 1) > 1e-3 or not global_sliding > max(sliding, dilated):
        raise _fail(rendered, f"kept shares {kept} do not put global + sliding above the plain windows")
    return (
        f"L{layer}H{head} (sink share {rendered.results['attention'].sink_share[layer, head]:.0%}): sliding keeps "
        f"{sliding:.0%}, dilated {dilated:.0%}, global + sliding {global_sliding:.0%} of its weight"
    )


def _draw_window_loss(run: _Run) -> go.Figure:
    sweep = run.keep(
        "sweep",
        structured.window_sweep(
            run.handle,
            run.text,
            [int(w) for w in run.option("windows")],
            int(run.option("sinks")),
            run.cache,
            run.on_progress,
        ),
    )
    return loss_by_window(sweep, str(run.option("metric")))


def _check_window_loss(rendered: Rendered) -> str:
    sweep = rendered.results["sweep"]
    window, with_sinks = sweep.mean_window, sweep.mean_sinks
    if sweep.sinks and not np.all(with_sinks <= window + 1e-6):
        raise _fail(rendered, "keeping the sink tokens made the loss worse at some window")
    if not window[0] > window[-1] > sweep.mean_full - 0.05:
        raise _fail(rendered, "the loss does not fall towards full attention as the window grows")
    smallest = int(sweep.windows[0])
    recovered = (window[0] - with_sinks[0]) / (window[0] - sweep.mean_full)
    if sweep.sinks and recovered < 0.5:
        raise _fail(rendered, f"the sink tokens recover only {recovered:.0%} of the smallest window's extra loss")
    return (
        f"w = {smallest}: {window[0]:.2f} nats, {with_sinks[0]:.2f} with {sweep.sinks} sinks ({recovered:.0%} of the "
        f"gap recovered); w = {int(sweep.windows[-1])}: {window[-1]:.2f}; full attention {sweep.mean_full:.2f}"
    )


# ---- massive activations ----------------------------------------------------------------------------------


def _draw_surface(run: _Run) -> go.Figure:
    result = run.keep("activations", activations.run(run.handle, run.text, run.cache))
    option = run.option("layer")
    layer = int(np.argmax(result.max_abs)) if option == "peak" else int(option)
    result.check_layer(layer)
    run.pick(layer=layer)
    return magnitude_surface(run.keep("layer", activations.layer_run(run.handle, run.text, layer, run.cache)))


def _check_surface(rendered: Rendered) -> str:
    result, values = rendered.results["activations"], rendered.results["layer"]
    magnitude = np.abs(values.values)
    position, dim = np.unravel_index(int(np.argmax(magnitude)), magnitude.shape)
    peak = float(magnitude[position, dim])
    if not np.isclose(peak, float(result.max_abs[values.layer]), rtol=1e-5):
        raise _fail(rendered, f"the layer's largest |h| {peak} is not the probe's {result.max_abs[values.layer]}")
    ratio = peak / float(result.median_abs[values.layer])
    return (
        f"layer {values.layer}: |h| = {peak:,.0f} in feature {dim} at token {position} ({values.tokens[position]!r}), "
        f"{ratio:,.0f}x the layer's median"
    )


def _draw_lines(run: _Run) -> go.Figure:
    return magnitude_lines(run.keep("activations", activations.run(run.handle, run.text, run.cache)))


def _check_lines(rendered: Rendered) -> str:
    result = rendered.results["activations"]
    massive = np.flatnonzero(Thresholds().passes(result.max_abs, result.median_abs))
    if not len(massive) or len(massive) != massive[-1] - massive[0] + 1:
        raise _fail(rendered, "the layers with an activation above 100 and 1,000x their median are not one run")
    peak = int(np.argmax(result.max_abs))
    return (
        f"top-1 |h| above 100 and 1,000x the median in {len(massive)} of {result.n_layers} layers ({massive[0]} to "
        f"{massive[-1]}); largest {result.max_abs[peak]:,.0f} at layer {peak}, median there {result.median_abs[peak]:.2f}"
    )


def _draw_ablation(run: _Run) -> go.Figure:
    thresholds = Thresholds(float(run.option("min")), float(run.option("ratio")))
    done = ablation.run(
        run.handle,
        run.text,
        thresholds,
        run.cache,
        corpus.sentences()[: int(run.option("sentences"))],
        bool(run.option("everywhere")),
        run.on_progress,
    )
    return ablation_chart(run.keep("ablation", done))


def perplexities(done: ablation.Ablation) -> dict[str, float]:
    """The ablation chart's bars: perplexity unchanged, massive zeroed, set to the mean, random zeroed (mean)."""
    random = float(np.mean(np.exp(done.nll_random.mean(axis=1))))
    base, zeroed, mean = (float(np.exp(n.mean())) for n in (done.nll_base, done.nll_zeroed, done.nll_mean))
    return {"unchanged": base, "zeroed": zeroed, "mean": mean, "random": random}


def _check_ablation(rendered: Rendered) -> str:
    done = rendered.results["ablation"]
    bars = perplexities(done)
    base = bars["unchanged"]
    if (
        not len(done.layers)
        or bars["zeroed"] < 2 * base
        or max(abs(bars[k] / base - 1) for k in ("mean", "random")) > 0.1
    ):
        raise _fail(rendered, f"perplexities {bars} do not show zeroing breaking the model and the others not")
    return (
        f"{len(done.layers)} entries edited: perplexity {base:.1f} unchanged, {bars['zeroed']:,.0f} zeroed, "
        f"{bars['mean']:.1f} at their mean, {bars['random']:.1f} with random entries zeroed"
    )


# ---- distributions and spectra ----------------------------------------------------------------------------


def _draw_weight_histogram(run: _Run) -> go.Figure:
    name = str(run.option("matrix"))
    key = cache_key(run.handle.fingerprint, WEIGHT_DISTRIBUTION, VERSION, {"matrix": name})
    found = run.cache.fetch(key, lambda: distribution.describe(spectra.weight_matrix(run.handle, name)))
    return distribution_figure(run.keep("distribution", found), f"Entries of {name}", "weight")


def _draw_activation_histogram(run: _Run) -> go.Figure:
    layer = int(run.option("layer"))
    values = run.keep("layer", activations.layer_run(run.handle, run.text, layer, run.cache))
    spread = distribution.describe(values.values)
    run.results["distribution"] = spread
    run.pick(layer=layer)
    title = f"Output of block {layer}: {len(values.tokens)} tokens x {values.values.shape[1]} features"
    return distribution_figure(spread, title, "value")


def _check_weight_histogram(rendered: Rendered) -> str:
    dist = rendered.results["distribution"]
    inside = 1 - (dist.below + dist.above) / dist.n
    area = float(np.sum(dist.density * np.diff(dist.edges)))
    heavier = 0.0027 < dist.beyond_3_std < 0.02  # a Gaussian has 0.27% beyond 3 std
    if abs(area - inside) > 1e-6 or abs(dist.excess_kurtosis) > 10 or not heavier or dist.beyond_6_std > 1e-3:
        raise _fail(
            rendered, f"kurtosis {dist.excess_kurtosis:.2f}, beyond 6 std {dist.beyond_6_std:.2%}: not near-Gaussian"
        )
    return (
        f"{dist.n:,} weights: excess kurtosis {dist.excess_kurtosis:.2f}, {dist.beyond_3_std:.2%} beyond 3 std "
        f"(Gaussian 0.27%), {dist.beyond_6_std:.4%} beyond 6"
    )


def _check_activation_histogram(rendered: Rendered) -> str:
    dist = rendered.results["distribution"]
    outliers = np.abs(np.array([dist.minimum, dist.maximum]) - dist.center) / dist.scale
    if dist.beyond_6_std == 0 or outliers.max() < 20:
        raise _fail(rendered, "no value lies far outside the Gaussian bulk")
    return (
        f"{dist.n:,} values: {dist.beyond_6_std:.3%} beyond 6 std (a Gaussian: 2e-7 %), the largest "
        f"{outliers.max():,.0f} robust sigmas out; excess kurtosis {dist.excess_kurtosis:,.0f}"
    )


def _model_spectra(run: _Run) -> spectra.ModelSpectra:
    return run.keep("spectra", spectra.run(run.handle, run.cache, run.on_progress))


def _draw_esd(run: _Run) -> go.Figure:
    chosen = _model_spectra(run).get(str(run.option("matrix")))
    return esd_figure(chosen, *spectra.marchenko_pastur(chosen.shape, chosen.std**2))


def _check_esd(rendered: Rendered) -> str:
    chosen = rendered.results["spectra"].get(rendered.settings["options"]["matrix"])
    mp_x, mp_density = spectra.marchenko_pastur(chosen.shape, chosen.std**2)
    edge = float(mp_x[mp_density > 0].max())
    largest = float(chosen.eigenvalues.max())
    if not np.isfinite(chosen.alpha) or largest <= edge:
        raise _fail(rendered, "the spectrum has no fitted tail beyond the Marchenko-Pastur bulk")
    return (
        f"{chosen.name}: alpha {chosen.alpha:.2f} over the top {chosen.n_tail} eigenvalues (D = {chosen.ks_distance:.3f}); "
        f"the largest eigenvalue is {largest / edge:.1f}x the bulk's edge"
    )


def _draw_alpha(run: _Run) -> go.Figure:
    return alpha_by_layer(_model_spectra(run))


def share_above(matrices: Sequence[spectra.MatrixSpectrum], alpha: float = 6.0) -> dict[str, float]:
    """For each kind of block matrix (q, k, v, ...), the share of its layers whose alpha is above `alpha`."""
    kinds = dict.fromkeys(m.kind for m in matrices if m.layer >= 0)
    return {k: float(np.mean([m.alpha > alpha for m in matrices if m.kind == k and m.layer >= 0])) for k in kinds}


def _check_alpha(rendered: Rendered) -> str:
    matrices = rendered.results["spectra"].matrices
    alphas = np.array([m.alpha for m in matrices if m.layer >= 0])
    good = float(np.mean((alphas >= 2) & (alphas <= 6)))
    above = {kind: share for kind, share in share_above(matrices).items() if share > 2 / 3}
    if good <= 0.5:
        raise _fail(rendered, f"only {good:.0%} of the matrices have alpha from 2 to 6")
    return f"{good:.0%} of {len(alphas)} block matrices have alpha from 2 to 6; above 6 in most layers: " + (
        ", ".join(f"{kind} ({share:.0%})" for kind, share in above.items()) or "no kind"
    )


def _draw_energy(run: _Run) -> go.Figure:
    return energy_figure(_model_spectra(run))


def energy_at(singular_values: np.ndarray, share: float) -> float:
    """The share of Σσ² in the top `share` of the singular values."""
    energy = np.cumsum(np.asarray(singular_values, dtype=np.float64) ** 2)
    return float(energy[max(1, int(np.ceil(share * len(energy)))) - 1] / energy[-1])


def _check_energy(rendered: Rendered) -> str:
    held = [energy_at(m.singular_values, 0.1) for m in rendered.results["spectra"].matrices if m.layer >= 0]
    if not min(held) > 0.1:
        raise _fail(rendered, "some matrix has a flat spectrum: its top 10% hold no more than 10% of the energy")
    return f"the top 10% of the rank hold {min(held):.0%} to {max(held):.0%} of Σσ² (median {np.median(held):.0%}; flat: 10%)"


# ---- compression --------------------------------------------------------------------------------------------


def _draw_tradeoff(run: _Run) -> go.Figure:
    done = compress.tradeoff(
        run.handle,
        run.text,
        corpus.sentences()[: int(run.option("sentences"))],
        [s / 100 for s in run.option("sparsities")],
        [int(b) for b in run.option("bits")],
        run.cache,
        on_progress=run.on_progress,
    )
    return tradeoff_figure(run.keep("tradeoff", done))


def _check_tradeoff(rendered: Rendered) -> str:
    done = rendered.results["tradeoff"]
    pruned = {p.label: p for p in done.points if p.method.startswith("prune")}
    quantized = [p for p in done.points if p.method == "quantize"]
    half = pruned.get("50% pruned") or pruned["2:4"]
    cheaper = [p for p in quantized if p.bytes_per_weight <= half.bytes_per_weight]
    best = min(cheaper, key=lambda p: p.nll_text) if cheaper else None
    if best is None or not best.nll_text < half.nll_text or abs(best.nll_text - done.base_nll_text) > 0.05:
        raise _fail(rendered, "no quantization at the bytes of 50% pruning keeps the full model's loss and beats it")
    return (
        f"{best.label}: {best.bytes_per_weight:.2f} bytes per weight, NLL {best.nll_text:.2f}; {half.label}: "
        f"{half.bytes_per_weight:.2f}, NLL {half.nll_text:.2f}; unchanged (2 bytes): {done.base_nll_text:.2f}"
    )


def _draw_rank_loss(run: _Run) -> go.Figure:
    ranks = [int(r) for r in run.option("ranks")]
    return rank_loss_figure(
        run.keep("sweep", compress.rank_sweep(run.handle, run.text, ranks, run.cache, on_progress=run.on_progress))
    )


def _check_rank_loss(rendered: Rendered) -> str:
    sweep = rendered.results["sweep"]
    full = max(int(r) for r in sweep.ranks)
    at_full = float(sweep.nll[np.argmax(sweep.ranks)])
    below = sweep.nll[sweep.ranks < compress.full_rank(_handle(rendered))]
    if not np.all(below > sweep.base_nll + 0.5):
        raise _fail(rendered, "some rank below full keeps the full model's loss (within half a nat)")
    return f"rank {int(sweep.ranks[0])}: NLL {sweep.nll[0]:.2f}; rank {full}: {at_full:.2f}; full model {sweep.base_nll:.2f}"


# ---- mixture of experts -----------------------------------------------------------------------------------


def _setting(run: _Run) -> moefication.Setting | None:
    """The derived MoE's routing setting from the options (a real MoE routes by itself)."""
    if run.handle.name != moefication.DERIVED_NAME:
        return None
    return moefication.Setting(int(run.option("experts")), int(run.option("k")), str(run.option("router")))


def _routing_layer(run: _Run) -> routing.LayerRouting:
    result = run.keep("routing", routing.run(run.handle, run.text, run.cache, _setting(run)))
    index = int(run.option("layer"))
    return result.layer(index)


def _draw_moe_routing(run: _Run) -> go.Figure:
    layer = _routing_layer(run)
    return routing_heatmap(layer, run.results["routing"].tokens, run.results["routing"].model)


def _check_moe_routing(rendered: Rendered) -> str:
    layer = rendered.results["routing"].layer(int(rendered.settings["options"]["layer"]))
    distinct = all(len(set(row)) == layer.top_k for row in layer.experts.tolist())
    top = np.argmax(layer.logits, axis=1)
    if not distinct or not np.array_equal(top, layer.experts[:, 0]):
        raise _fail(rendered, "the ringed experts are not each token's top-k distinct experts")
    favourites = np.argsort(np.bincount(top, minlength=layer.n_experts))[::-1][:3]
    taken = int(np.isin(top, favourites).sum())
    others = {int(e) for e in layer.experts[:, 1:].ravel()}
    if taken <= len(top) / 2 or len(others) < 2 * layer.top_k:
        raise _fail(rendered, "three experts do not get most first choices, or the other picks hardly change")
    return (
        f"{layer.label}: experts {', '.join(map(str, sorted(favourites.tolist())))} are the first choice of {taken} of "
        f"{len(top)} tokens; the other picks use {len(others)} of the {layer.n_experts} experts"
    )


def _draw_moe_load(run: _Run) -> go.Figure:
    layer = _routing_layer(run)
    return load_figure(layer, routing.balance(layer), run.results["routing"].model)


def _check_moe_load(rendered: Rendered) -> str:
    layer = rendered.results["routing"].layer(int(rendered.settings["options"]["layer"]))
    balance = routing.balance(layer)
    counts = np.bincount(layer.experts.ravel(), minlength=layer.n_experts)
    if not np.allclose(balance.load, counts / counts.sum()):
        raise _fail(rendered, "the bars are not the shares of routed slots")
    return (
        f"{layer.label}: busiest expert {balance.load.max():.0%} of slots, quietest {balance.load.min():.0%} "
        f"(even: {1 / layer.n_experts:.0%}); CV {balance.cv:.2f}, load entropy {balance.entropy:.2f} of 1"
    )


def _draw_moe_loss(run: _Run) -> go.Figure:
    return loss_by_k_figure(run.keep("loss", moefication.loss_by_k(run.handle, run.text, run.cache)))


def _check_moe_loss(rendered: Rendered) -> str:
    loss = rendered.results["loss"]
    at_e = {(router, e): float(values[-1]) for router, by_e in loss.nll.items() for e, values in by_e.items()}
    if any(value != loss.dense_nll for value in at_e.values()):
        raise _fail(rendered, f"k = E differs from the dense model ({loss.dense_nll}): {at_e}")
    if any(np.any(loss.nll["oracle"][e] > loss.nll["fitted"][e] + 1e-9) for e in loss.nll["oracle"]):
        raise _fail(rendered, "the oracle router loses more than the fitted one somewhere")
    quarter = {router: float(by_e[16][list(loss.ks[16]).index(4)]) for router, by_e in loss.nll.items()}
    return (
        f"k = E equals the dense model ({loss.dense_nll:.3f} nats) for every E and router; at E = 16, k = 4: "
        + ", ".join(f"{router} {value:.2f}" for router, value in quarter.items())
    )


VIEWS: dict[str, View] = {
    "corpus_average_maps": View(_draw_corpus_maps, _check_corpus_maps, (sinks,)),
    "sink_share": View(_draw_sink_share, _check_sink_share, (attention, sinks)),
    "specialised_head": View(_draw_specialised_head, _check_specialised_head, (attention, heads)),
    "head_atlas": View(_draw_head_atlas, _check_head_atlas, (attention, heads)),
    "mask_panel": View(_draw_mask_panel, _check_mask_panel, (attention, structured)),
    "window_loss": View(_draw_window_loss, _check_window_loss, (structured,)),
    "magnitude_surface": View(_draw_surface, _check_surface, (activations,)),
    "magnitude_lines": View(_draw_lines, _check_lines, (activations,)),
    "ablation_bars": View(_draw_ablation, _check_ablation, (activations, ablation)),
    "weight_histogram": View(_draw_weight_histogram, _check_weight_histogram, (spectra,)),
    "activation_histogram": View(_draw_activation_histogram, _check_activation_histogram, (activations,)),
    "esd": View(_draw_esd, _check_esd, (spectra,)),
    "alpha_by_layer": View(_draw_alpha, _check_alpha, (spectra,)),
    "rank_energy": View(_draw_energy, _check_energy, (spectra,)),
    "compress_tradeoff": View(_draw_tradeoff, _check_tradeoff, (compress,)),
    "rank_loss": View(_draw_rank_loss, _check_rank_loss, (compress,)),
    "moe_routing": View(_draw_moe_routing, _check_moe_routing, (routing, moefication)),
    "moe_load": View(_draw_moe_load, _check_moe_load, (routing, moefication)),
    "moe_loss_by_k": View(_draw_moe_loss, _check_moe_loss, (moefication,)),
}


def _retitle(figure: go.Figure, preset: Preset) -> None:
    """The preset's title on top; the builder's own title and subtitle, which name the layer, head or model,
    become the subtitle."""
    own = [figure.layout.title.text, figure.layout.title.subtitle.text]
    figure.update_layout(title_text=preset.title, title_subtitle_text="<br>".join(t for t in own if t))


def _plain(value: object) -> object:
    """JSON-ready option values (numpy scalars and tuples become Python numbers and lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def render(
    preset: Preset, cache: ResultCache, model: str | None = None, on_progress: Progress | None = None
) -> Rendered:
    """Run the preset's probes (through the disk cache) on its model, or on `model`, and draw its figure."""
    handle = loaded(model or preset.model)
    view = VIEWS[preset.view]
    run = _Run(handle, preset, cache, on_progress)
    started = time.perf_counter()
    figure = view.draw(run)
    seconds = time.perf_counter() - started
    unused = sorted(set(preset.options) - set(run.used))
    if unused:
        raise LmscopeError(
            f"Preset '{preset.name}' has options its view {preset.view} does not use: {', '.join(unused)}."
        )
    _retitle(figure, preset)
    settings = {
        "preset": preset.name,
        "version": preset.version,
        "view": preset.view,
        "model": handle.name,
        "text": preset.text,
        "options": {key: _plain(value) for key, value in run.used.items()},
        "picked": {key: _plain(value) for key, value in run.picked.items()},
        "probe_versions": {module.__name__.rsplit(".", 1)[-1]: module.VERSION for module in view.probes},
    }
    query = {**preset.query, "model": handle.name, **{key: str(value) for key, value in run.picked.items()}}
    return Rendered(
        preset=preset,
        figure=figure,
        model=handle.name,
        fingerprint=handle.fingerprint,
        settings=settings,
        seconds=seconds,
        cached=bool(run.hits) and all(run.hits),
        query=query,
        results=run.results,
    )


def check(preset: Preset, rendered: Rendered) -> str:
    """Recompute, from the probe results, the fact the caption promises; one line, or CaptionMismatch."""
    return VIEWS[preset.view].check(rendered)
