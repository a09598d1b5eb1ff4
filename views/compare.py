"""Several models side by side: a view's measure of each model on one chart (`viz.compare`): per-layer measures
by relative depth, the others (head types, loss per byte) in each model's colour. The pages' compare choice, the
lecture presets that compare and the Python API's `compare` draw the same figure."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go

from probes import activations, attention, calibrated, corpus, heads, neurons, pruning, sinks, spectra
from probes.batches import Progress
from probes.sinks import sink_profile
from results.attention import AttentionResult
from results.sinks import CorpusAttention
from results.spectra import KINDS, ModelSpectra
from runtime.builtin import BUILTINS, DERIVED
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.untrained import twin_names
from views.api import Model, model_of, progress_bar
from views.registry import Figure, Run
from viz.attention import SUMMARY_LABELS, cell_labels, head_values, logit_range, summary_max
from viz.compare import Panel, bars_by_model, by_depth, by_depth_panels, esds_overlaid, loss_per_byte, side_by_side
from viz.sinks import corpus_map

MOST_MODELS = 3  # one chart holds at most this many models


def comparable_models() -> list[str]:
    """The models a page or a lecture preset offers to compare: the built-ins, the derived MoE and the built-ins'
    untrained twins."""
    return [*BUILTINS, *DERIVED, *twin_names(list(BUILTINS))]


def _text(text: str | None) -> str:
    if text is None:
        raise LmscopeError("This comparison runs the models on a text: give one.")
    return text


def _n_layers(result: ModelSpectra) -> int:
    return max(m.layer for m in result.matrices) + 1


def layer_at(depth: float, n_layers: int) -> int:
    """The block at a relative depth (0: the first, 1: the last) of a model of n_layers blocks."""
    return round(depth * (n_layers - 1))


def layer_mean(result: ModelSpectra, field: str, kind: str | None = None) -> np.ndarray:
    """Per layer, the mean of a statistic (`alpha`, `kurtosis`, ...) over its block matrices (of one kind, if given;
    where finite)."""
    layers = _n_layers(result)
    chosen = [m for m in result.matrices if m.layer >= 0 and (kind is None or m.kind == kind)]
    values = [[getattr(m, field) for m in chosen if m.layer == i] for i in range(layers)]
    finite = [[v for v in each if np.isfinite(v)] for each in values]
    return np.asarray([np.mean(each) if each else np.nan for each in finite], dtype=np.float64)


Options = Mapping[str, Any]  # a comparison's settings beyond the text (the pruning page's methods, sparsities...)
Probe = Callable[[ModelHandle, "str | None", ResultCache, "Progress | None", Options], Cached[Any]]


def _spectra(handle: ModelHandle, _: str | None, cache: ResultCache, on_progress: Progress | None, __: Options):
    """Every block matrix's spectrum and entry statistics (alpha, kurtosis and tails read the same result)."""
    return spectra.run(handle, cache, on_progress)


@dataclass(frozen=True)
class PerLayer:
    """A per-layer measure: the probe that gives a model's typed result (handle, text, cache, progress, options),
    the series drawn from it (label -> value per layer), and how they are labelled."""

    probe: Probe
    values: Callable[[Any], dict[str, np.ndarray]]
    title: str
    subtitle: str
    y_title: str
    log_y: bool = False
    reads_text: bool = True  # False: the measure is of the weights or the corpus, the same for any text

    def draw(self, results: Sequence[tuple[str, Any]], _: Options) -> go.Figure:
        """One line per model and series, by relative depth."""
        lines = [(name, self.values(result)) for name, result in results]
        return by_depth(lines, self.title, self.y_title, self.subtitle, log_y=self.log_y)


@dataclass(frozen=True)
class Comparison:
    """A measure that is not one value per layer: the probe, and the figure of [(model name, result)] at the
    options."""

    probe: Probe
    draw: Callable[[Sequence[tuple[str, Any]], Options], go.Figure]
    reads_text: bool = True  # False: the measure is of the weights or the corpus, the same for any text


def _alpha_by_kind(results: Sequence[tuple[str, ModelSpectra]], _: Options) -> go.Figure:
    kinds = [k for k in KINDS if any(m.kind == k and m.layer >= 0 for _, r in results for m in r.matrices)]
    panels = [
        (kind, [(name, {"alpha": layer_mean(result, "alpha", kind)}) for name, result in results]) for kind in kinds
    ]
    return by_depth_panels(
        panels,
        "Power-law exponent alpha by layer, per kind of matrix",
        "alpha (log scale)",
        "The fitted tail exponent of the eigenvalues of WᵀW of each block's matrix of that kind (WeightWatcher: 2 to "
        "6 for well-trained layers; far above for random ones).",
        log_y=True,
    )


def _esds(results: Sequence[tuple[str, ModelSpectra]], options: Options) -> go.Figure:
    kind, depth = str(options.get("kind", "down")), float(options.get("depth", 0.5))
    chosen = []
    for name, result in results:
        layer = layer_at(depth, _n_layers(result))
        found = [m for m in result.matrices if m.kind == kind and m.layer == layer]
        if not found:
            raise LmscopeError(f"'{name}' has no {kind} matrix in block {layer}: compare another kind of matrix.")
        chosen.append((name, found[0]))
    return esds_overlaid(chosen)


def _head_types(handle: ModelHandle, text: str | None, cache: ResultCache, _: Progress | None, options: Options):
    """Each head's type (`HeadTypes.dominant`) on the text and on random tokens repeated and reversed."""
    found = heads.types_of(
        handle, _text(text), cache, **{k: int(options[k]) for k in ("seq_len", "seed") if k in options}
    )
    return Cached(found.value.dominant, found.hit)


def _type_shares(results: Sequence[tuple[str, np.ndarray]], _: Options) -> go.Figure:
    shares = [(name, {t: float(np.mean(types == t)) for t in heads.TYPES}) for name, types in results]
    counts = [{t: f"{int(np.sum(types == t))} of {types.size} heads" for t in heads.TYPES} for _, types in results]
    return bars_by_model(
        shares,
        "Head types side by side",
        "share of the model's heads",
        "Each head's dominant type (the type it passes furthest above the threshold) by its scores on your text and "
        "on random tokens; none: no score reaches its threshold.",
        hover=counts,
    )


def _tradeoff(handle: ModelHandle, text: str | None, cache: ResultCache, progress: Progress | None, options: Options):
    """The pruning page's tradeoff at the options' settings (by default: magnitude pruning at 50% and
    round-to-nearest at 8 and 4 bits on 16 held-out sentences)."""
    return pruning.tradeoff(
        handle,
        _text(text),
        corpus.sentences()[: int(options.get("sentences", 16))],
        options.get("sparsities", [0.5]),
        options.get("bits", [8, 4]),
        cache,
        tuple(options.get("kinds", pruning.KINDS)),
        progress,
        methods=options.get("methods", ("prune", "quantize")),
        patterns=options.get("patterns", ()),
        group=int(options.get("group", 0)),
        calibration=options.get("calibration", (calibrated.DEFAULT_SEQUENCES, calibrated.DEFAULT_LENGTH)),
    )


DEPTHS = (0.0, 1 / 3, 2 / 3, 1.0)  # the layers a side-by-side comparison of maps shows, by relative depth


def _corpus_attention(
    handle: ModelHandle, _: str | None, cache: ResultCache, progress: Progress | None, options: Options
) -> Cached[CorpusAttention]:
    """The attention averaged over corpus sentences (the sinks page's corpus mode, at its options: sentences,
    tokens, and texts, its own sentences)."""
    return sinks.corpus_attention(
        handle,
        options.get("texts") or corpus.sentences(),
        cache,
        n_tokens=int(options.get("tokens", sinks.DEFAULT_TOKENS)),
        limit=int(options.get("sentences", sinks.DEFAULT_SENTENCES)),
        on_progress=progress,
    )


def _corpus_maps(results: Sequence[tuple[str, CorpusAttention]], options: Options) -> go.Figure:
    logits = bool(options.get("logits", False))
    rows = []
    for name, result in results:
        panels = []
        for column, layer in enumerate(depth_layers(result.n_layers)):
            values = corpus_map(result, layer, logits)
            if result.is_causal:
                values[0] = np.nan  # token 0 sees only itself (weight 1): it would wash out the scale
            panels.append(Panel(f"{name}: layer {layer}" if column == 0 else f"layer {layer}", values))
        rows.append(panels)
    what = "attention logits (pre-softmax scores)" if logits else "attention weights"
    sentences = " and ".join(sorted({str(result.n_sentences) for _, result in results}))
    return side_by_side(
        rows,
        f"Average {what}, model against model",
        f"Head-averaged over {sentences} sentences; the first, a third, two thirds and the last block of each model;"
        "<br>rows: query position, columns: key position (0: the first token; a decoder's row 0 blank). One colour "
        "scale for every map.",
        "mean logit" if logits else "mean weight",
        zmin=None if logits else 0.0,
    )


def _attention(handle: ModelHandle, text: str | None, cache: ResultCache, _: Progress | None, options: Options):
    """The attention page's result on the text (with the pre-softmax logits if the options ask)."""
    return attention.run(handle, _text(text), cache, with_logits=bool(options.get("logits", False)))


def _head_maps(results: Sequence[tuple[str, AttentionResult]], options: Options) -> go.Figure:
    """One head's map of each model (at the same relative depth) or text, side by side on one colour scale."""
    depth, head, logits = float(options.get("depth", 0.0)), int(options.get("head", 0)), bool(options.get("logits"))
    panels = []
    for name, result in results:
        layer = layer_at(depth, result.n_layers)
        if head >= result.n_heads:
            raise LmscopeError(
                f"'{name}' has heads 0 to {result.n_heads - 1}: choose a head below {result.n_heads} to compare maps."
            )
        values = head_values(result, layer, head, logits)
        if result.is_causal and not logits:
            values[0] = np.nan  # token 0 sees only itself (weight 1): it would wash out the scale
        panels.append(Panel(f"{name}<br>layer {layer}, head {head}", values, cell_labels(result.tokens, result.pool)))
    low, high = logit_range(np.concatenate([p.values.ravel() for p in panels])) if logits else (0.0, None)
    return side_by_side(
        [panels],
        f"One head's attention {'logits' if logits else 'weights'}, side by side",
        "The same head at the same relative depth; rows: the attending token, columns: the attended-to one; blank: "
        "masked, and a decoder's row 0."
        + (" Colours from the 1st to the 99th percentile of every map's logits." if logits else " One colour scale."),
        "logit" if logits else "weight",
        zmin=low,
        zmax=high,
        panel_height=460,
    )


def _head_grids(results: Sequence[tuple[str, AttentionResult]], options: Options) -> go.Figure:
    """Each model's (or text's) layer x head grid of one attention summary, side by side on one colour scale."""
    summary = str(options.get("summary", "sink_share"))
    if summary not in attention.SUMMARIES:
        raise LmscopeError(f"Unknown summary '{summary}': choose from {', '.join(attention.SUMMARIES)}.")
    tops = [summary_max(result, summary) for _, result in results]
    return side_by_side(
        [[Panel(name, getattr(result, summary)) for name, result in results]],
        f"{SUMMARY_LABELS[summary]}, every head side by side",
        "Rows: layers (the first at the top), columns: heads; one colour scale for every grid.",
        summary.replace("_", " "),
        axes=("head", "layer"),
        zmin=0.0,
        zmax=None if None in tops else max(t for t in tops if t is not None),
        panel_height=max(420, 14 * max(result.n_layers for _, result in results)),
    )


def depth_layers(n_layers: int) -> list[int]:
    """The layers at `DEPTHS` of a model of n_layers blocks (each once)."""
    return sorted({layer_at(d, n_layers) for d in DEPTHS})


COMPARISONS: dict[str, PerLayer | Comparison] = {
    "sinks": PerLayer(
        # With logits, as the sinks page runs it (views.sinks.sink_attention): one pass serves the page and this.
        lambda handle, text, cache, _, __: attention.run(handle, _text(text), cache, with_logits=True),
        lambda result: {"token 0": sink_profile(result).layer_share},
        "Sink share by layer: attention on the first token",
        "Mean over heads and later tokens of the weight on token 0.",
        "share of attention on token 0",
    ),
    "massive": PerLayer(
        lambda handle, text, cache, _, __: activations.run(handle, _text(text), cache),
        lambda result: {"top 1": result.max_abs, "top 2": result.ranked(2), "median": result.median_abs},
        "Massive activations: the largest |h| of each block's output",
        "Log scale: top 1 (solid), top 2 (dashed) and the median (dotted). A few features reach "
        "thousands in a trained decoder.",
        "|h|",
        log_y=True,
    ),
    "spectra": PerLayer(
        _spectra,
        lambda result: {"alpha": layer_mean(result, "alpha")},
        "Power-law exponent alpha by layer",
        "Mean over each block's matrices of the fitted tail exponent of the eigenvalues of WᵀW.",
        "alpha",
        reads_text=False,
    ),
    "alpha_by_kind": Comparison(_spectra, _alpha_by_kind, reads_text=False),
    "esd": Comparison(_spectra, _esds, reads_text=False),
    "weights": PerLayer(
        _spectra,
        lambda result: {"kurtosis": layer_mean(result, "kurtosis")},
        "How Gaussian the weights are: excess kurtosis by layer",
        "Mean over each block's matrices of the entries' excess kurtosis (0 for Gaussian entries; heavy tails above).",
        "excess kurtosis",
        reads_text=False,
    ),
    "tails": PerLayer(
        _spectra,
        lambda result: {
            "beyond 3σ": layer_mean(result, "beyond_3_std"),
            "beyond 6σ": layer_mean(result, "beyond_6_std"),
        },
        "Heavy tails: the share of weights far from the mean, by layer",
        "Mean over each block's matrices of the share of entries beyond 3 standard deviations (solid; Gaussian: "
        "0.27%) and beyond 6 (dashed; Gaussian: 2e-9, absent from a log axis when none).",
        "share of the entries",
        log_y=True,
        reads_text=False,
    ),
    "neurons": PerLayer(
        lambda handle, text, cache, _, __: neurons.run(handle, [_text(text)], cache),
        lambda result: {"active": neurons.active_share(result, 0.0)},
        "Active MLP neurons by layer",
        "Mean over the text's tokens of the share of neurons whose pre-activation z exceeds 0.",
        "share of neurons active",
    ),
    "heads": Comparison(_head_types, _type_shares),
    "pruning": Comparison(
        _tradeoff, lambda results, _: loss_per_byte([result for _, result in results]), reads_text=False
    ),
    "corpus_maps": Comparison(_corpus_attention, _corpus_maps, reads_text=False),
    "attention": Comparison(_attention, _head_maps),
    "head_grid": Comparison(_attention, _head_grids),
}


class Subject(NamedTuple):
    """One side of a comparison: a model on a text, under the label its lines and panels carry."""

    label: str
    handle: ModelHandle
    text: str | None


LABEL_CHARS = 28  # a text's label quotes at most this many of its characters


def text_labels(texts: Sequence[str]) -> list[str]:
    """Short distinct labels of texts: a letter and the text's start ('A: "The cat sat on…"')."""
    labels = []
    for letter, text in zip("ABCDEFGHIJ", texts, strict=False):
        words = " ".join(text.split())
        labels.append(f'{letter}: "{words[:LABEL_CHARS].rstrip()}{"…" if len(words) > LABEL_CHARS else ""}"')
    return labels


def comparison(view: str, count: int, texts: bool = False) -> PerLayer | Comparison:
    """The view's comparison, for `count` models (or, with `texts`, texts on one model); a clear error for an
    unknown view, too many or too few, or texts compared by a measure that does not read them."""
    if view not in COMPARISONS:
        raise LmscopeError(f"Unknown comparison '{view}': choose from {', '.join(COMPARISONS)}.")
    what = "texts" if texts else "models"
    if not (2 if texts else 1) <= count <= MOST_MODELS:
        raise LmscopeError(f"Compare {'two' if texts else 'one'} to {MOST_MODELS} {what}; got {count}.")
    chosen = COMPARISONS[view]
    if texts and not chosen.reads_text:
        raise LmscopeError(f"The {view} comparison measures the weights or the corpus, not a text: compare models.")
    return chosen


def depth_figure(name: str, view: str, probes: tuple[ModuleType, ...]) -> Figure:
    """A preset figure of the view's comparison on the run's model and the ones it compares (`Run.others`), each
    model's result kept under its name for the caption's check."""

    def draw(run: Run) -> go.Figure:
        chosen = comparison(view, 1 + len(run.others))
        results = [
            (handle.name, run.keep(handle.name, chosen.probe(handle, run.text_value, run.cache, run.on_progress, {})))
            for handle in (run.handle, *run.others)
        ]
        return chosen.draw(results, {})

    return Figure(name, draw, probes, compares=True)


def _drawn(
    view: str, subjects: Sequence[Subject], cache: ResultCache | None, progress: bool, options: Options
) -> go.Figure:
    chosen = COMPARISONS[view]
    results = []
    for subject in subjects:
        with progress_bar(f"{view} ({subject.label})", progress) as on_progress:
            done = chosen.probe(subject.handle, subject.text, cache or ResultCache(), on_progress, options)
            results.append((subject.label, done.value))
    return chosen.draw(results, options)


def compare(
    models: Sequence[Model],
    view: str,
    text: str | None = None,
    *,
    cache: ResultCache | None = None,
    progress: bool = True,
    **options: Any,
) -> go.Figure:
    """The view's measure of each model on one chart. Per layer, by relative depth (the hover names each real
    layer): sinks (the share of attention on token 0), massive (the largest, second largest and median |h|),
    spectra (the mean alpha), alpha_by_kind (alpha per kind of matrix), weights (the mean excess kurtosis), tails
    (the share of weights beyond 3 and 6 standard deviations), neurons (the share of MLP neurons active on the
    text). Otherwise: esd (each model's spectral density of one matrix; options kind, default down, and depth,
    default 0.5), heads (the share of heads of each type; options seq_len, seed), corpus_maps (the corpus-average
    attention maps; options sentences, tokens, texts, logits), attention (one head's map of each model side by
    side; options depth, head, logits), head_grid (each model's layer x head grid of an attention summary; option
    summary, default sink_share) and pruning (loss per byte; options as `probes.pruning.tradeoff`'s, with sentences
    a count of held-out corpus sentences)."""
    comparison(view, len(models))
    handles = [model_of(model) for model in models]
    return _drawn(view, [Subject(h.name, h, text) for h in handles], cache, progress, options)


def compare_texts(
    model: Model,
    view: str,
    texts: Sequence[str],
    *,
    cache: ResultCache | None = None,
    progress: bool = True,
    **options: Any,
) -> go.Figure:
    """The view's measure of one model on two or three texts, on one chart (labelled A, B, C by the texts' start):
    the comparisons of `compare` that read a text (sinks, massive, neurons, heads, attention, head_grid)."""
    comparison(view, len(texts), texts=True)
    handle = model_of(model)
    return _drawn(
        view,
        [Subject(label, handle, text) for label, text in zip(text_labels(texts), texts, strict=True)],
        cache,
        progress,
        options,
    )
