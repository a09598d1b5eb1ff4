"""The disk cache: real diskcache in a temporary folder; hits, keys, eviction, and every failure survived."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import diskcache
import numpy as np
import pytest

from probes import attention
from results.activations import Thresholds
from runtime import codec
from runtime.cache import ResultCache, cache_key
from runtime.handle import ModelHandle

TEXT = "Caches make the second look instant."


def test_hit_returns_identical_arrays(smollm2: ModelHandle, cache: ResultCache) -> None:
    first = attention.run(smollm2, TEXT, cache)
    second = attention.run(smollm2, TEXT, cache)
    assert (first.hit, second.hit) == (False, True)
    assert first.warning is None and second.warning is None
    for name in ("maps", "sink_share", "previous_token", "entropy", "token_ids"):
        assert np.array_equal(getattr(first.value, name), getattr(second.value, name))
    assert second.value.tokens == first.value.tokens


def test_results_survive_a_new_cache_object(smollm2: ModelHandle, tmp_path: Path) -> None:
    attention.run(smollm2, TEXT, ResultCache(tmp_path))
    assert attention.run(smollm2, TEXT, ResultCache(tmp_path)).hit


def test_key_changes_with_model_probe_version_and_input() -> None:
    base = cache_key("model-a", "attention", 1, {"token_ids": [1, 2, 3]})
    assert base == cache_key("model-a", "attention", 1, {"token_ids": [1, 2, 3]})
    variants = [
        cache_key("model-b", "attention", 1, {"token_ids": [1, 2, 3]}),
        cache_key("model-a", "activations", 1, {"token_ids": [1, 2, 3]}),
        cache_key("model-a", "attention", 2, {"token_ids": [1, 2, 3]}),
        cache_key("model-a", "attention", 1, {"token_ids": [1, 2, 4]}),
        cache_key("model-a", "attention", 1, {"token_ids": [1, 2, 3], "layer": 0}),
    ]
    assert len({base, *variants}) == 6


def test_other_text_or_model_misses(smollm2: ModelHandle, minilm: ModelHandle, cache: ResultCache) -> None:
    attention.run(smollm2, TEXT, cache)
    assert not attention.run(smollm2, TEXT + " Again.", cache).hit
    assert not attention.run(minilm, TEXT, cache).hit


def test_corrupted_entry_is_recomputed(smollm2: ModelHandle, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    fresh = attention.run(smollm2, TEXT, cache).value
    value_files = list(tmp_path.rglob("*.val"))
    assert value_files, "large results are stored as files"
    for path in value_files:
        path.write_bytes(b"\x80\x04garbage")
    again = attention.run(smollm2, TEXT, cache)
    assert not again.hit and "unreadable" in again.warning
    assert np.array_equal(again.value.maps, fresh.maps)
    assert attention.run(smollm2, TEXT, cache).hit


def test_unusable_directory_computes_anyway(smollm2: ModelHandle, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = ResultCache(blocker / "cache")
    assert cache.problem and "cannot be used" in cache.problem
    result = attention.run(smollm2, TEXT, cache)
    assert result.value.maps.shape[0] == smollm2.n_layers
    assert not result.hit and "not saved" in result.warning


def test_full_disk_only_warns(smollm2: ModelHandle, cache: ResultCache, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache._store, "set", no_space)
    result = attention.run(smollm2, TEXT, cache)
    assert result.value.n_layers == smollm2.n_layers
    assert "could not be saved" in result.warning


def test_size_limit_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path, size_limit_mb=1)
    blob = np.random.default_rng(0).random(40_000)  # about 320 kB each
    for i in range(8):
        cache.fetch(f"k{i}", lambda: blob.copy())
    assert cache.volume_mb() <= 1.5
    assert not cache.fetch("k0", lambda: blob.copy()).hit  # the oldest was evicted
    assert cache.fetch("k0", lambda: blob.copy()).hit  # and the cache still stores new results


class _Planted:
    """What an attacker with write access to the cache folder could store: unpickling it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_value_in_the_cache_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    key = cache_key("model-a", "attention", 1, {"token_ids": [1, 2, 3]})
    with diskcache.Cache(str(tmp_path / "cache")) as planted:  # diskcache's own default: pickle
        planted.set(key, _Planted(marker))
        planted.set(key + "-large", _Planted(marker), read=False)
    cache = ResultCache(tmp_path / "cache")
    got = cache.fetch(key, lambda: np.arange(3))
    assert not marker.exists()
    assert not got.hit and "unreadable" in got.warning and np.array_equal(got.value, np.arange(3))
    assert cache.fetch(key, lambda: np.zeros(3)).hit  # replaced by the recomputed value


def test_a_forged_result_cannot_name_a_class_outside_lmscope(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    tree = {"dataclass": "subprocess:Popen", "fields": {"args": ["touch", str(marker)]}}
    header = json.dumps(tree).encode()
    forged = codec.MAGIC + len(header).to_bytes(8, "little") + header
    with pytest.raises(codec.Undecodable):
        codec.decode(forged)
    cache = ResultCache(tmp_path / "cache")
    cache._store.set("k", forged)
    assert not cache.fetch("k", lambda: 1).hit
    assert not marker.exists()


def test_codec_round_trips_the_types_results_are_made_of() -> None:
    value = Thresholds(1.5, float("inf"))
    tree = {1: (np.float32(2.5), [np.arange(4, dtype=np.int16)], None), "x": {"nan": float("nan"), "ok": True}}
    back = codec.decode(codec.encode([value, tree]))
    assert back[0] == value
    assert type(back[1][1][0]) is np.float32 and back[1][1][1][0].dtype == np.int16
    assert back[1][1][2] is None and back[1]["x"]["ok"] is True and np.isnan(back[1]["x"]["nan"])
    with pytest.raises(TypeError):
        codec.encode(np.array([object()]))


def test_results_are_stored_under_their_results_module() -> None:
    data = codec.encode(Thresholds())
    assert b'"results.activations:Thresholds"' in data and codec.decode(data) == Thresholds()
    # An entry naming a class its module no longer holds is a miss, never a misread.
    header = json.dumps({"dataclass": "probes.activations:Gone", "fields": {}}).encode()
    with pytest.raises(codec.Undecodable):
        codec.decode(codec.MAGIC + len(header).to_bytes(8, "little") + header)
