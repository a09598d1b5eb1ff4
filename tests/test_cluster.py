"""The Dask engine on a real LocalCluster of two worker processes: every page (the slowest at lighter settings)
and the CLI give the results computed in this process, bit for bit; identical requests from two clients run once;
progress reaches the waiting session; a superseded request is cancelled on the cluster; a worker killed mid-pass is
survived; a computation that cannot travel, or a cluster that is gone, is handled."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from distributed import LocalCluster

from probes import attention, corpus, routing, sinks
from probes.text import encode, long_limit
from runtime import cluster_worker, engine, jobs
from runtime.cache import ResultCache
from runtime.cluster import KEY_PREFIX, Cluster, ship
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import assert_same, cli_process
from tests.test_routing import tiny_folders, tiny_models  # noqa: F401  (fixtures, by name)
from ui import models as ui_models
from ui import warm
from views import cli as views_cli

pytestmark = pytest.mark.slow  # a cluster of two processes that import torch
SMOLLM2 = "smollm2-135m-instruct"
TEXT = "Attention sinks soak up the weight of queries with nowhere else to look."
# The pages whose first view takes longest (10 to 90 s each on 2 cores), opened with less corpus, fewer settings or
# rounds: the same probes travel to the workers (Wanda stands for the calibrated pruners), at a sixth of the work.
LIGHT = {
    "3_Structured_attention.py": {"windows": "4, 16"},
    "4_Attention_sinks.py": {"sentences": "32"},
    "5_Massive_activations.py": {"sentences": "8"},
    "6_Distributions_and_neurons.py": {"sentences": "8"},
    "8_Weight_spectra.py": {"ranks": "32"},
    "9_Pruning.py": {"methods": "prune,wanda", "sentences": "2", "calibration": "2", "length": "32"},
    "11_Lottery_tickets.py": {"rounds": "2", "seeds": "1"},
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Two worker processes, each with as many torch threads as this process (so that results match bit for bit)."""
    started = Cluster.start_local(2, threads=torch.get_num_threads())
    yield started
    started.close()


@pytest.fixture
def on_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """Probe computations of this process go to the cluster for the test."""
    with _using(engine.executor_for(cluster)):
        yield cluster


@contextmanager
def _using(executor: jobs.Executor | None) -> Iterator[None]:
    """Within the block, this process's probe computations go through executor (None: a fresh in-process one)."""
    replaced = jobs.install(executor)
    try:
        yield
    finally:
        jobs.install(replaced)


def _computed(cluster: Cluster) -> dict[str, int]:
    """Cache key -> times computed, summed over the workers."""
    total: dict[str, int] = {}
    for counts in cluster.client.run(cluster_worker.computed).values():
        for key, n in counts.items():
            total[key] = total.get(key, 0) + n
    return total


def _stored(directory: Path) -> dict[str, object]:
    store = ResultCache(directory)
    assert store._store is not None
    found = {key: store._read(key)[0] for key in store._store.iterkeys()}
    store.close()
    return found


def _untimed(value: object) -> object:
    """The result with its wall-clock durations (fit_seconds, train_seconds...) zeroed: they differ run to run."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    timings = {f.name: 0.0 for f in dataclasses.fields(value) if f.name.endswith("_seconds")}
    nested = {f.name: _untimed(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in timings}
    return dataclasses.replace(value, **timings, **nested)


def _use_cache(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages' result cache (one per server) moves to directory."""
    monkeypatch.setenv("LMSCOPE_CACHE_DIR", str(directory))
    ui_models.result_cache.clear()


def test_every_page_equals_in_process_from_a_dashboard_without_weights(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = [
        dataclasses.replace(v, params=v.params | LIGHT.get(Path(v.page).name, {}))
        for v in warm.visits([SMOLLM2])
        if v.page != warm.TOUR
    ]
    assert {Path(v.page).name for v in chosen} >= LIGHT.keys()
    _use_cache(tmp_path / "here", monkeypatch)
    assert [w.problems for w in warm.warm(chosen, lambda i, w: None)] == [[]] * len(chosen)
    here = _stored(tmp_path / "here")

    # Through the cluster, by a dashboard that holds no weights: its models are shapes on the meta device.
    _use_cache(tmp_path / "cluster", monkeypatch)
    monkeypatch.setenv("LMSCOPE_DEVICE", "meta")
    ui_models._loaded.clear()
    before = _computed(cluster)
    try:
        with _using(engine.executor_for(cluster)):
            assert [w.problems for w in warm.warm(chosen, lambda i, w: None)] == [[]] * len(chosen)
            assert ui_models._loaded(SMOLLM2).device.type == "meta"
    finally:
        ui_models.result_cache.clear()
        ui_models._loaded.clear()
    there = _stored(tmp_path / "cluster")
    assert there.keys() <= here.keys() and len(there) > 10
    for key, value in there.items():
        assert_same(_untimed(value), _untimed(here[key]), f"{type(value).__name__} {key[:12]}")
    after = _computed(cluster)
    assert {key for key in after if after[key] > before.get(key, 0)} == set(there)  # all of it ran on the workers


def test_the_cli_on_the_cluster_prints_what_it_prints_here(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["attention", "--model", SMOLLM2, "--text", TEXT]
    assert views_cli.main(command) == 0
    here = json.loads(capsys.readouterr().out)
    before = _computed(cluster)
    done = cli_process(*command, env={"LMSCOPE_CACHE_DIR": str(tmp_path), "LMSCOPE_SCHEDULER": cluster.address})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == here
    assert sum(_computed(cluster).values()) == sum(before.values()) + 1


class _Captured(Exception):
    pass


def _computation(ask: Callable[[ResultCache], object], tmp_path: Path) -> tuple[str, Callable[[], object]]:
    """The (cache key, computation) a probe call hands to the executor on a miss."""
    found: list[tuple[str, Callable[[], object]]] = []

    def capture(key: str, compute: Callable[[], object]) -> object:
        found.append((key, compute))
        raise _Captured()

    with _using(jobs.Executor(1, dispatch=capture)), pytest.raises(_Captured):
        ask(ResultCache(tmp_path / "captured"))
    return found[0]


def test_identical_requests_from_two_clients_compute_once(
    cluster: Cluster, smollm2: ModelHandle, tmp_path: Path
) -> None:
    key, compute = _computation(
        lambda cache: sinks.corpus_attention(smollm2, corpus.sentences(), cache, n_tokens=14, limit=48), tmp_path
    )
    replica = Cluster.connect(cluster.address)  # a second dashboard on the same scheduler
    results: dict[int, object] = {}
    try:
        threads = [
            threading.Thread(target=lambda i=i, c=c: results.__setitem__(i, c.dispatch(key, compute)))
            for i, c in enumerate((cluster, replica))
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.3)
        for thread in threads:
            thread.join()
    finally:
        replica.close()
    assert_same(results[0], results[1])
    assert _computed(cluster)[key] == 1


def _keys(directory: Path) -> set[str]:
    return set(_stored(directory))


def _busy(cluster: Cluster) -> list[str]:
    """lmscope tasks running on the cluster's workers."""
    return [str(k) for keys in cluster.client.processing().values() for k in keys if str(k).startswith(KEY_PREFIX)]


def test_progress_reaches_the_session_and_a_superseded_request_is_cancelled_on_the_cluster(
    on_cluster: Cluster, smollm2: ModelHandle, cache: ResultCache
) -> None:
    seen: list[jobs.Status] = []
    outcome: list[BaseException | None] = []
    before = _computed(on_cluster)

    def long_request() -> None:
        try:
            with jobs.waiting("student", seen.append):
                sinks.corpus_attention(
                    smollm2, corpus.sentences(), cache, n_tokens=18, limit=400, on_progress=jobs.report
                )
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    first = threading.Thread(target=long_request)
    first.start()
    deadline = time.monotonic() + 120
    while not any(s.done for s in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    progressed = [s for s in seen if s.total]
    assert progressed and progressed[-1].done < progressed[-1].total  # the worker's progress, while it runs
    with jobs.waiting("student", None):  # the same session asks for something else
        attention.run(smollm2, TEXT, cache)
    first.join(timeout=60)
    assert outcome and isinstance(outcome[0], jobs.Superseded)
    deadline = time.monotonic() + 30
    while _busy(on_cluster) and time.monotonic() < deadline:  # the worker stops at its next progress report
        time.sleep(0.2)
    assert not _busy(on_cluster)
    new = {key for key, n in _computed(on_cluster).items() if n > before.get(key, 0)}
    assert new == _keys(cache.directory)  # the attention alone: the corpus pass never finished


def test_a_worker_killed_mid_pass_is_replaced_and_the_pass_ends(
    on_cluster: Cluster, smollm2: ModelHandle, tmp_path: Path
) -> None:
    with _using(None):
        here = sinks.corpus_attention(
            smollm2, corpus.sentences(), ResultCache(tmp_path / "here"), n_tokens=15, limit=96
        )
    result: list[object] = []
    cache = ResultCache(tmp_path / "cluster")

    def request() -> None:
        try:
            result.append(sinks.corpus_attention(smollm2, corpus.sentences(), cache, n_tokens=15, limit=96).value)
        except LmscopeError as exc:
            result.append(exc)

    thread = threading.Thread(target=request)
    thread.start()
    worker = None
    deadline = time.monotonic() + 120
    while worker is None and time.monotonic() < deadline:
        busy = on_cluster.client.processing()
        worker = next((w for w, keys in busy.items() if any(str(k).startswith(KEY_PREFIX) for k in keys)), None)
        time.sleep(0.2)
    assert worker is not None
    time.sleep(1.0)  # into the pass
    pid = on_cluster.client.run(os.getpid, workers=[worker])[worker]
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert result, "the request never ended"
    assert_same(result[0], here.value)  # run again on a worker that lives
    on_cluster.client.wait_for_workers(2, timeout=600)  # the nanny starts a new one


def test_a_task_carries_names_not_weights_and_a_private_copy_runs_here(
    on_cluster: Cluster, smollm2: ModelHandle, cache: ResultCache
) -> None:
    payload = ship(lambda: attention.compute(smollm2, None, False))  # type: ignore[arg-type]
    assert len(payload) < 20_000 and SMOLLM2.encode() in payload  # the model's name, not its 135M parameters
    assert b"float32" in payload  # and the float type the dashboard holds it in
    twin = ModelHandle(smollm2.name, smollm2.source, smollm2.model, smollm2.tokenizer, "a-private-copy", 0.0)
    token_ids = encode(twin, TEXT, long_limit(twin)).token_ids.tolist()
    key = attention.PROBE.key(twin, {"token_ids": token_ids, "logits": False})
    done = attention.run(twin, TEXT, cache)
    assert key in _keys(cache.directory)  # computed and stored ...
    assert key not in _computed(on_cluster)  # ... here: the worker's model is not this one
    assert done.value.model == smollm2.name


def test_a_cluster_that_is_gone_is_a_message_or_computed_here(smollm2: ModelHandle, tmp_path: Path) -> None:
    local = LocalCluster(n_workers=1, processes=False, dashboard_address=None)
    strict = Cluster.connect(local.scheduler_address, fallback=False)
    lenient = Cluster.connect(local.scheduler_address, fallback=True)
    local.close()  # the scheduler goes away under connected clients
    key, compute = _computation(lambda cache: attention.run(smollm2, TEXT, cache), tmp_path)
    try:
        with pytest.raises(LmscopeError, match="not reachable any more"):
            strict.dispatch(key, compute)
        assert lenient.dispatch(key, compute).model == smollm2.name
    finally:
        strict.close()
        lenient.close()


def test_an_unreachable_scheduler_is_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    engine.stop()
    monkeypatch.setenv("LMSCOPE_SCHEDULER", "tcp://127.0.0.1:9")
    try:
        with pytest.raises(LmscopeError, match="cannot be reached"):
            engine.start()
        monkeypatch.setenv("LMSCOPE_CLUSTER_FALLBACK", "1")
        assert engine.start() == "in this process (the cluster could not be reached)"
    finally:
        engine.stop()


def test_a_worker_keeps_a_bounded_number_of_models_and_checks_their_fingerprint(
    smollm2: ModelHandle, minilm: ModelHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMSCOPE_WORKER_MODELS", "1")
    monkeypatch.setattr(cluster_worker, "_held", type(cluster_worker._held)())
    first = cluster_worker.held(minilm.name, "float32", minilm.fingerprint)
    assert cluster_worker.held(minilm.name, "float32", minilm.fingerprint) is first  # loaded once
    half = cluster_worker.held(minilm.name, "bfloat16", f"{minilm.fingerprint}-bf16")  # as the dashboard holds it
    assert half.dtype == torch.bfloat16 and list(cluster_worker._held) == [(minilm.name, "bfloat16")]
    cluster_worker.held(smollm2.name, "float32", smollm2.fingerprint)
    assert list(cluster_worker._held) == [(smollm2.name, "float32")]  # the older one is let go
    with pytest.raises(cluster_worker.Mismatch):
        cluster_worker.held(smollm2.name, "float32", "another-version")


def test_a_scheduler_that_cannot_import_lmscope_is_a_message(tmp_path: Path) -> None:
    port = 18786 + os.getpid() % 1000
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with pytest.raises(LmscopeError, match="cannot run lmscope's tasks.*PYTHONPATH"):
            deadline = time.monotonic() + 60
            while True:
                try:
                    Cluster.connect(f"tcp://127.0.0.1:{port}")
                except LmscopeError as exc:
                    if "cannot be reached" in str(exc) and time.monotonic() < deadline:
                        continue  # still starting
                    raise
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)


def test_tiny_moe_models_of_every_family_route_the_same_on_the_cluster(
    on_cluster: Cluster, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Folder models (here: each MoE family's tiny random model, the test's own) load on the workers by their path."""
    tiny: dict[str, ModelHandle] = request.getfixturevalue("tiny_models")
    for family, handle in sorted(tiny.items()):
        with _using(None):
            here = routing.run(handle, TEXT, ResultCache(tmp_path / f"{family}-here")).value
        before = _computed(on_cluster)
        there = routing.run(handle, TEXT, ResultCache(tmp_path / f"{family}-cluster")).value
        assert_same(there, here, family)
        assert sum(_computed(on_cluster).values()) == sum(before.values()) + 1, family
