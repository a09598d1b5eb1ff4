"""A built-in Mixture-of-Experts derived from the dense SmolLM2 by MoEfication (Zhang et al. 2022).

Each MLP's 1,536 intermediate neurons are split into E equal experts by clustering neurons that activate
together on the bundled corpus (balanced spherical k-means on each neuron's |a| profile over tokens, where
a = act(gate x) * up x). A token then keeps only the neurons of k experts, chosen by their output norm
||W_down[:, S_e] a_{S_e}||: exactly (the *oracle*), or as predicted from the MLP input by a linear router fitted
with ridge regression (the *fitted* router). The chosen experts' outputs are summed unweighted, so with k = E
the model is the dense model exactly. Built once per base model (about a minute on 2 cores) and stored in the
model store; E, k and the router are chosen per forward pass with `routed(Setting(...))`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors
from torch import nn
from torch.nn import functional as F

from probes import corpus
from probes.batches import Progress, batches, by_length
from probes.cache import Cached, ResultCache, cache_key
from probes.errors import LmscopeError
from probes.forward import forward
from probes.handle import ModelHandle
from probes.hooks import observing
from probes.nll import token_nll
from probes.residual import blocks, submodule
from probes.settings import settings
from probes.text import clean, encode
from results.moefication import EXPERT_COUNTS, ROUTERS, LossByK, Moefication, Setting

DERIVED_NAME = "smollm2-135m-moefied"
BASE_NAME = "smollm2-135m-instruct"
VERSION = 1  # of the stored build
LOSS_VERSION = 2  # of the cached loss against k
METHOD = "MoEfication: balanced spherical k-means on |a| co-activation profiles; ridge router to expert output norms"
FILE_NAME = "moefication.safetensors"
MANIFEST_NAME = "manifest.json"

# The first sentences of the corpus are left out of the build, so losses measured on them (the benchmark and
# the tests) are out of sample for both the clustering and the router.
EVAL_SENTENCES = 40
MAX_TOKENS = 6000
HELD_OUT_EVERY = 5  # every 5th build sentence is held out to measure the router's recall
SEED = 0
KMEANS_ITERATIONS = 30
# Ridge penalty, relative to the mean diagonal of X^T X. The held-out recall hardly depends on it (0.741 to
# 0.749 at E = 16 for 1e-4 to 1e-1, every 3rd layer); the largest was best.
RIDGE = 1e-1
NORM_CHUNK = 1024  # tokens per chunk when computing all experts' output norms (bounds the (E, N, d) buffer)

log = logging.getLogger(__name__)
_build_lock = threading.Lock()


# A context variable, not a module attribute: Streamlit serves sessions from threads sharing one model, and
# each must route its own forward passes. None means dense (used only to measure the base model's loss).
_ACTIVE: ContextVar[Setting | None] = ContextVar("moefication_setting", default=Setting())


def active() -> Setting:
    """The setting forward passes in this thread/context use."""
    return _ACTIVE.get() or Setting()


@contextmanager
def routed(setting: Setting) -> Iterator[None]:
    """Within the block, every MoefiedMLP in this thread/context routes with `setting`."""
    setting.check()
    token = _ACTIVE.set(setting)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@contextmanager
def _dense() -> Iterator[None]:
    """Within the block, MoefiedMLPs skip routing entirely and compute the dense MLP."""
    token = _ACTIVE.set(None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def expert_order(assignment: torch.Tensor) -> torch.Tensor:
    """Neuron indices sorted by expert (stable), so expert e's neurons are positions e*m .. (e+1)*m - 1."""
    return torch.argsort(assignment, stable=True)


def expert_norms(a: torch.Tensor, down_weight: torch.Tensor, order: torch.Tensor, n_experts: int) -> torch.Tensor:
    """(N, E): ||W_down[:, S_e] a_{S_e}|| for each token's activations a (N, n), experts given by `order`."""
    size = order.numel() // n_experts
    # (E, m, d): each expert's slice of the down projection, transposed for a batched matmul.
    slices = down_weight[:, order].T.reshape(n_experts, size, -1)
    norms = []
    for chunk in a.split(NORM_CHUNK):
        grouped = chunk[:, order].reshape(len(chunk), n_experts, size).transpose(0, 1)
        norms.append(torch.bmm(grouped, slices).norm(dim=-1).T)
    return torch.cat(norms) if norms else a.new_zeros((0, n_experts))


class MoefiedRouter(nn.Module):
    """Scores experts by their (predicted or exact) output norm and picks the top k, best first."""

    scores_are_norms = True  # probes.routing reads the scores as norms, not logits

    def __init__(self, weights: dict[int, torch.Tensor], biases: dict[int, torch.Tensor]) -> None:
        super().__init__()
        # Buffers, not parameters: the model's parameter list must stay the base model's matrices.
        for experts in EXPERT_COUNTS:
            self.register_buffer(f"weight_{experts}", weights[experts].float(), persistent=False)
            self.register_buffer(f"bias_{experts}", biases[experts].float(), persistent=False)

    @property
    def n_experts(self) -> int:
        return active().experts

    @property
    def top_k(self) -> int:
        return active().top_k

    def forward(
        self, hidden: torch.Tensor, oracle_scores: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        setting = active()
        if oracle_scores is None:
            hidden = hidden.reshape(-1, hidden.shape[-1]).float()
            weight, bias = getattr(self, f"weight_{setting.experts}"), getattr(self, f"bias_{setting.experts}")
            scores = F.linear(hidden, weight, bias)
        else:
            scores = oracle_scores.float()
        experts = scores.topk(setting.top_k, dim=-1, sorted=True).indices
        # MoEfication sums the chosen experts' outputs unweighted.
        weights = torch.ones(experts.shape, dtype=torch.float32, device=scores.device)
        return scores, weights, experts


class MoefiedMLP(nn.Module):
    """A gated MLP whose neurons are split into experts; each token keeps only its top-k experts' neurons."""

    def __init__(
        self,
        mlp: nn.Module,
        assignments: dict[int, torch.Tensor],
        weights: dict[int, torch.Tensor],
        biases: dict[int, torch.Tensor],
    ) -> None:
        super().__init__()
        # The original modules, under their own names: other probes hook `...mlp.gate_proj` and friends.
        self.gate_proj = submodule(mlp, "gate_proj", nn.Linear)
        self.up_proj = submodule(mlp, "up_proj", nn.Linear)
        self.down_proj = submodule(mlp, "down_proj", nn.Linear)
        self.act_fn = submodule(mlp, "act_fn", nn.Module)
        self.config = getattr(mlp, "config", None)
        self.hidden_size = self.gate_proj.in_features
        self.intermediate_size = self.gate_proj.out_features
        self.router = MoefiedRouter(weights, biases)
        for experts in EXPERT_COUNTS:
            assignment = assignments[experts].long()
            self.register_buffer(f"assignment_{experts}", assignment, persistent=False)
            self.register_buffer(f"order_{experts}", expert_order(assignment), persistent=False)

    def assignment(self, experts: int) -> torch.Tensor:
        """(intermediate,) the expert of each neuron when the MLP has `experts` experts."""
        return getattr(self, f"assignment_{experts}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act_fn(self.gate_proj(x)) * self.up_proj(x)
        setting = _ACTIVE.get()
        if setting is None:
            return self.down_proj(a)
        flat = a.reshape(-1, a.shape[-1])
        oracle = None
        if setting.router == "oracle":
            order = getattr(self, f"order_{setting.experts}")
            oracle = expert_norms(flat.float(), self.down_proj.weight.float(), order, setting.experts)
        _, _, chosen = self.router(x.reshape(-1, x.shape[-1]), oracle)
        picked = torch.zeros(len(flat), setting.experts, dtype=a.dtype, device=a.device)
        picked.scatter_(1, chosen, 1.0)
        mask = picked[:, self.assignment(setting.experts)]  # (N, intermediate) 0/1
        # Multiplying by an all-ones mask (k = E) leaves a bit for bit unchanged: the dense model exactly.
        return self.down_proj(a * mask.reshape(a.shape))


# ---- build ------------------------------------------------------------------------------------------------


def _build_sentences(handle: ModelHandle) -> tuple[list[str], list[str]]:
    """(fitting, held-out) corpus sentences after the first EVAL_SENTENCES, up to MAX_TOKENS tokens in all."""
    fitting, held_out, total = [], [], 0
    for index, sentence in enumerate(corpus.sentences()[EVAL_SENTENCES:]):
        total += len(handle.tokenizer(clean(sentence))["input_ids"])
        if total > MAX_TOKENS:
            break
        (held_out if index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else fitting).append(sentence)
    return fitting, held_out


def _capture(
    handle: ModelHandle, parts: Sequence[Sequence[str]], on_progress: Progress | None, extra_steps: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Every MLP's inputs x (layers, tokens, d) float32 and activations a (layers, tokens, n) float16 on the
    sentences of each part, tokens batch-major and part after part; also each part's token count."""
    groups = [by_length(handle, part) for part in parts]
    counts = [sum(length * len(g) for length, g in group.items()) for group in groups]
    mlps = [submodule(block, "mlp", nn.Module) for block in blocks(handle)]
    first = submodule(mlps[0], "gate_proj", nn.Linear)
    xs = np.empty((len(mlps), sum(counts), first.in_features), dtype=np.float32)
    acts = np.empty((len(mlps), sum(counts), first.out_features), dtype=np.float16)
    cursor = [0]

    def keep(target: np.ndarray, layer: int):
        def hook(module: nn.Module, args: tuple) -> None:
            rows = args[0].reshape(-1, args[0].shape[-1])
            target[layer, cursor[0] : cursor[0] + len(rows)] = rows.float().numpy()

        return hook

    hooks = {m: keep(xs, i) for i, m in enumerate(mlps)}
    hooks |= {submodule(m, "down_proj", nn.Linear): keep(acts, i) for i, m in enumerate(mlps)}
    n_sentences = sum(len(part) for part in parts)
    total = n_sentences + extra_steps
    done = 0
    with observing(pre=hooks):
        for group in groups:
            for batch in batches(group):
                forward(handle, batch)
                cursor[0] += batch.size
                done += len(batch)
                if on_progress is not None:
                    on_progress(done, total)
    if not np.isfinite(acts).all():  # float16 storage: an overflow would silently corrupt the clustering
        raise LmscopeError("MoEfication failed: MLP activations overflow float16 storage on the corpus.")
    return xs, acts, counts


def _kmeans_init(gram: torch.Tensor, n_experts: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeds on the unit sphere: indices of E neurons, each drawn far (in cosine) from those before."""
    n = gram.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    closest = gram[:, chosen[0]].clone()
    for _ in range(n_experts - 1):
        distance = (1.0 - closest).clamp(min=0).double() ** 2
        pick = int(torch.multinomial(distance / distance.sum(), 1, generator=generator))
        chosen.append(pick)
        closest = torch.maximum(closest, gram[:, pick])
    return torch.as_tensor(chosen)


def balanced_assign(similarity: torch.Tensor, size: int) -> torch.Tensor:
    """(n,) an expert for each neuron, `size` neurons per expert, from (n, E) similarities: every free neuron
    proposes to its most similar expert with room, and each expert keeps its most similar proposers."""
    n, n_experts = similarity.shape
    assignment = torch.full((n,), -1, dtype=torch.long)
    room = torch.full((n_experts,), size, dtype=torch.long)
    while (free := torch.nonzero(assignment < 0).flatten()).numel():
        options = similarity[free].masked_fill(room[None] == 0, float("-inf"))
        best = options.argmax(dim=1)
        for expert in best.unique().tolist():
            proposers = free[best == expert]
            if len(proposers) > room[expert]:
                ranked = torch.argsort(similarity[proposers, expert], descending=True, stable=True)
                proposers = proposers[ranked[: int(room[expert])]]
            assignment[proposers] = expert
            room[expert] -= len(proposers)
    return assignment


def balanced_kmeans(gram: torch.Tensor, n_experts: int, seed: int) -> torch.Tensor:
    """(n,) balanced spherical k-means of n unit vectors given their Gram matrix; equal-size clusters."""
    n = gram.shape[0]
    if n % n_experts:
        raise LmscopeError(f"{n} neurons do not split into {n_experts} equal experts.")
    generator = torch.Generator().manual_seed(seed)
    similarity = gram[:, _kmeans_init(gram, n_experts, generator)]
    assignment = balanced_assign(similarity, n // n_experts)
    for _ in range(KMEANS_ITERATIONS):
        members = F.one_hot(assignment, n_experts).to(gram.dtype)  # (n, E)
        # Cosine similarity to each cluster's mean direction: p_j . c_e / ||c_e||, with c_e the members' sum.
        dots = gram @ members
        norms = (members * dots).sum(dim=0).clamp(min=1e-12).sqrt()
        updated = balanced_assign(dots / norms, n // n_experts)
        if torch.equal(updated, assignment):
            break
        assignment = updated
    return assignment


def _ridge(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (E, d), bias (E,)) minimising ||x W^T + b - y||^2 + lambda ||W||^2 (bias not penalised)."""
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean  # centring fits the unpenalised bias exactly
    gram = xc.T @ xc
    penalty = RIDGE * gram.diagonal().mean()
    weight = torch.linalg.solve(gram + penalty * torch.eye(len(gram), dtype=gram.dtype), xc.T @ yc).T
    return weight.float(), (y_mean - weight @ x_mean).float()


def top_recall(predicted: torch.Tensor, exact: torch.Tensor, k: int) -> float:
    """The mean over tokens of the share of the exact top-k experts that the predicted top-k also holds."""
    mine = F.one_hot(predicted.topk(k, dim=-1).indices, predicted.shape[-1]).sum(1)
    best = F.one_hot(exact.topk(k, dim=-1).indices, exact.shape[-1]).sum(1)
    return float((mine * best).sum(-1).double().mean() / k)


def _fit_layer(
    x: np.ndarray, a: np.ndarray, down_weight: torch.Tensor, n_fit: int, seed: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """E -> (assignment, router weight, router bias, held-out recall) for one layer."""
    acts = torch.from_numpy(a).float()
    inputs = torch.from_numpy(x)
    profiles = F.normalize(acts[:n_fit].abs().T, dim=1)  # (n, tokens): each neuron's |a| over fitting tokens
    gram = profiles @ profiles.T
    fitted = {}
    for n_experts in EXPERT_COUNTS:
        assignment = balanced_kmeans(gram, n_experts, seed)
        norms = expert_norms(acts, down_weight, expert_order(assignment), n_experts)
        weight, bias = _ridge(inputs[:n_fit], norms[:n_fit])
        predicted = F.linear(inputs[n_fit:], weight, bias)
        recall = top_recall(predicted, norms[n_fit:], max(1, n_experts // 4))
        fitted[n_experts] = (assignment, weight, bias, recall)
    return fitted


def build(handle: ModelHandle, on_progress: Progress | None = None) -> Moefication:
    """Cluster every MLP's neurons into 8, 16 and 32 experts and fit their routers, from one corpus pass of the
    dense model (on_progress: corpus sentences, then layers fitted, as steps done of steps in all)."""
    if any(isinstance(block.mlp, MoefiedMLP) for block in blocks(handle)):
        raise LmscopeError("MoEfication needs the dense model: this one is MoEfied already.")
    started = time.perf_counter()
    fitting, held_out = _build_sentences(handle)
    xs, acts, (n_fit, n_held) = _capture(handle, [fitting, held_out], on_progress, handle.n_layers)
    total = len(fitting) + len(held_out) + handle.n_layers
    assignments = {e: [] for e in EXPERT_COUNTS}
    weights, biases, recalls = ({e: [] for e in EXPERT_COUNTS} for _ in range(3))
    for layer, block in enumerate(blocks(handle)):
        with torch.inference_mode():
            down = submodule(block, "mlp.down_proj", nn.Linear)
            fitted = _fit_layer(xs[layer], acts[layer], down.weight.float(), n_fit, SEED + layer)
        for e, (assignment, weight, bias, recall) in fitted.items():
            assignments[e].append(assignment.numpy().astype(np.int16))
            weights[e].append(weight.numpy())
            biases[e].append(bias.numpy())
            recalls[e].append(recall)
        if on_progress is not None:
            on_progress(len(fitting) + len(held_out) + layer + 1, total)
    return Moefication(
        base_fingerprint=handle.fingerprint,
        assignments={e: np.stack(v) for e, v in assignments.items()},
        router_weight={e: np.stack(v) for e, v in weights.items()},
        router_bias={e: np.stack(v) for e, v in biases.items()},
        router_recall={e: np.asarray(v, dtype=np.float32) for e, v in recalls.items()},
        n_tokens=n_fit + n_held,
        build_seconds=time.perf_counter() - started,
    )


# ---- store ------------------------------------------------------------------------------------------------


def store_path() -> Path:
    """The stored MoEfication (safetensors) in the model store; a manifest.json lies beside it."""
    return settings().model_store / "derived" / DERIVED_NAME / FILE_NAME


def serialise(moefication: Moefication) -> bytes:
    """The MoEfication as safetensors bytes, what the store holds."""
    tensors = {}
    for e in EXPERT_COUNTS:
        tensors[f"assignments.{e}"] = moefication.assignments[e]
        tensors[f"router_weight.{e}"] = moefication.router_weight[e]
        tensors[f"router_bias.{e}"] = moefication.router_bias[e]
        tensors[f"router_recall.{e}"] = moefication.router_recall[e]
    metadata = {
        "version": str(VERSION),
        "base_fingerprint": moefication.base_fingerprint,
        "n_tokens": str(moefication.n_tokens),
        "build_seconds": repr(moefication.build_seconds),
    }
    return save_tensors(tensors, metadata=metadata)


def _is_balanced(assignment: np.ndarray, n_experts: int, shape: tuple[int, int]) -> bool:
    """Whether each row gives every neuron one of n_experts experts, all of the same size."""
    if assignment.shape != shape or assignment.min() < 0 or assignment.max() >= n_experts:
        return False
    sizes = np.stack([np.bincount(row, minlength=n_experts) for row in assignment.astype(np.int64)])
    return bool((sizes == shape[1] // n_experts).all())


def _deserialise(data: bytes, n_layers: int, intermediate: int, hidden: int) -> Moefication:
    """The stored MoEfication; ValueError if it is not one for this VERSION and these shapes."""
    tensors = load_tensors(data)
    # safetensors.numpy reads no metadata from bytes; the header is an 8-byte little-endian length, then JSON.
    metadata = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")]).get("__metadata__", {})
    if metadata.get("version") != str(VERSION):
        raise ValueError(f"version {metadata.get('version')}, expected {VERSION}")
    moefication = Moefication(
        base_fingerprint=metadata["base_fingerprint"],
        assignments={e: tensors[f"assignments.{e}"] for e in EXPERT_COUNTS},
        router_weight={e: tensors[f"router_weight.{e}"] for e in EXPERT_COUNTS},
        router_bias={e: tensors[f"router_bias.{e}"] for e in EXPERT_COUNTS},
        router_recall={e: tensors[f"router_recall.{e}"] for e in EXPERT_COUNTS},
        n_tokens=int(metadata["n_tokens"]),
        build_seconds=float(metadata["build_seconds"]),
    )
    for e in EXPERT_COUNTS:
        if (
            not _is_balanced(moefication.assignments[e], e, (n_layers, intermediate))
            or moefication.router_weight[e].shape != (n_layers, e, hidden)
            or moefication.router_bias[e].shape != (n_layers, e)
        ):
            raise ValueError(f"the E = {e} tensors do not fit the model")
    return moefication


def _manifest(moefication: Moefication, digest: str) -> dict:
    return {
        "name": DERIVED_NAME,
        "base": BASE_NAME,
        "base_fingerprint": moefication.base_fingerprint,
        "method": METHOD,
        "version": VERSION,
        "corpus": (
            f"probes/data/corpus.txt sentences {EVAL_SENTENCES}+ ({moefication.n_tokens} tokens; every "
            f"{HELD_OUT_EVERY}th sentence held out for the recall)"
        ),
        "expert_counts": list(EXPERT_COUNTS),
        "seconds": round(moefication.build_seconds, 1),
        "median_recall": {str(e): float(np.median(r)) for e, r in moefication.router_recall.items()},
        "sha256": digest,
    }


def _save(moefication: Moefication, data: bytes, path: Path) -> None:
    """Write the file atomically (a concurrent reader sees the old file or the new one), then its manifest."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        manifest = _manifest(moefication, hashlib.sha256(data).hexdigest())
        (path.parent / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    except OSError as exc:  # an unwritable store costs a rebuild next time, not a failure now
        log.warning("The MoEfied model could not be saved to %s (%s); it will be rebuilt next time.", path, exc)


def read_stored(handle: ModelHandle, path: Path) -> tuple[Moefication, bytes] | None:
    """The MoEfication stored at path for this base model, and its bytes; None if missing, stale or corrupt."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("The stored MoEfication at %s is unreadable (%s); rebuilding it.", path, exc)
        return None
    gate = submodule(blocks(handle)[0], "mlp.gate_proj", nn.Linear)
    try:
        moefication = _deserialise(data, handle.n_layers, gate.out_features, gate.in_features)
    except (SafetensorError, ValueError, KeyError, TypeError, OverflowError) as exc:
        log.warning("The stored MoEfication at %s is unusable (%s); rebuilding it.", path, exc)
        return None
    if moefication.base_fingerprint != handle.fingerprint:
        log.warning("The stored MoEfication at %s was built from another base model; rebuilding it.", path)
        return None
    return moefication, data


def _stored_or_built(handle: ModelHandle, on_progress: Progress | None) -> tuple[Moefication, bytes]:
    path = store_path()
    with _build_lock:  # two sessions loading at once build once
        found = read_stored(handle, path)
        if found is not None:
            return found
        moefication = build(handle, on_progress)
        data = serialise(moefication)
        _save(moefication, data, path)
        return moefication, data


def derive(base: ModelHandle, moefication: Moefication, data: bytes) -> ModelHandle:
    """The derived model's handle: the dense base's MLPs replaced, in place, by MoefiedMLPs using `moefication`
    (`data`, its stored bytes, names it in the fingerprint)."""
    started = time.perf_counter()
    for layer, block in enumerate(blocks(base)):

        def per_layer(table: dict[int, np.ndarray]) -> dict[int, torch.Tensor]:
            return {e: torch.from_numpy(np.ascontiguousarray(v[layer])) for e, v in table.items()}

        tables = (moefication.assignments, moefication.router_weight, moefication.router_bias)
        block.mlp = MoefiedMLP(submodule(block, "mlp", nn.Module), *(per_layer(table) for table in tables))
    recall = ", ".join(f"E={e}: {np.median(r):.2f}" for e, r in moefication.router_recall.items())
    source = (
        f"derived: MoEfication of {BASE_NAME} ({'/'.join(map(str, EXPERT_COUNTS))} experts per MLP, clustered on "
        f"{moefication.n_tokens} corpus tokens; the fitted router finds the oracle's top E/4 experts at a median "
        f"rate of {recall})"
    )
    # A fingerprint of its own, so cached results of the derived model never mix with the base model's.
    fingerprint = hashlib.sha256(f"{base.fingerprint}:{hashlib.sha256(data).hexdigest()}".encode()).hexdigest()[:16]
    seconds = base.load_seconds + time.perf_counter() - started
    return ModelHandle(DERIVED_NAME, source, base.model, base.tokenizer, fingerprint, seconds)


def load_derived(base: ModelHandle, on_progress: Progress | None = None) -> ModelHandle:
    """The MoEfied SmolLM2 made from `base`, a SmolLM2 loaded for it alone (its MLPs are replaced in place); the
    MoEfication is built and stored on first use (on_progress then reports corpus sentences, then layers fitted,
    as steps done of steps in all)."""
    started = time.perf_counter()
    moefication, data = _stored_or_built(base, on_progress)
    handle = derive(base, moefication, data)
    handle.load_seconds = base.load_seconds + time.perf_counter() - started
    return handle


# ---- loss against k ---------------------------------------------------------------------------------------


def ks_for(n_experts: int) -> np.ndarray:
    """1, 2, 4, ..., E: the k values measured for E experts."""
    return 2 ** np.arange(int(np.log2(n_experts)) + 1)


def _loss_by_k(handle: ModelHandle, token_ids: np.ndarray) -> LossByK:
    with _dense():
        dense = float(token_nll(handle, token_ids).mean())
    ks = {e: ks_for(e) for e in EXPERT_COUNTS}
    nll: dict[str, dict[int, np.ndarray]] = {}
    for router in ROUTERS:
        nll[router] = {}
        for e in EXPERT_COUNTS:
            values = []
            for k in ks[e]:
                with routed(Setting(e, int(k), router)):
                    values.append(token_nll(handle, token_ids).mean())
            nll[router][e] = np.asarray(values, dtype=np.float64)
    return LossByK(handle.name, token_ids, dense, ks, nll)


def loss_by_k(handle: ModelHandle, text: str, cache: ResultCache) -> Cached[LossByK]:
    """Mean NLL of the text at each E, k and router of the MoEfied model, and of the dense model; cached."""
    if not all(isinstance(block.mlp, MoefiedMLP) for block in blocks(handle)):
        raise LmscopeError(f"'{handle.name}' is not a MoEfied model: choose {DERIVED_NAME}.")
    ids = encode(handle, text, settings().max_tokens).token_ids
    inputs = {"token_ids": ids.tolist(), "ks": {e: ks_for(e).tolist() for e in EXPERT_COUNTS}}
    key = cache_key(handle.fingerprint, "moefication-loss", LOSS_VERSION, inputs)
    return cache.fetch(key, lambda: _loss_by_k(handle, ids))
