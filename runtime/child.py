"""Run a measurement in a child process of its own, where the server's other work neither shares its memory nor
its threads: the child reports progress on its output and hands its result back encoded as the cache encodes
results (runtime.codec), so a probe sees a plain call that returns a typed result."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime import codec
from runtime.errors import LmscopeError

_ROOT = Path(__file__).resolve().parents[1]
Progress = Callable[[int, int], None]


def run(module: str, request: dict[str, Any], on_progress: Progress, what: str) -> Any:
    """`python -m module` with the JSON `request`; its progress lines passed to `on_progress`, its result returned.
    A child that fails is a message naming `what` it was doing, with the end of its error output."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result"
        command = [sys.executable, "-m", module, json.dumps(request), str(result)]
        child = subprocess.Popen(command, cwd=_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stderr is not None
        for line in child.stdout:
            on_progress(*map(int, line.split()[1:]))
        problem = child.stderr.read()
        if child.wait() != 0:
            raise LmscopeError(f"{what} failed: {problem.strip()[-600:]}")
        return codec.decode(result.read_bytes())


def serve(work: Callable[[dict[str, Any], Progress], Any]) -> None:
    """The child's side of `run`, called from its module's `__main__`: `work(request, progress)` with the request
    and result path from the command line, the result encoded to that path."""
    request, result = json.loads(sys.argv[1]), Path(sys.argv[2])
    value = work(request, lambda done, total: print(f"progress {done} {total}", flush=True))
    result.write_bytes(codec.encode(value))
