"""One way to write a cached probe (runtime.probe): no key built by hand, keys from every input and dependency,
and what travels to a cluster worker picklable by construction, for every probe of the project."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import probes
from probes import attention, heads
from runtime import probe as declaration
from runtime.cache import ResultCache
from runtime.cluster import ship
from runtime.handle import ModelHandle
from runtime.probe import CachedProbe, Reporter, Undeclarable
from tests import cache_versions
from tests.conftest import ROOT

HAND_BUILT = re.compile(r"cache_key\(|\.fetch\(")
SCIENCE_AND_PAGES = ("probes", "views", "lecture", "ui", "app_pages")


def _toy(handle: ModelHandle, text: str, count: int) -> str:
    return text * count


def _toy_with_progress(handle: ModelHandle, steps: int, on_progress: Callable[[int, int], None]) -> int:
    for done in range(1, steps + 1):
        on_progress(done, steps)
    return steps


def _toy_dependent(handle: ModelHandle, text: str) -> str:
    return text


def _toy_with_default(handle: ModelHandle, text: str = "a") -> str:
    return text


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Toy probes declared in a test leave the project's registry as it was."""
    monkeypatch.setattr(declaration, "_declared", dict(declaration._declared))


def _all_probes() -> list[CachedProbe]:
    for module in pkgutil.iter_modules(probes.__path__):
        importlib.import_module(f"probes.{module.name}")
    return declaration.declared()


def test_no_cache_key_is_built_by_hand_outside_the_declaration() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in SCIENCE_AND_PAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if HAND_BUILT.search(line)
    ]
    assert offenders == [], "declare a runtime.probe.CachedProbe instead of building a key and fetching by hand"


@pytest.mark.usefixtures("fresh_registry")
def test_a_computation_that_cannot_travel_by_name_is_refused_when_declared() -> None:
    lock = threading.Lock()
    with pytest.raises(Undeclarable, match="not a module-level function"):
        CachedProbe("toy-lambda", 1, lambda handle: lock)

    def nested(handle: ModelHandle, text: str) -> str:
        return text

    with pytest.raises(Undeclarable, match="not a module-level function"):
        CachedProbe("toy-nested", 1, nested)
    with pytest.raises(Undeclarable, match="has a default"):
        CachedProbe("toy-default", 1, _toy_with_default)
    with pytest.raises(Undeclarable, match="fixed fingerprint"):
        CachedProbe("toy-two-fingerprints", 1, _toy, fingerprint="fixed")
    CachedProbe("toy", 1, _toy)
    with pytest.raises(Undeclarable, match="two probes are named 'toy'"):
        CachedProbe("toy", 1, _toy_dependent)


@pytest.mark.usefixtures("fresh_registry")
def test_an_input_that_is_not_data_is_refused_at_the_call(smollm2: ModelHandle, cache: ResultCache) -> None:
    toy = CachedProbe("toy", 1, _toy)
    with pytest.raises(Undeclarable, match="input 'text' is a lock"):
        toy.cached(smollm2, cache, text=threading.Lock(), count=1)
    with pytest.raises(Undeclarable, match="string keys"):
        toy.cached(smollm2, cache, text={1: "a"}, count=1)
    with pytest.raises(Undeclarable, match="missing \\['count'\\]"):
        toy.cached(smollm2, cache, text="a")
    with pytest.raises(Undeclarable, match="unknown \\['extra'\\]"):
        toy.cached(smollm2, cache, text="a", count=1, extra=2)
    with pytest.raises(Undeclarable, match="reports no progress"):
        toy.cached(smollm2, cache, lambda done, total: None, text="a", count=1)
    assert toy.cached(smollm2, cache, text="ab", count=2).value == "abab"


@pytest.mark.usefixtures("fresh_registry")
def test_keys_follow_every_input_the_model_and_every_dependency_version(
    smollm2: ModelHandle, gemma3: ModelHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    toy = CachedProbe("toy", 1, _toy)
    dependent = CachedProbe("toy-dependent", 1, _toy_dependent, depends=(toy,))
    base = toy.key(smollm2, {"text": "a", "count": 1})
    assert base == toy.key(smollm2, {"count": 1, "text": "a"})
    assert toy.key(smollm2, {"text": "a", "count": [1, 2]}) == toy.key(smollm2, {"text": "a", "count": (1, 2)})
    others = {
        toy.key(smollm2, {"text": "b", "count": 1}),
        toy.key(smollm2, {"text": "a", "count": 2}),
        toy.key(gemma3, {"text": "a", "count": 1}),
        dependent.key(smollm2, {"text": "a"}),
    }
    assert base not in others and len(others) == 4
    arrays = [
        toy.key(smollm2, {"text": "a", "count": np.arange(n, dtype=dtype)}) for n, dtype in ((3, "i8"), (4, "i8"))
    ]
    assert arrays[0] == toy.key(smollm2, {"text": "a", "count": np.arange(3, dtype="i8")}) and len(set(arrays)) == 2
    assert arrays[0] != toy.key(smollm2, {"text": "a", "count": np.arange(3, dtype="f8")})

    before = dependent.key(smollm2, {"text": "a"})
    monkeypatch.setattr(toy, "version", 2)
    assert dependent.key(smollm2, {"text": "a"}) != before
    # The project's: the head scores depend on the attention probe's version, declared once.
    on_heads = heads.PROBE.key(smollm2, {"seq_len": 50, "seed": 0, "reverse": False})
    monkeypatch.setattr(attention.PROBE, "version", attention.VERSION + 1)
    assert heads.PROBE.key(smollm2, {"seq_len": 50, "seed": 0, "reverse": False}) != on_heads


@pytest.mark.usefixtures("fresh_registry")
def test_progress_reaches_the_asker_and_its_callback_stays_home(smollm2: ModelHandle, tmp_path: Path) -> None:
    toy = CachedProbe("toy-progress", 1, _toy_with_progress)
    heard: list[tuple[int, int]] = []
    lock = threading.Lock()  # an asker's callback may hold anything: it never travels

    def listen(done: int, total: int) -> None:
        with lock:
            heard.append((done, total))

    assert toy.cached(smollm2, ResultCache(tmp_path), listen, steps=3).value == 3
    assert heard == [(1, 3), (2, 3), (3, 3)]
    task = toy.task(smollm2, ResultCache(tmp_path), listen, steps=3)
    assert pickle.loads(ship(task)).keywords["on_progress"] == Reporter()


def test_every_probe_of_the_project_is_declared_and_ships_with_a_real_handle(
    smollm2: ModelHandle, tmp_path: Path
) -> None:
    declared = _all_probes()
    assert len(declared) >= 24, [p.name for p in declared]
    cache = ResultCache(tmp_path)
    lock = threading.Lock()
    guarded = cache_versions.current()
    for found in declared:
        module = found.function.__module__
        assert module.startswith("probes."), found
        # Its version is a module's *VERSION constant, which tests/cache_versions.py ties to the module's code.
        assert found.version in guarded[module]["versions"].values(), found
        handle = smollm2 if "handle" in found.runtime else None
        on_progress = (lambda done, total: lock.acquire()) if "on_progress" in found.runtime else None
        payload = ship(found.task(handle, cache, on_progress, **{name: None for name in found.inputs}))
        # By reference: the function's name, the model's name, never weights or a copy of the code.
        assert len(payload) < 20_000, (found, len(payload))
        assert found.function.__name__.encode() in payload, found
        assert handle is None or smollm2.name.encode() in payload, found
