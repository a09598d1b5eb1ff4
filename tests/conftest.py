"""Shared fixtures: one loaded copy of each built-in model per test session, and a private result cache."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Results go to a throwaway cache, one for the whole run: pytest-xdist's workers share it (diskcache is safe across
# processes), so a result one worker computed is a hit in the other, as for a server's replicas. The model store
# stays the prepared one (`make models`).
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
    os.environ["LMSCOPE_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"lmscope-test-cache-{_RUN}")
else:
    os.environ["LMSCOPE_CACHE_DIR"] = tempfile.mkdtemp(prefix="lmscope-test-cache-")
# Compressions computed by an earlier run are not read either: each run computes its own.
os.environ["LMSCOPE_COMPRESSED_DIR"] = str(Path(os.environ["LMSCOPE_CACHE_DIR"]) / "compressed")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# pytest-xdist runs several workers side by side: each gets its share of the cores for torch's thread pools (set
# before torch is imported here, and inherited by every server and process a test starts; the BLAS of numpy and
# scipy runs one thread in every lmscope process, runtime.machine.one_blas_thread). More threads than cores, and
# OpenMP's spinning threads wait on each other (the cluster's every-page test took 684 s beside another worker that
# way, 247 s alone).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _pool in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_pool, str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))

from runtime.cache import ResultCache  # noqa: E402
from runtime.handle import ModelHandle
from runtime.models import load  # noqa: E402

# The browser tests' fixtures (a real server, chromium, a page), shared by the files that drive the browser.
pytest_plugins = ["tests.browser"]


BROWSER_FIXTURES = {"server", "browser", "page"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the browser fixtures is a browser test."""
    for item in items:
        if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def smollm2() -> ModelHandle:
    return load("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma3() -> ModelHandle:
    return load("gemma3-270m")


@pytest.fixture(scope="session")
def minilm() -> ModelHandle:
    return load("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def moefied() -> ModelHandle:
    """The MoE derived from SmolLM2, from the prepared model store (`make models` builds it)."""
    return load("smollm2-135m-moefied")


@pytest.fixture(scope="session")
def trained_moe() -> ModelHandle:
    """The trained MoE built from SmolLM2, from the prepared model store (`make models` trains it)."""
    return load("smollm2-135m-moe")


@pytest.fixture(params=["smollm2", "gemma3", "minilm"])
def any_model(request: pytest.FixtureRequest) -> ModelHandle:
    """Each built-in model in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def cache(tmp_path: Path) -> ResultCache:
    store = ResultCache(tmp_path / "cache")
    yield store
    store.close()


@pytest.fixture(scope="session")
def shared_cache() -> ResultCache:
    """The run's result cache, which the pages, the command line and every test file of the run use: a result any of
    them computed is read back. A test that needs its computation to happen takes `cache` instead."""
    store = ResultCache()
    yield store
    store.close()
