"""Cache versions that cannot be forgotten: a fingerprint of each cached computation's code and result schema,
recorded with its version in tests/cache_versions.json and compared by tests/test_cache_versions.py.

A module that caches results declares `VERSION` (and maybe other `*_VERSION`s) and puts it in its cache keys. Its
fingerprint hashes the module's code and the `results/` modules it imports, which define what it returns (their
syntax trees: comments, docstrings, formatting and the version numbers themselves left out). Code it calls in other
modules is not covered: a change there that alters a cached result still needs its caller's version bumped. When the fingerprint
changes, the versions must change too, or the developer states that the output did not:

    python -m tests.cache_versions                        # record modules whose versions were bumped
    python -m tests.cache_versions --same-output MODULE   # record a change that leaves the results as they were
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = Path(__file__).with_name("cache_versions.json")
PACKAGES = ("runtime", "probes", "views")


def _versions(tree: ast.Module) -> dict[str, int]:
    """The module's top-level `VERSION = n` and `*_VERSION = n` assignments."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.endswith("VERSION") and isinstance(node.value, ast.Constant) and isinstance(node.value.value, int):
                found[name] = node.value.value
    return found


def _shape(path: Path) -> str:
    """The syntax tree without docstrings and with every version number replaced, as text."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id.endswith("VERSION") for t in node.targets
        ):
            node.value = ast.Constant(0)
    return ast.dump(tree)


def _results_imported(path: Path) -> list[Path]:
    """The results/ modules a module imports (`from results.x import ...`), in name order."""
    names = {
        node.module
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("results.")
    }
    return [ROOT / "results" / f"{name.removeprefix('results.')}.py" for name in sorted(names)]


def current() -> dict[str, dict]:
    """Every caching module by dotted name: its versions and the fingerprint of its code and result schema."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            versions = _versions(ast.parse(path.read_text(encoding="utf-8")))
            if not versions:
                continue
            sources = [path, *_results_imported(path)]
            digest = hashlib.sha256("\n".join(_shape(p) for p in sources).encode()).hexdigest()[:16]
            found[f"{package}.{path.stem}"] = {"versions": versions, "fingerprint": digest}
    return found


def recorded() -> dict[str, dict]:
    """What tests/cache_versions.json holds."""
    return json.loads(RECORD.read_text(encoding="utf-8")) if RECORD.is_file() else {}


def problems(now: dict[str, dict], then: dict[str, dict]) -> list[str]:
    """One line per module whose code changed while its versions did not, or whose record is out of date."""
    found = []
    for name, entry in now.items():
        old = then.get(name)
        if old is None:
            found.append(f"{name}: not recorded; run python -m tests.cache_versions")
        elif old["fingerprint"] != entry["fingerprint"] and old["versions"] == entry["versions"]:
            found.append(
                f"{name}: its code or result schema changed but {', '.join(entry['versions'])} did not. If what it "
                f"caches changed, bump the version; if not, run python -m tests.cache_versions --same-output {name}"
            )
        elif old != entry:
            found.append(f"{name}: versions bumped; record them with python -m tests.cache_versions")
    gone = sorted(then.keys() - now.keys())
    found += [f"{name}: recorded but caches nothing now; run python -m tests.cache_versions" for name in gone]
    return found


def main(argv: list[str] | None = None) -> int:
    """Record the current fingerprints: bumped modules always, changed ones with the same versions only if named."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.cache_versions", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--same-output", action="append", default=[], metavar="MODULE")
    args = parser.parse_args(argv)
    now, then = current(), recorded()
    refused = [
        name
        for name, entry in now.items()
        if name in then
        and then[name]["fingerprint"] != entry["fingerprint"]
        and then[name]["versions"] == entry["versions"]
        and name not in args.same_output
    ]
    for name in refused:
        print(f"not recorded: {name} changed with the same versions (bump them, or pass --same-output {name})")
    kept = {name: then[name] for name in refused}
    RECORD.write_text(json.dumps({**now, **kept}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
