"""The design card's rules, checked on the code itself: module boundaries, and a clean lint."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

FORBIDDEN = {
    "runtime": {"streamlit", "plotly"},
    "probes": {"streamlit", "plotly"},
    "viz": {"torch", "transformers", "streamlit"},
    "results": {"torch", "transformers", "streamlit", "plotly", "runtime", "probes", "viz"},
    "views": {"streamlit"},
}
# Which of lmscope's own layers each layer may import: pages -> ui -> lecture -> views -> viz, probes -> runtime
# -> results. The runtime never imports a probe.
LAYERS = {
    "results": {"results"},
    "runtime": {"runtime", "results"},
    "probes": {"probes", "runtime", "results"},
    "viz": {"viz", "results"},
    "views": {"views", "probes", "runtime", "viz", "results"},
    "lecture": {"lecture", "views", "probes", "runtime", "viz", "results"},
    "ui": {"ui", "lecture", "views", "probes", "runtime", "viz", "results"},
    "app_pages": {"ui", "lecture", "views", "probes", "runtime", "viz", "results"},
    "app": {"ui"},
    "lmscope": {"lmscope", "views", "runtime", "results"},
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_boundaries(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_results_need_only_numpy() -> None:
    allowed = set(sys.stdlib_module_names) | {"__future__", "numpy", "results"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) - allowed)
        for path in (ROOT / "results").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_pages_stay_thin() -> None:
    for path in (ROOT / "app_pages").glob("*.py"):
        assert not _imported_roots(path) & {"torch", "transformers"}, path.name


def test_pages_leave_state_urls_guards_and_errors_to_the_scaffold() -> None:
    """Pages read and write their choices through ui.scaffold (settings, guards, errors), never by hand."""
    hand_rolled = ("st.session_state", "st.query_params", "except LmscopeError", ".is_causal:")
    offenders = {
        path.name: [what for what in hand_rolled if what in path.read_text()]
        for path in (ROOT / "app_pages").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_ruff_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pyright_is_clean() -> None:
    """pyright, basic mode, over what pyrightconfig.json includes, in this interpreter's environment."""
    pyright = Path(sys.executable).parent / "pyright"
    assert pyright.exists(), f"pyright is not installed next to {sys.executable} (requirements-test.txt)"
    env = {**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}  # no look-up of the latest release on PyPI
    done = subprocess.run(
        [str(pyright), "--pythonpath", sys.executable], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-10_000:] + done.stderr


def test_transformers_names_come_from_the_modules_that_define_them() -> None:
    """`from transformers import X` makes pyright bind transformers' index of every model (about 2,600 modules more,
    12 of its 35 seconds), so what pyright checks imports each name from its own module instead."""
    checked = [*_modules().values(), *(ROOT / "bench").rglob("*.py"), *(ROOT / "docs").rglob("*.py")]
    top_level = sorted(
        str(path.relative_to(ROOT))
        for path in checked
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.ImportFrom) and node.module == "transformers")
        or (isinstance(node, ast.Import) and "transformers" in {alias.name for alias in node.names})
    )
    assert top_level == []


def _modules() -> dict[str, Path]:
    """Every module of lmscope's own code by dotted name (pages by file stem, the entry script as `app`)."""
    found = {"app": ROOT / "app.py"}
    for package in ("results", "runtime", "probes", "viz", "views", "lecture", "ui", "app_pages", "lmscope"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of lmscope's that this one imports, at the top level or inside functions: `from a import b`
    counts as importing a.b when that is a module, else a."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = name.rsplit(".", node.level)[0] + "." + (node.module or "") if node.level else node.module
            base = base.rstrip(".")
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known.keys()
            found |= submodules or {base}
    return {module for module in found if module in known and module != name}


def test_layers_point_one_way_and_no_module_imports_itself_back() -> None:
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    wrong_way = sorted(
        f"{a} -> {b}" for a, targets in graph.items() for b in targets if b.split(".")[0] not in LAYERS[a.split(".")[0]]
    )
    assert wrong_way == []
    # A cycle is a module that reaches itself: search from each module along its imports.
    cycles = []
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            if module == start:
                cycles.append(start)
                break
            if module not in seen:
                seen.add(module)
                todo.extend(graph[module])
    assert cycles == []


# The runtime's rooms a probe never enters: it asks the cache for a result and gets one, wherever it was computed.
MACHINERY = {"runtime.jobs", "runtime.engine", "runtime.cluster", "runtime.cluster_worker", "runtime.codec"}


def test_no_probe_imports_the_queue_the_cluster_or_the_codec() -> None:
    known = _modules()
    offenders = {
        name: sorted(_imports(name, path, known) & MACHINERY)
        for name, path in known.items()
        if name.startswith("probes")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from probes import sinks\n    import viz.theme\n")
    known = {"probes.sinks": module, "viz.theme": module, "probes": module}
    assert _imports("lecture.m", module, known) == {"probes.sinks", "viz.theme"}
