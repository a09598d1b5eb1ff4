"""A trained Mixture-of-Experts made from the dense SmolLM2, in transformers' own MoE architectures: Mixtral, or
Qwen2-MoE when some experts are shared (always on, as in DeepSeekMoE).

Each MLP's neurons are split into E experts by the MoEfication clustering (probes.moefication); expert e is the
gated MLP of its neurons (its rows of the gate and up projections, its columns of the down projection). The router
computes G(x) = Softmax(x·W_g), keeps the top k and renormalises their gates to sum to 1; the experts' down
projections are scaled by k, so that k equal gates give the plain sum of the chosen experts (the MoEfication
model). With S shared experts (DeepSeekMoE's), the S·m neurons (m per expert) that carry the most of the dense MLP's
output energy become one Qwen2-MoE shared expert, weighted by σ(x·w_s) (w_s starts at 0, so its down projection is
doubled), the others are split again into E − S experts by the same clustering, and the router chooses the top k − S
of them. Training is distillation from the dense model, as a pruned model is recovered:
1. block after block, on the hidden states the already-converted blocks produce, each MoE MLP is fitted to the dense
   MLP on the same inputs (squared error), its router taught the oracle's choice, the k − S routed experts whose
   outputs are largest (cross-entropy, each token weighted by its share of the output's energy, so that the
   massive activation survives), with the Switch load-balancing loss;
2. then the whole network: KL divergence from the dense model's next-token distributions, plus the load-balancing
   loss, training every router and expert (attention and embeddings stay the dense model's).
The training text is the bundled corpus (its first EVAL_SENTENCES sentences held out, the loss is measured on them)
and Python's own documentation (`pydoc_data`, shipped with every Python).
"""

from __future__ import annotations

import pydoc_data.topics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers.configuration_utils import PretrainedConfig
from transformers.modeling_utils import PreTrainedModel
from transformers.models.auto.modeling_auto import AutoModelForCausalLM
from transformers.models.mixtral.configuration_mixtral import MixtralConfig
from transformers.models.qwen2_moe.configuration_qwen2_moe import Qwen2MoeConfig

from probes import corpus
from probes.batches import Progress
from probes.calibrated import block_calls, block_output
from probes.lens import readout
from probes.moe_clustering import balanced_kmeans, coactivation
from probes.moe_equation import expert_outputs
from probes.moe_update import Update, apply, extract, trained_weights
from probes.moefication import EVAL_SENTENCES
from probes.nll import head_logits
from probes.residual import blocks, submodule
from probes.routing import expert_balance, shared_count
from probes.text import clean
from results.moe_trained import Costs, Recipe, TrainingLog, active_ks
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.hooks import observing
from runtime.initialised import initial_weights

VERSION = 8  # of the build: a new version trains a new model folder
SEQUENCE = 128  # tokens per training sequence
LOCAL_BATCH = 1024  # tokens per step of the layer-wise fit
DISTIL_BATCH = 4  # sequences per distillation step
# Distillation's rate by measurement (50 steps, held-out NLL at k = 4): 1e-4 6.38, 3e-4 6.13, 1e-3 5.96, 3e-3 6.07.
ROUTER_LR, EXPERT_LR, DISTIL_LR = 1e-2, 3e-4, 1e-3
CHOICE_WEIGHT = 0.1  # of the router's cross-entropy to the oracle's top-k experts (layer-wise fit)
TIMED_TOKENS = 512  # tokens of the MLP timing
EVAL_EVERY = 25  # distillation steps between held-out measurements of the training curve
ROUTER = ".mlp.gate.weight"  # each block's router, in Mixtral and Qwen2-MoE alike


def config(base: ModelHandle, recipe: Recipe) -> PretrainedConfig:
    """The dense model's config with its MLPs split into recipe.experts experts, k of them active per token: a
    Mixtral's, or a Qwen2-MoE's with recipe.shared of them as one shared expert."""
    c = base.config
    neurons = c.intermediate_size // recipe.experts
    common = {
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "hidden_act": c.hidden_act,
        "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_parameters": getattr(c, "rope_parameters", None),
        "tie_word_embeddings": c.tie_word_embeddings,
        "num_experts_per_tok": recipe.routed_k,
        "router_aux_loss_coef": recipe.balance,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id,
        "pad_token_id": getattr(c, "pad_token_id", None),
    }
    if not recipe.shared:
        return MixtralConfig(
            **common,
            architectures=["MixtralForCausalLM"],
            intermediate_size=neurons,
            num_local_experts=recipe.experts,
            head_dim=getattr(c, "head_dim", None),
        )
    return Qwen2MoeConfig(
        **common,
        architectures=["Qwen2MoeForCausalLM"],
        intermediate_size=c.intermediate_size,
        moe_intermediate_size=neurons,
        shared_expert_intermediate_size=recipe.shared * neurons,
        num_experts=recipe.experts - recipe.shared,
        norm_topk_prob=True,
        qkv_bias=False,
    )


def routed_count(config: PretrainedConfig) -> int:
    """The routed experts per MoE block of a Mixtral or Qwen2-MoE config."""
    return int(getattr(config, "num_local_experts", None) or config.num_experts)


def active_count(config: PretrainedConfig) -> int:
    """The experts a token uses per MoE block of a Mixtral or Qwen2-MoE config: its routed top k and the shared ones
    (Qwen2-MoE's `num_experts_per_tok` counts only the routed)."""
    return int(config.num_experts_per_tok) + shared_count(config)


def _split(block: nn.Module, assignment: np.ndarray, experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A dense block's MLP as `experts` stacked gated MLPs by its neurons' assignment: (E, 2m, d) gate and up
    projections, (E, d, m) down projections."""
    neurons = [np.flatnonzero(assignment == e) for e in range(experts)]
    gate, up, down = (block.get_parameter(f"mlp.{name}.weight") for name in ("gate_proj", "up_proj", "down_proj"))
    return torch.stack([torch.cat([gate[n], up[n]]) for n in neurons]), torch.stack([down[:, n] for n in neurons])


def _mlp_inputs(base: ModelHandle, ids: np.ndarray) -> list[torch.Tensor]:
    """Each dense block's MLP input on the token ids (sequences, N), as (sequences·N, d)."""
    seen: list[torch.Tensor] = []
    mlps = [submodule(block, "mlp", nn.Module) for block in blocks(base)]
    with torch.inference_mode(), observing(pre={mlp: lambda m, inputs: seen.append(inputs[0]) for mlp in mlps}):
        base.model(input_ids=torch.from_numpy(ids))
    return [x.reshape(-1, x.shape[-1]) for x in seen]


def shared_split(
    base: ModelHandle, assignment: np.ndarray, recipe: Recipe, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The split the MoE is built on, (layers, intermediate) an expert for each neuron, and its shared experts (layers,
    recipe.shared). Without shared experts, the MoEfication's `assignment` as it is. With S, in each block the S·m
    neurons (m per expert) that carry the most of the dense MLP's output energy, mean aₙ²·‖dₙ‖² over the dense
    model's MLP inputs on the token ids (sequences, N), make the shared expert (experts E − S to E − 1), whatever
    token comes: the massive activation's neurons among them; the others are split into E − S equal experts by the
    MoEfication's clustering of their co-activation on the same tokens."""
    if not recipe.shared:
        return assignment, np.zeros((base.n_layers, 0), dtype=np.int64)
    routed = recipe.experts - recipe.shared
    size = assignment.shape[1] // recipe.experts
    split = np.empty_like(assignment)
    for layer, (block, x) in enumerate(zip(blocks(base), _mlp_inputs(base, ids), strict=True)):
        mlp = submodule(block, "mlp", nn.Module)
        with torch.inference_mode():
            a = getattr(mlp, "act_fn")(mlp.get_submodule("gate_proj")(x)) * mlp.get_submodule("up_proj")(x)
            energy = a.float().pow(2).mean(0) * mlp.get_parameter("down_proj.weight").float().pow(2).sum(0)
        order = energy.argsort(descending=True, stable=True).numpy()
        kept, others = order[: recipe.shared * size], np.sort(order[recipe.shared * size :])
        split[layer, kept] = routed + np.arange(len(kept)) // size
        gram = coactivation(a[:, torch.from_numpy(others)].float())
        split[layer, others] = balanced_kmeans(gram, routed, recipe.seed).numpy()
    return split, np.tile(np.arange(routed, recipe.experts), (base.n_layers, 1))


def convert(base: ModelHandle, assignment: np.ndarray, recipe: Recipe, shared: np.ndarray) -> PreTrainedModel:
    """The dense model as an MoE: `assignment` (layers, intermediate) gives each neuron its expert, `shared`
    (layers, recipe.shared) the experts made the shared one; the routers keep the family's initialisation (seeded by
    the recipe, drawn in a process of its own: runtime.initialised), everything else is the dense model's."""
    moe_config = config(base, recipe)
    routers = initial_weights(moe_config, recipe.seed, base.dtype, ROUTER)
    moe = AutoModelForCausalLM.from_config(moe_config, dtype=base.dtype).eval()
    dense = base.model.state_dict()
    state = moe.state_dict() | routers
    for name in state:
        if ".mlp." not in name:
            state[name] = dense[name]
    for layer, block in enumerate(blocks(base)):
        gate_up, down = _split(block, assignment[layer], recipe.experts)
        routed = np.setdiff1d(np.arange(recipe.experts), shared[layer])
        prefix = f"model.layers.{layer}.mlp."
        state[prefix + "experts.gate_up_proj"] = gate_up[routed]
        state[prefix + "experts.down_proj"] = down[routed] * recipe.routed_k
        if recipe.shared:
            gate, up = gate_up[shared[layer]].chunk(2, dim=1)
            state[prefix + "shared_expert.gate_proj.weight"] = gate.reshape(-1, gate.shape[-1])
            state[prefix + "shared_expert.up_proj.weight"] = up.reshape(-1, up.shape[-1])
            state[prefix + "shared_expert.down_proj.weight"] = torch.cat(list(down[shared[layer]] * 2), dim=1)
            state[prefix + "shared_expert_gate.weight"] = torch.zeros_like(state[prefix + "shared_expert_gate.weight"])
    moe.load_state_dict(state)
    return moe


def moe_blocks(moe: nn.Module) -> list[nn.Module]:
    """The MoE blocks (`mlp` of each decoder layer) of a Mixtral or Qwen2-MoE model."""
    return [submodule(layer, "mlp", nn.Module) for layer in submodule(moe, "model.layers", nn.ModuleList)]


def _routers(moe: nn.Module) -> list[nn.Module]:
    return [submodule(mlp, "gate", nn.Module) for mlp in moe_blocks(moe)]


@contextmanager
def at_k(moe: PreTrainedModel, k: int) -> Iterator[None]:
    """Within the block (this context only), k experts of `moe` are active per token instead of its configured
    number: its S shared ones and the top k − S of the routed ones, by the router's own rule (softmax over the
    routed experts, top k − S, renormalised)."""
    shared, available = shared_count(moe.config), routed_count(moe.config)
    if not shared < k <= shared + available:
        raise LmscopeError(
            f"k = {k}: choose from {shared + 1} to {shared + available} ({shared} shared experts, {available} routed)."
        )
    routed = k - shared

    def top(module: nn.Module, args: tuple, output: tuple) -> tuple:
        logits = output[0]
        weights, experts = F.softmax(logits.float(), dim=-1).topk(routed, dim=-1)
        return logits, weights / weights.sum(dim=-1, keepdim=True), experts

    with observing(forward={router: top for router in _routers(moe)}):
        yield


def training_ids(base: ModelHandle, tokens: int) -> np.ndarray:
    """(sequences, SEQUENCE) token ids, `tokens` at most: the corpus after its held-out sentences, then Python's
    documentation."""
    documentation = " ".join(pydoc_data.topics.topics[name] for name in sorted(pydoc_data.topics.topics))
    text = " ".join(clean(s) for s in corpus.sentences()[EVAL_SENTENCES:]) + " " + documentation
    ids = base.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
    return np.asarray(ids[: len(ids) // SEQUENCE * SEQUENCE], dtype=np.int64).reshape(-1, SEQUENCE)


def held_out_ids(base: ModelHandle) -> list[list[int]]:
    """The corpus's first EVAL_SENTENCES sentences, each tokenized alone: what the loss is measured on."""
    return [base.tokenizer(clean(s))["input_ids"] for s in corpus.sentences()[:EVAL_SENTENCES]]


def _padded(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequences as one right-padded batch of ids, and its attention mask."""
    longest = max(len(ids) for ids in sequences)
    ids = torch.tensor([s + [0] * (longest - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (longest - len(s)) for s in sequences])
    return ids, mask


def mean_nll(model: nn.Module, sequences: list[list[int]]) -> float:
    """Mean per-token NLL (nats) of the sequences under `model` (a transformers causal LM), in one padded batch."""
    ids, mask = _padded(sequences)
    with torch.inference_mode():
        log_probs = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
    nll = -log_probs.gather(2, ids[:, 1:, None])[..., 0]
    counted = mask[:, 1:].bool()
    return float(nll[counted].mean())


def load_cv(moe: nn.Module, sequences: list[list[int]]) -> np.ndarray:
    """Per MoE block: the coefficient of variation of its experts' load (their shares of the tokens' top-k slots)
    over the sequences; 0 when every expert gets the same share."""
    ids, mask = _padded(sequences)
    chosen: list[torch.Tensor] = []
    routers = _routers(moe)
    with torch.inference_mode(), observing(forward={r: lambda m, a, out: chosen.append(out[2]) for r in routers}):
        moe(input_ids=ids, attention_mask=mask)
    real = mask.reshape(-1).bool()
    n_experts = int(routers[0].get_parameter("weight").shape[0])
    return np.asarray([expert_balance(experts[real].numpy(), n_experts).cv for experts in chosen])


def _balance(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The Switch load-balancing loss E·Σᵢ fᵢ·Pᵢ over a batch's (N, E) router logits, divided by k: 1 when the
    tokens' top-k choices and router probabilities are spread evenly over the experts."""
    n_experts = logits.shape[-1]
    probs = logits.float().softmax(-1)
    chosen = F.one_hot(probs.topk(k, dim=-1).indices, n_experts).float().sum(1).mean(0) / k
    return n_experts * (chosen * probs.mean(0)).sum()


def oracle_choice(norms: torch.Tensor, k: int) -> torch.Tensor:
    """(N, E) targets for the router: 1 for each token's k experts of largest output norm (`norms`), else 0."""
    return torch.zeros_like(norms).scatter_(1, norms.topk(k, dim=-1).indices, 1.0)


def choice_weights(y: torch.Tensor) -> torch.Tensor:
    """(N,) the weight of each token's routing lesson in the layer-wise fit: 1 plus its share of the dense MLP
    outputs' energy, ||y||² / mean ||y||², the weight the squared error gives it. A token whose output is huge (the
    massive activation the first token gets in SmolLM2's layer 11, 25,800 against about 80 elsewhere) must reach
    the expert holding the neurons that make it, or the model loses its attention sink: taught unweighted (one
    token in 128), the router missed it, leaving that layer's relative error at 0.98."""
    energy = y.float().pow(2).sum(-1)
    return 1 + energy / energy.mean()


class _Intercept(nn.Module):
    """Stands in for a block's MLP: keeps the input it is given and returns zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = torch.empty(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return torch.zeros_like(x)


def _before_mlp(block: nn.Module, hidden: torch.Tensor, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual stream that the block adds its MLP's output to, and the MLP's input, from one call of the block
    with its MLP left out (a pre-norm block returns residual + mlp(norm(residual))). The block is the build's own
    model under training, which no other call sees, so its MLP is swapped for that call."""
    mlp, stand_in = submodule(block, "mlp", nn.Module), _Intercept()
    block.mlp = stand_in
    try:
        residual = block_output(block(hidden, *args[1:], **kwargs))
    finally:
        block.mlp = mlp
    return residual, stand_in.seen


def fit_layers(
    base: ModelHandle, moe: PreTrainedModel, ids: np.ndarray, recipe: Recipe, on_layer: Callable[[], None]
) -> np.ndarray:
    """Fit each MoE MLP to the dense one on the inputs the converted blocks before it produce; returns each layer's
    relative squared error on its inputs afterwards."""
    calls = block_calls(base, ids)
    hidden = calls[0][0][0]
    generator = torch.Generator().manual_seed(recipe.seed)
    errors = []
    layers = submodule(moe, "model.layers", nn.ModuleList)
    for layer, (block, dense) in enumerate(zip(layers, blocks(base), strict=True)):
        args, kwargs = calls[layer]
        mlp = submodule(block, "mlp", nn.Module)
        router, experts = mlp.get_parameter("gate.weight"), submodule(mlp, "experts", nn.Module)
        trained = [p for name, p in mlp.named_parameters() if not name.startswith("gate.")]  # experts, shared expert
        with torch.inference_mode():
            residual, seen = _before_mlp(block, hidden, args, kwargs)
            x = seen.reshape(-1, seen.shape[-1]).clone()
            y = submodule(dense, "mlp", nn.Module)(x).clone()
        scale = y.pow(2).sum(-1).mean()
        if recipe.layer_steps:
            optimizer = torch.optim.Adam([{"params": [router], "lr": ROUTER_LR}, {"params": trained, "lr": EXPERT_LR}])
            mlp.requires_grad_(True)
            for _ in range(recipe.layer_steps):
                rows = torch.randint(0, len(x), (LOCAL_BATCH,), generator=generator)
                xb, yb = x[rows], y[rows]
                logits = F.linear(xb, router)
                with torch.no_grad():
                    norms = expert_outputs(experts, xb).norm(dim=-1).T  # (N, E)
                    oracle = oracle_choice(norms, recipe.routed_k)
                    weight = choice_weights(yb)
                choice = -(oracle / recipe.routed_k * logits.float().log_softmax(-1)).sum(-1)
                choice_loss = (weight * choice).sum() / weight.sum()
                error = (mlp(xb[None])[0] - yb).pow(2).sum(-1).mean() / scale
                loss = error + CHOICE_WEIGHT * choice_loss + recipe.balance * _balance(logits, recipe.routed_k)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            mlp.requires_grad_(False)
        with torch.inference_mode():
            fitted = mlp(x[None])[0]
            errors.append(float((fitted - y).pow(2).sum(-1).mean() / scale))
            hidden = residual + fitted.reshape(residual.shape)
        on_layer()
    return np.asarray(errors)


def dense_hidden(base: ModelHandle, ids: np.ndarray) -> torch.Tensor:
    """The dense model's last hidden states (after its final norm) for each of the sequences: computed once per
    sequence, so that a distillation step pays only the dense model's output layer for its targets, not its body."""
    with torch.inference_mode():
        return torch.cat(
            [
                base.model.base_model(input_ids=torch.from_numpy(ids[start : start + DISTIL_BATCH])).last_hidden_state
                for start in range(0, len(ids), DISTIL_BATCH)
            ]
        )


def dense_log_probs(base: ModelHandle, hidden: torch.Tensor) -> torch.Tensor:
    """The dense model's next-token log-probabilities from its last hidden states (its output layer alone)."""
    return head_logits(base, readout(base)[1], hidden).log_softmax(-1)


def distil(
    base: ModelHandle, moe: PreTrainedModel, ids: np.ndarray, recipe: Recipe, on_step: Callable[[int], None]
) -> tuple[np.ndarray, np.ndarray]:
    """Train every router and expert to match the dense model's next-token distributions (KL) with the
    load-balancing loss; returns the KL and the balance loss at each step. on_step(steps done) after each."""
    if not recipe.steps:
        return np.zeros(0), np.zeros(0)
    parameters = [p for mlp in moe_blocks(moe) for p in mlp.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=DISTIL_LR)
    generator = torch.Generator().manual_seed(recipe.seed + 1)
    kl, balance = [], []
    moe.requires_grad_(False)
    for p in parameters:
        p.requires_grad_(True)
    batches = torch.randint(0, len(ids), (recipe.steps, DISTIL_BATCH), generator=generator)
    visited = batches.unique()  # sorted
    dense = dense_hidden(base, ids[visited.numpy()])
    for step, rows in enumerate(batches):
        batch = torch.from_numpy(ids[rows.numpy()])
        target = dense_log_probs(base, dense[torch.searchsorted(visited, rows)])
        routed: list[torch.Tensor] = []
        with observing(forward={router: lambda m, a, out: routed.append(out[0]) for router in _routers(moe)}):
            log_probs = moe(input_ids=batch).logits.float().log_softmax(-1)
        step_kl = (target.exp() * (target - log_probs)).sum(-1).mean()
        step_balance = torch.stack([_balance(logits, recipe.routed_k) for logits in routed]).mean()
        optimizer.zero_grad()
        (step_kl + recipe.balance * step_balance).backward()
        optimizer.step()
        kl.append(step_kl.item())
        balance.append(step_balance.item())
        on_step(step + 1)
    moe.requires_grad_(False)
    return np.asarray(kl), np.asarray(balance)


def _active(model: nn.Module, mlp_parameters: int) -> int:
    """Parameters a token passes through: every block's attention and norms, `mlp_parameters` per MLP, the final
    norm and the output head (the input embedding is a lookup)."""
    layers = submodule(model, "model.layers", nn.ModuleList)
    attention = sum(p.numel() for block in layers for n, p in block.named_parameters() if not n.startswith("mlp."))
    head = model.get_parameter("lm_head.weight").numel()
    return attention + len(layers) * mlp_parameters + model.get_parameter("model.norm.weight").numel() + head


def _seconds_per_token(mlp: nn.Module, x: torch.Tensor) -> float:
    """The fastest of five timed calls of `mlp` on the tokens x (1, N, d), per token."""
    times = []
    with torch.inference_mode():
        mlp(x)
        for _ in range(5):
            started = time.perf_counter()
            mlp(x)
            times.append(time.perf_counter() - started)
    return min(times) / x.shape[1]


def costs(base: ModelHandle, moe: PreTrainedModel, ids: np.ndarray, ks: np.ndarray) -> Costs:
    """Parameters and compute of the dense model and the MoE with k experts active (shared ones included) for each k
    of ks; the MLP times are measured on real hidden states (the middle block's MLP inputs)."""
    middle = base.n_layers // 2
    dense_mlp, moe_mlp = submodule(blocks(base)[middle], "mlp", nn.Module), moe_blocks(moe)[middle]
    x = _mlp_inputs(base, ids.reshape(1, -1)[:, :TIMED_TOKENS])[middle][None]
    expert = sum(p[0].numel() for p in submodule(moe_mlp, "experts", nn.Module).parameters())
    router = moe_mlp.get_parameter("gate.weight").numel()
    shared = sum(p.numel() for name, p in moe_mlp.named_parameters() if name.startswith("shared_expert"))
    routed_k = ks - shared_count(moe.config)
    moe_seconds = []
    for k in ks:
        with at_k(moe, int(k)):
            moe_seconds.append(_seconds_per_token(moe_mlp, x))
    return Costs(
        ks=ks,
        dense_parameters=base.n_parameters,
        moe_parameters=sum(p.numel() for p in moe.parameters()),
        dense_active=_active(base.model, sum(p.numel() for p in dense_mlp.parameters())),
        moe_active=np.asarray([_active(moe, router + shared + int(k) * expert) for k in routed_k], dtype=np.int64),
        dense_mlp_seconds=_seconds_per_token(dense_mlp, x),
        moe_mlp_seconds=np.asarray(moe_seconds),
    )


def _nll_at_ks(moe: PreTrainedModel, sequences: list[list[int]], ks: np.ndarray) -> np.ndarray:
    values = []
    for k in ks:
        with at_k(moe, int(k)):
            values.append(mean_nll(moe, sequences))
    return np.asarray(values)


def train(
    base: ModelHandle, assignment: np.ndarray, recipe: Recipe, on_progress: Progress | None = None
) -> tuple[PreTrainedModel, Update, TrainingLog]:
    """Convert the dense model (`base`, a private copy: it is only read) by the recipe and train it; returns the MoE
    kept (its update at the recipe's rank), that update, and what the build measured. Its shared expert (if any)
    is chosen on the first LOCAL_BATCH training tokens (shared_split). on_progress(done, total) counts layers fitted and
    distillation steps."""
    recipe.check()
    started = time.perf_counter()
    ids, held_out = training_ids(base, recipe.tokens), held_out_ids(base)
    ks = active_ks(recipe.experts, recipe.shared, recipe.top_k)
    at = list(ks).index(recipe.top_k)
    total, done = base.n_layers + recipe.steps, [0]
    curve: list[tuple[float, int, float]] = []  # (build seconds, distillation steps, held-out NLL at the trained k)

    def advance() -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], total)

    def elapsed() -> float:
        return time.perf_counter() - started

    def measure(steps: int) -> None:
        curve.append((elapsed(), steps, mean_nll(moe, held_out)))

    def after_step(steps: int) -> None:
        if steps % EVAL_EVERY == 0 and steps < recipe.steps:  # the last is measured after the loop
            measure(steps)
        advance()

    assignment, shared = shared_split(base, assignment, recipe, ids[: LOCAL_BATCH // SEQUENCE])
    moe = convert(base, assignment, recipe, shared)
    before = trained_weights(moe)
    converted_at = elapsed()
    untrained, untrained_cv = _nll_at_ks(moe, held_out, ks), load_cv(moe, held_out)
    curve.append((converted_at, -1, float(untrained[at])))
    layer_error = fit_layers(base, moe, ids, recipe, advance)
    if recipe.steps:
        measure(0)
    kl, balance = distil(base, moe, ids, recipe, after_step)
    measure(recipe.steps)
    update = Update(recipe, base.fingerprint, VERSION, assignment, shared, extract(before, moe, recipe.rank))
    moe.load_state_dict(before, strict=False)
    apply(moe, update.tensors)  # the model kept is the converted one plus the update, as rebuilt from its file
    trained = _nll_at_ks(moe, held_out, ks)
    seconds, steps, nll = (np.asarray(column) for column in zip(*curve, strict=True))
    log = TrainingLog(
        recipe=recipe,
        base_fingerprint=base.fingerprint,
        train_tokens=int(ids.size),
        eval_tokens=sum(len(s) - 1 for s in held_out),
        layer_error=layer_error,
        kl=kl,
        balance=balance,
        seconds=0.0,
        dense_nll=mean_nll(base.model, held_out),
        untrained_nll=untrained,
        trained_nll=trained,
        costs=costs(base, moe, ids, ks),
        curve_seconds=seconds.astype(np.float64),
        curve_steps=steps.astype(np.int64),
        curve_nll=nll.astype(np.float64),
        untrained_cv=untrained_cv,
        trained_cv=load_cv(moe, held_out),
    )
    log.seconds = time.perf_counter() - started
    return moe, update, log
