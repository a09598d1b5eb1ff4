"""The CUDA path (skipped without a GPU): the command line's views with the model on the GPU, against the CPU.

In float32 a model on the GPU must print the CPU's numbers up to rounding. In bfloat16 (the default on a GPU) what
the pages teach must stay: the same massive-activation dimensions and sink, losses within a few percent. A cluster
worker places the models it holds on its own GPU. The GPU machine has no browser, so this file uses none of the
suite's fixtures: `make check-cuda` runs it alone. LMSCOPE_TEST_DEVICE=cpu runs the bfloat16 checks on the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from probes import routing
from runtime import cluster_worker, engine, jobs
from runtime.cache import ResultCache
from runtime.cluster import Cluster
from runtime.models import load
from tests.tiny_moe import save_folders
from views.cli import main

DEVICE = os.environ.get("LMSCOPE_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.slow,
]
SMOLLM2 = "smollm2-135m-instruct"
MOEFIED = "smollm2-135m-moefied"
TEXT = "Attention sinks soak up the weight of queries with nowhere else to look, said the lecturer in Paris."
COMMANDS: dict[str, list[str]] = {
    "attention": ["attention", "--model", SMOLLM2, "--text", TEXT, "--layer", "3", "--head", "4", "--logits"],
    "heads": ["heads", "--model", SMOLLM2, "--seq-len", "30"],
    "window": ["window", "--model", SMOLLM2, "--text", TEXT, "--window", "4", "--sinks", "1"],
    "activations": ["activations", "--model", SMOLLM2, "--text", TEXT],
    "ablate": ["ablate", "--model", SMOLLM2, "--text", TEXT],
    "weights": ["weights", "--model", SMOLLM2],
    "prune": ["pruning", "--model", SMOLLM2, "--text", TEXT, "--sparsity", "0.5"],
    "quantize": ["pruning", "--model", SMOLLM2, "--text", TEXT, "--bits", "4"],
    "drop-heads": ["drop-heads", "--model", SMOLLM2, "--text", TEXT, "--seeds", "1"],
    "concepts": ["concepts", "--model", SMOLLM2, "--word", "river"],
    "finetune": ["finetune", "--model", SMOLLM2, "--method", "lora", "--rank", "4", "--steps", "5"],
    "moe": ["moe", "--model", MOEFIED, "--text", TEXT],  # builds the MoEfication on first use
}
UNTIMED = ("seconds", "fingerprint", "device", "dtype")  # keys whose values differ by machine or placement


@contextlib.contextmanager
def placed(device: str, dtype: str, cache: Path, store: Path | None = None) -> Iterator[None]:
    """Within the block this process places models on `device` in `dtype`, caches results in `cache` and, if given,
    keeps models in the model store `store`."""
    values = {"LMSCOPE_DEVICE": device, "LMSCOPE_DTYPE": dtype, "LMSCOPE_CACHE_DIR": str(cache)}
    if store is not None:
        values["LMSCOPE_MODEL_STORE"] = str(store)
    with mock.patch.dict(os.environ, values):
        yield


def run(command: str, device: str, dtype: str, cache: Path, store: Path | None = None) -> dict:
    """What `python -m lmscope COMMAND` prints with the model placed so (in this process), with the model store
    `store` if given (a fresh one trains a fine-tune again instead of reading the stored run)."""
    printed = io.StringIO()
    with placed(device, dtype, cache, store), contextlib.redirect_stdout(printed):
        assert main(COMMANDS[command]) == 0, command
    return json.loads(printed.getvalue())


def differences(a: object, b: object, rtol: float, atol: float, where: str = "") -> list[str]:
    """Where two printed results differ: numbers beyond the tolerances, anything else unequal."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a if not k.endswith(UNTIMED) for d in differences(a[k], b[k], rtol, atol, f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        if a and all(isinstance(x, (int, float)) or x is None for x in a + b):
            x, y = (np.array([math.nan if v is None else v for v in s], dtype=np.float64) for s in (a, b))
            bad = ~np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
            return [f"{where}[{i}]: {x[i]} != {y[i]}" for i in np.flatnonzero(bad)[:3]]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, rtol, atol, f"{where}[{i}]")]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return [] if math.isclose(a, b, rel_tol=rtol, abs_tol=atol) else [f"{where}: {a} != {b}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def near_tie_choices(there: dict, here: dict, rtol: float, atol: float) -> dict:
    """The CPU's printed routing (`here`) with a token's experts taken from the GPU's (`there`) where the CPU's own
    probabilities cannot tell the two choices apart within the tolerances the numbers are compared with (a near-tie:
    either choice is right), and each changed layer's load statistics recomputed from its choices as
    routing.balance does. Only routers that choose by their probabilities (not DeepSeek-V3's biased sigmoid), and
    none that drops tokens."""
    resolved = copy.deepcopy(here)
    for mine, theirs in zip(resolved["layers"], there["layers"]):
        if mine["rule"] not in ("softmax", "norm share") or mine["dropped"]:
            continue
        probs = np.array(mine["probs"], dtype=np.float64)
        chosen, other = np.array(mine["topk_experts"]), np.array(theirs["topk_experts"])
        if chosen.shape != other.shape:
            continue
        for token in np.flatnonzero((chosen != other).any(axis=1)):
            p = probs[token]
            slack = atol + rtol * p.max()
            picked, left = p[other[token]], np.delete(p, other[token])
            # The GPU's experts, best first, are a top k of the CPU's probabilities up to the slack.
            if np.all(picked[:-1] >= picked[1:] - slack) and (left.size == 0 or picked.min() >= left.max() - slack):
                chosen[token] = other[token]
        if not np.array_equal(chosen, np.array(mine["topk_experts"])):
            load = np.bincount(chosen.ravel(), minlength=probs.shape[1]) / chosen.size
            nonzero = load[load > 0]
            mine["topk_experts"], mine["load"] = chosen.tolist(), load.tolist()
            mine["cv"] = float(load.std() / load.mean())
            mine["load_entropy"] = float(-(nonzero * np.log(nonzero)).sum() / np.log(len(load)))
            if mine["aux_loss"] is not None:
                mine["aux_loss"] = float(len(load) * (load * probs.mean(axis=0)).sum())
    return resolved


@pytest.fixture(scope="module")
def on_cpu(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every command's output with the model on the CPU in float32: the reference."""
    cache = tmp_path_factory.mktemp("cpu")
    return {command: run(command, "cpu", "float32", cache) for command in COMMANDS}


@pytest.fixture(scope="module")
def in_bfloat16(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every command's output with the model on DEVICE in bfloat16."""
    cache = tmp_path_factory.mktemp("bf16")
    return {command: run(command, DEVICE, "bfloat16", cache) for command in COMMANDS}


@pytest.mark.skipif(DEVICE == "cpu", reason="compares the GPU with the CPU")
@pytest.mark.parametrize("command", list(COMMANDS))
def test_float32_on_the_gpu_prints_the_cpus_numbers(command: str, on_cpu: dict[str, dict], tmp_path: Path) -> None:
    # The fine-tune trains again in a fresh model store (the CPU's run is stored under the same fingerprint).
    there = run(command, DEVICE, "float32", tmp_path, tmp_path / "store" if command == "finetune" else None)
    here = on_cpu[command]
    if command == "moe":  # on this text 43 of the 600 k-th experts are within 0.2% of the next one, one within 9e-6
        here = near_tie_choices(there, here, rtol=2e-3, atol=2e-4)
    # Training and the greedy orders compound rounding; the single passes agree far closer than this.
    assert differences(there, here, rtol=2e-3, atol=2e-4) == []


def test_a_gpu_model_says_where_it_is(tmp_path: Path) -> None:
    with placed(DEVICE, "auto", tmp_path):
        handle = load(SMOLLM2)
    assert handle.device.type == DEVICE
    assert handle.dtype == (torch.bfloat16 if DEVICE == "cuda" else torch.float32)
    assert all(p.device.type == DEVICE for p in handle.model.parameters())


def _nulls(value: object, where: str = "") -> set[str]:
    """Where a printed result holds null (a NaN or an infinity before it was printed)."""
    if isinstance(value, dict):
        return {n for k, v in value.items() for n in _nulls(v, f"{where}.{k}")}
    if isinstance(value, list):
        return {n for i, v in enumerate(value) for n in _nulls(v, f"{where}[{i}]")}
    return {where} if value is None else set()


def _peaks(printed: dict) -> np.ndarray:
    """The largest |activation| of each layer, as `activations` prints it."""
    return np.array([layer["max_abs"] for layer in printed["layers"]], dtype=np.float64)


def _massive_dims(printed: dict) -> set[int]:
    return {entry["dim"] for entry in printed["massive"]}


def test_bfloat16_keeps_what_the_pages_teach(on_cpu: dict[str, dict], in_bfloat16: dict[str, dict]) -> None:
    for command in COMMANDS:  # the same fields, and no NaN or infinity where float32 had a number
        assert in_bfloat16[command].keys() == on_cpu[command].keys(), command
        assert _nulls(in_bfloat16[command]) <= _nulls(on_cpu[command]), command
    half, full = in_bfloat16["activations"], on_cpu["activations"]
    assert _massive_dims(half) == _massive_dims(full) != set()
    assert np.allclose(_peaks(half), _peaks(full), rtol=0.1)
    sinks = [np.mean(printed["attention"]["sink_share"][3:], axis=1) for printed in (in_bfloat16, on_cpu)]
    assert np.allclose(*sinks, atol=0.03)
    for command in ("prune", "quantize"):
        assert math.isclose(in_bfloat16[command]["nll_base"], on_cpu[command]["nll_base"], rel_tol=0.03)
    assert in_bfloat16["finetune"]["loss_heldout"][-1] < in_bfloat16["finetune"]["loss_heldout"][0]


def test_float16_runs_smollm2(tmp_path: Path) -> None:
    printed = run("activations", DEVICE, "float16", tmp_path)
    assert np.isfinite(_peaks(printed)).all()


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    with placed("cpu", "float32", tmp_path_factory.mktemp("tiny-cache")):
        tokenizer = load(SMOLLM2).tokenizer
    return save_folders(tokenizer, tmp_path_factory.mktemp)


@pytest.mark.skipif(DEVICE == "cpu", reason="compares the GPU with the CPU")
def test_tiny_moe_of_every_family_routes_the_same_on_the_gpu(tiny_folders: dict[str, Path], tmp_path: Path) -> None:
    for family, folder in sorted(tiny_folders.items()):
        results = []
        for device in ("cpu", DEVICE):
            with placed(device, "float32", tmp_path / device / family):
                handle = load(str(folder))
                results.append(routing.run(handle, TEXT, ResultCache(tmp_path / device / family)).value)
        for here, there in zip(*(r.layers for r in results)):
            assert (here.experts == there.experts).mean() > 0.99, family  # a near-tie may flip one token's choice
            assert np.allclose(here.probs, there.probs, atol=1e-4), family


def test_a_cluster_worker_places_its_models_on_its_gpu(tmp_path: Path) -> None:
    with placed(DEVICE, "bfloat16", tmp_path / "worker"):  # what the worker processes inherit
        cluster = Cluster.start_local(1)
    try:
        replaced = jobs.install(engine.executor_for(cluster))
        try:
            with placed("cpu", "bfloat16", tmp_path / "dashboard"):  # the dashboard holds its copy on the CPU
                assert main(COMMANDS["activations"]) == 0
        finally:
            jobs.install(replaced)
        held = cluster.client.run(lambda: [(str(h.device), str(h.dtype)) for h in cluster_worker._held.values()])
        assert [placement[0].split(":")[0] for placement in next(iter(held.values()))] == [DEVICE]
        assert sum(n for counts in cluster.client.run(cluster_worker.computed).values() for n in counts.values()) == 1
    finally:
        cluster.close()
