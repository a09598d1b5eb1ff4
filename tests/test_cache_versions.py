"""A cached computation's code cannot change without its cache version, or a stated reason (tests/cache_versions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import cache_versions


def test_every_caching_module_changed_only_with_its_version() -> None:
    assert cache_versions.problems(cache_versions.current(), cache_versions.recorded()) == []


def _probe(doc: str = "A toy probe.", version: int = 1, body: str = "return x + 1  # one") -> str:
    return f'"""{doc}"""\n\nfrom results.toy import Toy\n\nVERSION = {version}\n\n\ndef run(x):\n    {body}\n'


def _schema(kind: str) -> str:
    return f"from dataclasses import dataclass\n\n\n@dataclass\nclass Toy:\n    value: {kind}\n"


def test_the_fingerprint_sees_code_and_schema_but_not_comments_or_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for package in ("probes", "results"):
        (tmp_path / package).mkdir()
    probe, schema = tmp_path / "probes" / "toy.py", tmp_path / "results" / "toy.py"
    probe.write_text(_probe())
    schema.write_text(_schema("int"))
    monkeypatch.setattr(cache_versions, "ROOT", tmp_path)
    first = cache_versions.current()
    assert list(first) == ["probes.toy"] and first["probes.toy"]["versions"] == {"VERSION": 1}

    probe.write_text(_probe(doc="Reworded.", body="return x + 1  # another comment"))
    assert cache_versions.problems(cache_versions.current(), first) == []

    probe.write_text(_probe(body="return x + 2"))
    assert "changed but VERSION did not" in cache_versions.problems(cache_versions.current(), first)[0]
    probe.write_text(_probe(version=2, body="return x + 2"))
    assert "versions bumped" in cache_versions.problems(cache_versions.current(), first)[0]

    probe.write_text(_probe())
    schema.write_text(_schema("float"))  # the result it returns changed shape
    assert "changed but VERSION did not" in cache_versions.problems(cache_versions.current(), first)[0]
