"""One way to run this app's Streamlit server for a test, a benchmark or the screenshots: a child process on a free
loopback port, its output in a log, healthy before it is used, stopped with whatever it started.

Plain Python (no pytest, no Playwright), so that bench/ and docs/ scripts, which run from the repository root, import
it as `tests.server` as they import `tests.browser`'s constants.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def app_command(port: int) -> list[str]:
    """`streamlit run app.py` from this interpreter, headless, listening on the loopback port."""
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    return [*command, "--server.address", HOST, "--server.headless", "true"]


def tail(log: Path, chars: int = 3000) -> str:
    """The end of a log, for an error message."""
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


@contextlib.contextmanager
def process(
    command: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path = ROOT
) -> Iterator[subprocess.Popen]:
    """A child process with its output in `log`. On the way out it is terminated, then whatever it started and left
    behind (a LocalCluster's nannies and workers), each killed if it does not end within STOP_TIMEOUT_S."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(command), cwd=cwd, env=None if env is None else dict(env), stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            try:
                family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.Error:  # already ended
                family = []
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for left in psutil.wait_procs(family, timeout=10)[1]:
                left.terminate()
            for left in psutil.wait_procs(family, timeout=STOP_TIMEOUT_S)[1]:
                left.kill()


def check_alive(procs: Sequence[subprocess.Popen], log: Path) -> None:
    """Raise with the log's end if one of the processes has exited."""
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"`{' '.join(map(str, proc.args[:5]))}` exited with {proc.returncode}:\n{tail(log)}")


def wait_healthy(url: str, procs: Sequence[subprocess.Popen], log: Path, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """Poll `url`/_stcore/health until it answers "ok"; raise early if a process exits, or after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check_alive(procs, log)
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:  # not listening yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer ok within {timeout_s:.0f} s:\n{tail(log)}")


@dataclass(frozen=True)
class Server:
    """A healthy server: its address, its process and where its output goes."""

    url: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        """Everything the server has written so far."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serving(
    log: Path,
    command: Callable[[int], Sequence[str]] = app_command,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    watch: Sequence[subprocess.Popen] = (),
    timeout_s: float = HEALTH_TIMEOUT_S,
) -> Iterator[Server]:
    """The server that `command(port)` starts on a free loopback port (default: this app), once its health endpoint
    answers; `watch` are processes it depends on (a Dask scheduler, workers) whose exit fails the start. Stopped,
    with its children, on the way out."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    with process(command(port), log, env, cwd) as proc:
        wait_healthy(url, [proc, *watch], log, timeout_s)
        yield Server(url, proc, log)
