"""The executor behind every cache miss: single flight, first-come-first-served queueing, sessions superseding their
own requests, nested computations, errors. Real threads, real timing."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime import jobs
from runtime.errors import LmscopeError
from runtime.jobs import Executor, Status, Superseded, report, waiting
from runtime.turns import Turns


def _asking(executor: Executor, key: str, compute, session: str | None = None, seen: list | None = None):
    """A function that asks `executor` for key from its own thread, as one session's page would."""

    def ask():
        with waiting(session, seen.append if seen is not None else None):
            return executor.run(key, compute)

    return ask


def _wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_identical_requests_compute_once() -> None:
    executor = Executor(2)
    calls = []

    def compute() -> object:
        calls.append(threading.get_ident())
        time.sleep(0.5)
        return object()

    started = time.perf_counter()
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: _asking(executor, "same", compute, f"s{i}")(), range(6)))
    elapsed = time.perf_counter() - started
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert elapsed < 2 * 0.5


def test_waiters_see_their_place_in_the_queue_and_who_started_it() -> None:
    executor = Executor(1)
    release = threading.Event()
    seen: dict[str, list[Status]] = {name: [] for name in ("a", "b", "c", "b2")}
    threads = [threading.Thread(target=_asking(executor, "long", release.wait, "a", seen["a"]))]
    threads[0].start()
    _wait_until(lambda: executor.status("long") is not None and executor.status("long").state == "running")
    for session, key in (("b", "second"), ("c", "third")):
        threads.append(threading.Thread(target=_asking(executor, key, lambda: key, session, seen[session])))
        threads[-1].start()
        _wait_until(lambda key=key: executor.status(key) is not None)
    threads.append(threading.Thread(target=_asking(executor, "second", lambda: "never", "b2", seen["b2"])))
    threads[-1].start()
    _wait_until(lambda: len(seen["b2"]) > 0 and len(seen["c"]) > 0 and len(seen["a"]) > 1)
    release.set()
    for thread in threads:
        thread.join(10)
    assert seen["a"][-1].state == "running" and not seen["a"][-1].shared
    assert seen["b"][0] == Status("queued", 0, 1, False)
    assert seen["c"][-1].state == "queued" and seen["c"][-1].ahead == 1
    assert seen["b2"][-1].shared and seen["b2"][-1].ahead == 0


def test_a_sessions_new_request_drops_its_queued_one() -> None:
    executor = Executor(1)
    release = threading.Event()
    blocker = threading.Thread(target=_asking(executor, "blocker", release.wait, "other"))
    blocker.start()
    _wait_until(lambda: executor.status("blocker") is not None)
    computed = []
    errors = []

    def first() -> None:
        try:
            _asking(executor, "old", lambda: computed.append("old"), "me")()
        except Superseded as exc:
            errors.append(exc)

    old = threading.Thread(target=first)
    old.start()
    _wait_until(lambda: executor.status("old") is not None)
    new = threading.Thread(target=_asking(executor, "new", lambda: computed.append("new"), "me"))
    new.start()
    _wait_until(lambda: executor.status("new") is not None)
    release.set()
    for thread in (blocker, old, new):
        thread.join(10)
    assert computed == ["new"]
    assert len(errors) == 1 and "newer request" in str(errors[0])


def test_a_session_moving_on_leaves_a_shared_computation_to_the_others() -> None:
    executor = Executor(1)
    release = threading.Event()
    calls = []

    def shared() -> str:
        calls.append(1)
        release.wait(5)
        return "shared"

    results: dict[str, object] = {}

    def ask(session: str, key: str, compute) -> None:
        try:
            results[session + key] = _asking(executor, key, compute, session)()
        except Superseded as exc:
            results[session + key] = exc

    threads = [threading.Thread(target=ask, args=(session, "x", shared)) for session in ("me", "other")]
    for thread in threads:
        thread.start()
    _wait_until(lambda: executor.status("x") is not None and len(calls) == 1)
    threads.append(threading.Thread(target=ask, args=("me", "y", lambda: "mine")))
    threads[-1].start()
    _wait_until(lambda: executor.status("y") is not None)
    release.set()
    for thread in threads:
        thread.join(10)
    assert results["otherx"] == "shared" and results["mey"] == "mine" and calls == [1]


def test_a_running_computation_nobody_waits_for_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "GRACE_SECONDS", 0.2)
    executor = Executor(1)
    steps = []

    def long() -> str:
        for step in range(200):
            steps.append(step)
            report(step, 200)
            time.sleep(0.02)
        return "finished"

    def leave(status: Status) -> None:
        if status.done >= 3:
            raise KeyboardInterrupt  # what Streamlit's StopException does to a page that reruns

    with pytest.raises(KeyboardInterrupt), waiting("me", leave):
        executor.run("long", long)
    _wait_until(lambda: executor.status("long") is None)
    assert 3 <= len(steps) < 100


def test_a_page_that_asks_again_within_the_grace_keeps_its_computation() -> None:
    executor = Executor(1)
    calls = []

    def long() -> str:
        calls.append(1)
        for step in range(20):
            report(step, 20)
            time.sleep(0.02)
        return "finished"

    def leave(status: Status) -> None:
        if status.done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), waiting("me", leave):
        executor.run("long", long)
    assert _asking(executor, "long", long, "me")() == "finished"
    assert calls == [1]


def test_nested_requests_run_inline_without_deadlock() -> None:
    executor = Executor(1)

    def outer() -> str:
        return "outer+" + executor.run("inner", lambda: "inner")

    assert _asking(executor, "outer", outer)() == "outer+inner"


def test_a_nested_request_takes_a_queued_job_out_of_the_queue() -> None:
    executor = Executor(1)
    queued_first = threading.Event()
    results = {}

    def outer() -> str:
        queued_first.wait(5)
        return "outer+" + executor.run("shared", lambda: "shared")

    first = threading.Thread(target=lambda: results.update(outer=_asking(executor, "outer", outer, "a")()))
    first.start()
    _wait_until(lambda: executor.status("outer") is not None)
    second = threading.Thread(target=lambda: results.update(shared=_asking(executor, "shared", lambda: "x", "b")()))
    second.start()
    _wait_until(lambda: executor.status("shared") is not None)
    queued_first.set()
    first.join(10)
    second.join(10)
    assert results == {"outer": "outer+x", "shared": "x"}  # the queued job itself ran, inside "outer"


def test_errors_reach_every_waiter_and_are_not_remembered() -> None:
    executor = Executor(2)
    gate = threading.Event()

    def failing() -> None:
        gate.wait(5)
        raise LmscopeError("no such layer")

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(_asking(executor, "bad", failing, f"s{i}")) for i in range(3)]
        _wait_until(lambda: executor.status("bad") is not None and executor.status("bad").shared)
        gate.set()
        for future in futures:
            with pytest.raises(LmscopeError, match="no such layer"):
                future.result(10)
    assert executor.run("bad", lambda: "fixed") == "fixed"


def test_turns_serve_in_arrival_order() -> None:
    turns = Turns()
    order = []
    entered = threading.Event()

    def holder() -> None:
        with turns:
            entered.set()
            time.sleep(0.3)

    def later(i: int) -> None:
        with turns:
            order.append(i)

    first = threading.Thread(target=holder)
    first.start()
    entered.wait(5)
    threads = []
    for i in range(8):
        threads.append(threading.Thread(target=later, args=(i,)))
        threads[-1].start()
        time.sleep(0.02)  # each arrives after the one before
    for thread in [first, *threads]:
        thread.join(10)
    assert order == list(range(8))
