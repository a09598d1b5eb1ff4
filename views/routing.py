"""The expert routing view: which experts each token reaches, load balance, and loss against k."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import plotly.graph_objects as go

from probes import moe_loss, moe_trained, moe_trained_store, moefication, routing
from probes.moe_equation import is_sparse
from results.moe_trained import MAX_BALANCE, MAX_LAYER_STEPS, MAX_RANK, MAX_STEPS, Recipe, TrainingLog
from results.moefication import EXPERT_COUNTS, ROUTERS, Setting
from results.routing import LayerRouting, RoutingResult
from runtime.builtin import TRAINED_MOE
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from views.api import Model, Result, call, loaded, progress_bar
from views.registry import Command, Figure, Run, View, register
from viz.moe_trained import capacity_figure, cost_rows, training_figure
from viz.routing import load_figure, loss_by_k_figure, routing_heatmap


def heatmap(result: RoutingResult, layer: int | None = None) -> go.Figure:
    """Each token's router probabilities over the experts at one router (default: the middle one)."""
    return routing_heatmap(
        result.router(len(result.layers) // 2 if layer is None else layer), result.tokens, result.model
    )


def run(
    model: Model,
    text: str,
    *,
    setting: Setting | None = None,
    cache: ResultCache | None = None,
    progress: bool = True,
) -> Result[RoutingResult]:
    """Every router's probabilities and chosen experts on the text (`setting`: experts, k and router of the MoE
    derived from SmolLM2, its defaults if None; a real MoE routes by itself); its figure is one router's
    probabilities: `.figure(layer=3)`."""

    def probe(handle: ModelHandle, store: ResultCache, _: object) -> Cached[RoutingResult]:
        derived = handle.name == moefication.DERIVED_NAME
        if setting is not None and not derived:
            raise LmscopeError("A setting (experts, k, router) is for the derived MoE (smollm2-135m-moefied) only.")
        return routing.run(handle, text, store, (setting or Setting()) if derived else None)

    return call(model, probe, heatmap, cache, progress, "routing")


def _setting(run: Run) -> Setting | None:
    """The derived MoE's routing setting from the options (a real MoE routes by itself)."""
    if run.handle.name != moefication.DERIVED_NAME:
        return None
    return Setting(run.integer("experts"), run.integer("k"), run.string("router"))


def _router(run: Run) -> tuple[RoutingResult, LayerRouting]:
    result = run.keep("routing", routing.run(run.handle, run.text, run.cache, _setting(run)))
    return result, result.router(run.integer("layer"))


def _draw_routing(run: Run) -> go.Figure:
    result, router = _router(run)
    return routing_heatmap(router, result.tokens, result.model)


def _draw_load(run: Run) -> go.Figure:
    result, router = _router(run)
    return load_figure(router, routing.balance(router), result.model)


def _draw_loss_by_k(run: Run) -> go.Figure:
    if is_sparse(run.handle, 0):
        return loss_by_k_figure(run.keep("loss", moe_loss.trained_loss_by_k(run.handle, run.text, run.cache)))
    return loss_by_k_figure(run.keep("loss", moe_loss.loss_by_k(run.handle, run.text, run.cache)))


def _log(run: Run) -> TrainingLog:
    log = moe_trained_store.log_of(run.handle)
    if log is None:
        raise LmscopeError(f"'{run.handle.name}' was not trained by lmscope: choose {TRAINED_MOE.name}.")
    run.results["training"] = log
    return log


def _draw_capacity(run: Run) -> go.Figure:
    return capacity_figure(_log(run), run.handle.name)


def _draw_training(run: Run) -> go.Figure:
    return training_figure(_log(run), run.handle.name)


def _train_arguments(command: argparse.ArgumentParser) -> None:
    default = Recipe()
    command.add_argument(
        "--experts", type=int, default=default.experts, help=f"experts per MLP, one of {EXPERT_COUNTS}"
    )
    command.add_argument("--k", type=int, default=default.top_k, help="active experts per token (shared included)")
    command.add_argument(
        "--shared",
        type=int,
        default=default.shared,
        help="of the k, experts always on as one shared expert (DeepSeekMoE; a Qwen2-MoE), 0 to k − 1",
    )
    command.add_argument(
        "--layer-steps", type=int, default=default.layer_steps, help=f"fitting steps per layer (0 to {MAX_LAYER_STEPS})"
    )
    command.add_argument("--steps", type=int, default=default.steps, help=f"distillation steps (0 to {MAX_STEPS})")
    command.add_argument("--tokens", type=int, default=default.tokens, help="training tokens")
    command.add_argument("--seed", type=int, default=default.seed)
    command.add_argument(
        "--balance",
        type=float,
        default=default.balance,
        help=f"weight of the load-balancing loss (0 to {MAX_BALANCE:g})",
    )
    command.add_argument(
        "--rank",
        type=int,
        default=default.rank,
        help=f"the experts' update kept at this rank (0: in full, to {MAX_RANK})",
    )
    command.add_argument(
        "--export",
        type=Path,
        help="train even if the store has this recipe's MoE, and write its update and training record into this "
        "folder (the build as a small file)",
    )


def _train(args: argparse.Namespace) -> object:
    recipe = Recipe(
        experts=args.experts,
        top_k=args.k,
        layer_steps=args.layer_steps,
        steps=args.steps,
        tokens=args.tokens,
        seed=args.seed,
        balance=args.balance,
        shared=args.shared,
        rank=args.rank,
    )
    recipe.check()
    with progress_bar(
        f"Training the MoE (E = {recipe.experts}, k = {recipe.top_k}, {recipe.shared} shared)", True
    ) as bar:
        if args.export:
            moe_trained_store.export(loaded(TRAINED_MOE.base), recipe, args.export, bar)
            folder = args.export
        else:
            folder = moe_trained_store.stored_or_trained(loaded(TRAINED_MOE.base), recipe, bar)
    log = moe_trained_store.training_log(folder)
    return {
        "folder": str(folder),
        "recipe": dataclasses.asdict(log.recipe),
        "seconds": log.seconds,
        "train_tokens": log.train_tokens,
        "layer_error": log.layer_error,
        "kl": log.kl,
        "balance": log.balance,
        "load_cv_untrained": log.untrained_cv,
        "load_cv_trained": log.trained_cv,
        "curve": {"seconds": log.curve_seconds, "steps": log.curve_steps, "nll": log.curve_nll},
        "ks": log.costs.ks,
        "nll_dense": log.dense_nll,
        "nll_untrained": log.untrained_nll,
        "nll_trained": log.trained_nll,
        "costs": cost_rows(log),
    }


def _arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--model", required=True, help="an MoE: Hugging Face id or local folder, or smollm2-135m-moefied"
    )
    command.add_argument("--text", required=True)
    command.add_argument("--experts", type=int, help=f"derived MoE: experts per MLP, one of {EXPERT_COUNTS} (16)")
    command.add_argument("--k", type=int, help="derived MoE: active experts per token (default 4)")
    command.add_argument("--router", choices=ROUTERS, help="derived MoE: fitted router or oracle (fitted)")


def _print(args: argparse.Namespace) -> object:
    asked = {"experts": args.experts, "top_k": args.k, "router": args.router}
    given = {name: value for name, value in asked.items() if value is not None}
    chosen = Setting(**given)
    done = run(args.model, args.text, setting=chosen if given else None, progress=False)
    handle, result = done.model, done.value
    setting = chosen if handle.name == moefication.DERIVED_NAME else None
    out: dict[str, object] = {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "token_ids": result.token_ids,
        "tokens": result.tokens,
    }
    if setting:
        out["setting"] = dataclasses.asdict(setting)
    routers = []
    for router in result.layers:
        balance = routing.balance(router)
        routers.append(
            {
                "layer": router.layer,
                "router": router.label,
                "module": router.module,
                "kind": router.kind,
                "rule": router.rule,
                "n_experts": router.n_experts,
                "top_k": router.top_k,
                "n_shared": router.n_shared,
                "probs": router.probs,
                "topk_experts": router.experts,
                "topk_weights": router.weights,
                "load": balance.load,
                "cv": balance.cv,
                "load_entropy": balance.entropy,
                "aux_loss": balance.aux_loss,
                "dropped": balance.dropped,
            }
        )
    out["layers"] = routers
    return out


VIEW = register(
    View(
        key="routing",
        title="Expert routing",
        summary="which experts each token reaches, load balance, and loss against k",
        icon="call_split",
        group="Experts",
        page="app_pages/10_Expert_routing.py",
        caption=(
            "A Mixture-of-Experts block has many MLPs (experts) and a router G(x) that sends each token to a few of them: "
            "y = Σ G(x)_i E_i(x). Parameters grow with the experts while the compute per token stays that of k experts "
            "(Shazeer et al. 2017; DeepSeekMoE adds shared experts every token uses)."
        ),
        commands=(
            Command("moe", "Mixture-of-Experts routing of every router on a text", _arguments, _print),
            Command(
                "moe-train",
                "train an MoE from SmolLM2 (or read it from the model store): curve, NLL against k, costs",
                _train_arguments,
                _train,
            ),
        ),
        figures=(
            Figure("moe_routing", _draw_routing, (routing, moefication)),
            Figure("moe_load", _draw_load, (routing, moefication)),
            Figure("moe_loss_by_k", _draw_loss_by_k, (moe_loss,)),
            Figure("moe_capacity", _draw_capacity, (moe_trained,)),
            Figure("moe_training", _draw_training, (moe_trained,)),
        ),
    )
)
