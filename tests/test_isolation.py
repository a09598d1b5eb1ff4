"""Sessions share one loaded model: every kind of probe, run at once in threads on the same handles, gives exactly
what it gives alone, and no hook is ever left on a shared model's modules."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from probes import (
    ablation,
    activations,
    attention,
    attribution,
    corpus,
    lens,
    moe_equation,
    moe_loss,
    neurons,
    pruning,
    routing,
    sink_effect,
    structured,
)
from probes.nll import token_nll
from probes.residual import block_output, blocks, hooked_blocks
from probes.text import encode
from results.activations import Thresholds
from results.moefication import Setting
from results.pruning import Compression
from runtime.cache import ResultCache
from runtime.handle import ModelHandle
from runtime.hooks import observing
from tests.conftest import ROOT
from tests.helpers import assert_same

TEXTS = (
    "The quick brown fox jumps over the lazy dog. Then it ran home.",
    "Attention sinks soak up the weight of queries with nowhere else to look.",
)
SENTENCES = corpus.sentences()[:6]
# The compressions (a model copy each, seconds of scoring) run on one text each: still two copies at once.
ONE_TEXT = {"pruning": 0, "calibrated pruning": 1}


def _tasks(
    smollm2: ModelHandle, moefied: ModelHandle, trained: ModelHandle, text: str, cache: ResultCache
) -> dict[str, Callable]:
    """One call of every probe kind on the shared handles."""
    ids = encode(smollm2, text, 512).token_ids
    return {
        "nll": lambda: token_nll(smollm2, ids),
        "attention": lambda: attention.run(smollm2, text, cache).value,
        "activations": lambda: activations.run(smollm2, text, cache).value,
        "lens": lambda: lens.run(smollm2, text, cache, [507]).value,
        "sink norms": lambda: sink_effect.norms(smollm2, text, cache).value,
        "attribution": lambda: attribution.run(smollm2, ids.tolist(), len(ids) - 2, int(ids[-1]), cache).value,
        "block output": lambda: block_output(smollm2, ids, 5),
        "neurons": lambda: neurons.run(smollm2, [text, *SENTENCES[:3]], cache).value,
        "ablation": lambda: ablation.run(smollm2, text, Thresholds(), cache, SENTENCES).value,
        "window": lambda: structured.window_sweep(smollm2, text, [2, 4], 1, cache).value,
        "patterns": lambda: (
            structured.pattern_sweep(
                smollm2, text, ["dilated", "block"], [3], 1, structured.Structure(2, (5,), 1, 0), cache
            ).value
        ),
        "masks": lambda: structured.mask_view(smollm2, text, 3, structured.Structure(2, (5,), 1, 0), 1, cache).value,
        "routing": lambda: routing.run(moefied, text, cache, Setting(8, 2, "oracle")).value,
        "routing default": lambda: routing.run(moefied, text, cache).value,
        "trained routing": lambda: routing.run(trained, text, cache).value,
        "trained loss by k": lambda: moe_loss.trained_loss_by_k(trained, text, cache).value,  # routers overridden
        "equation": lambda: moe_equation.run(trained, text, 3, 2, cache).value,
        "pruning": lambda: pruning.tradeoff(smollm2, text, SENTENCES[:2], [0.5], [], cache, patterns=[]).value,
        "calibrated pruning": lambda: (
            pruning.tradeoff(
                smollm2, text, SENTENCES[:2], [0.5], [], cache, methods=["wanda"], patterns=[], calibration=(2, 32)
            ).value
        ),
    }


def _hooks(handle: ModelHandle) -> int:
    """Hooks on the model's modules other than transformers' own output recorders (installed when the model is
    loaded, and inert outside a call that asks for output_attentions or output_hidden_states)."""
    return sum(
        getattr(hook, "__name__", "") != "output_capturing_hook"
        for module in handle.model.modules()
        for hooks in (module._forward_hooks, module._forward_pre_hooks)
        for hook in hooks.values()
    )


def test_transformers_records_outputs_through_hooks_installed_at_load(smollm2: ModelHandle) -> None:
    assert smollm2.model._output_capturing_hooks_installed


def test_a_call_observer_hears_a_blocks_keyword_inputs_in_its_own_context_only(smollm2: ModelHandle) -> None:
    """`observing(calls=...)` (how a compression records each block's call) hears the block's positional and keyword
    inputs during its own pass, registers nothing on the module, and is deaf to a pass in another thread."""
    block = blocks(smollm2)[3]
    ids = encode(smollm2, "Heard once, here only.", 64).token_ids
    heard: list[tuple[tuple, dict]] = []
    with observing(calls={block: lambda module, args, kwargs: heard.append((args, kwargs))}):
        with ThreadPoolExecutor(1) as pool:
            pool.submit(token_nll, smollm2, ids).result()  # another context: not heard
        assert heard == []
        token_nll(smollm2, ids)
    assert len(heard) == 1 and heard[0][0][0].shape[:2] == (1, len(ids))
    assert "position_embeddings" in heard[0][1] and _hooks(smollm2) == 0


@pytest.fixture
def hook_watch(smollm2: ModelHandle, moefied: ModelHandle, trained_moe: ModelHandle) -> Iterator[list[int]]:
    """Counts of hooks found on the shared models' modules, sampled every few milliseconds while a test runs."""
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.005):
            seen.append(sum(_hooks(handle) for handle in (smollm2, moefied, trained_moe)))

    watcher = threading.Thread(target=watch)
    watcher.start()
    yield seen
    stop.set()
    watcher.join()


@pytest.mark.slow  # every probe twice: alone, then all at once
def test_every_probe_at_once_equals_each_alone(
    smollm2: ModelHandle, moefied: ModelHandle, trained_moe: ModelHandle, tmp_path: Path, hook_watch: list[int]
) -> None:
    def tasks(i: int, cache: ResultCache) -> dict[str, Callable]:
        every = _tasks(smollm2, moefied, trained_moe, TEXTS[i], cache)
        return {name: task for name, task in every.items() if ONE_TEXT.get(name, i) == i}

    alone = {}
    for i, text in enumerate(TEXTS):
        alone |= {(name, text): task() for name, task in tasks(i, ResultCache(tmp_path / f"alone-{i}")).items()}
    for name, task in tasks(0, ResultCache(tmp_path / "alone-0")).items():
        assert_same(task(), alone[(name, TEXTS[0])], f"{name}, read back from the cache")
    together = {  # every task at once, each in its own thread, with empty caches so that all of them compute
        (name, text): task
        for i, text in enumerate(TEXTS)
        for name, task in tasks(i, ResultCache(tmp_path / f"together-{i}")).items()
    }
    with ThreadPoolExecutor(len(together)) as pool:
        futures = {key: pool.submit(task) for key, task in together.items()}
        results = {key: future.result(600) for key, future in futures.items()}
    for key, value in results.items():
        assert_same(value, alone[key], f"{key}")
    assert hook_watch and max(hook_watch) == 0


def test_a_stopping_pass_ends_only_its_own_call(smollm2: ModelHandle) -> None:
    """block_output ends its pass early by raising inside a hook; passes in other threads never see it."""
    ids = encode(smollm2, TEXTS[0], 512).token_ids
    expected = token_nll(smollm2, ids)
    layer_expected = block_output(smollm2, ids, 3)
    stops, losses = [], []
    with ThreadPoolExecutor(6) as pool:
        for _ in range(12):  # interleaved, so that passes of both kinds overlap
            stops.append(pool.submit(block_output, smollm2, ids, 3))
            losses.append(pool.submit(token_nll, smollm2, ids))
        for future in stops:
            assert np.array_equal(future.result(120), layer_expected)
        for future in losses:
            assert np.array_equal(future.result(120), expected)


def test_a_compressed_copy_carries_no_hooks_and_leaves_the_model_alone(smollm2: ModelHandle) -> None:
    ids = encode(smollm2, TEXTS[0], 512).token_ids
    before = token_nll(smollm2, ids)
    weights = {name: p.detach().clone() for name, p in smollm2.model.named_parameters()}
    edit = Compression("prune", 0.5)

    def zero_first_block(layer: int, hidden):
        return hidden * 0 if layer == 0 else None

    with hooked_blocks(smollm2, zero_first_block), pruning.compressed(smollm2, edit) as smaller:
        assert _hooks(smaller) == 0 and _hooks(smollm2) == 0
        pruned = token_nll(smaller, ids)
    assert not np.array_equal(pruned, before)
    assert np.array_equal(token_nll(smollm2, ids), before)
    for name, p in smollm2.model.named_parameters():
        assert np.array_equal(p.detach().numpy(), weights[name].numpy()), name


def test_the_blas_runs_one_thread_in_every_lmscope_process() -> None:
    """OpenBLAS's thread count is one number for the whole process: the runtime fixes it at one when it is imported
    (runtime.machine.one_blas_thread), for numpy's library and for scipy's, which loads later."""
    show = "from threadpoolctl import threadpool_info as i; print([p['num_threads'] for p in i() if p['user_api'] == 'blas'])"
    code = f"import runtime, scipy.linalg; {show}"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # as a server starts
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    widths = json.loads(done.stdout)
    assert len(widths) >= 2 and set(widths) == {1}


def test_no_call_narrows_a_process_wide_thread_pool() -> None:
    """threadpoolctl's BLAS limit sets the whole process's count, which the server's sessions share: only the
    per-thread OpenMP pool is narrowed per call (`user_api="openmp"`), and only the runtime's start sets the BLAS."""
    offenders = []
    for package in ("probes", "runtime", "views", "viz", "lecture", "ui", "app_pages"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "threadpool_limits":
                    api = {k.arg: getattr(k.value, "value", None) for k in node.keywords}.get("user_api")
                    if api != "openmp" and path != ROOT / "runtime" / "machine.py":
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
