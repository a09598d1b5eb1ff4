"""compose.yaml: a scheduler, workers and the dashboard from the one image the Dockerfile builds, wired to each other,
with commands the `dask` command line accepts and settings lmscope reads (checked without a Docker engine), and
Compose's own `config` check (`make test` installs Debian's docker-compose for it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from tests.test_docker import DOCKERFILE, env_values, instructions

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
SERVICES = {"scheduler", "worker", "dashboard"}
CLIENTS = ("worker", "dashboard")  # the services that talk to the scheduler


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def dask_command(name: str, subcommand: str) -> dict[str, Any]:
    """The service's `dask SUBCOMMAND ...` command, parsed by the click command that `dask SUBCOMMAND` runs (an
    unknown option or a bad value raises)."""
    argv = service(name)["command"]
    assert isinstance(argv, list), f"{name}: give the command as a list (exec form), not a shell string"
    assert argv[:2] == ["dask", subcommand], f"{name} runs {argv[:2]}, not `dask {subcommand}`"
    (point,) = [p for p in entry_points(group="dask_cli") if p.name == subcommand]
    command = point.load()
    assert isinstance(command, click.Command)
    params = command.make_context(f"dask {subcommand}", list(argv[2:])).params
    assert params["preload_argv"] == (), f"{name}: arguments `dask {subcommand}` would not understand"
    return params


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment") or {}
    assert isinstance(env, dict), f"{name}: give the environment as a mapping"
    return {key: str(value) for key, value in env.items()}


MOUNT = re.compile(r"(?P<source>\$\{[^}]*\}|[^:]+):(?P<target>/[^:]*)(?::(?P<mode>ro|rw))?")


def volumes(name: str) -> dict[str, str]:
    """target -> source of the service's volumes (short syntax; a source may be a ${VARIABLE:-default})."""
    found = {}
    for mount in service(name).get("volumes", []):
        match = MOUNT.fullmatch(mount)
        assert match, f"{name}: a volume that is not SOURCE:TARGET[:ro]: {mount}"
        found[match["target"]] = match["source"]
    return found


def health_url(name: str) -> str:
    test = service(name)["healthcheck"]["test"]
    (url,) = re.findall(r"http://127\.0\.0\.1:\d+/\S*?(?=')", " ".join(test))
    return url


def port_of(address: str) -> str:
    return address.rsplit(":", 1)[1]


def test_three_services_from_the_image_the_dockerfile_builds() -> None:
    services = compose()["services"]
    assert set(services) == SERVICES
    assert {(s.get("build"), s.get("image")) for s in services.values()} == {(".", "lmscope:latest")}
    assert (ROOT / services["dashboard"]["build"] / "Dockerfile").resolve() == DOCKERFILE


def test_a_command_replaces_the_images_start_command_and_finds_the_source() -> None:
    """No ENTRYPOINT, so `command:` replaces the CMD; the `dask` script is not run from the source folder, so it finds
    lmscope's modules (which the scheduler unpickles too) through PYTHONPATH, set to the image's WORKDIR."""
    parsed = instructions(DOCKERFILE)
    assert "ENTRYPOINT" not in {keyword for keyword, _ in parsed}
    (workdir,) = [arguments for keyword, arguments in parsed if keyword == "WORKDIR"]
    for name in ("scheduler", "worker"):
        assert environment(name)["PYTHONPATH"] == workdir
    assert "command" not in service("dashboard")  # the image's own: streamlit, with its health check


def test_workers_and_dashboards_reach_the_scheduler_by_its_service_name_and_port() -> None:
    scheduler = dask_command("scheduler", "scheduler")
    address = f"tcp://scheduler:{scheduler['port']}"
    assert address == "tcp://scheduler:8786"
    assert dask_command("worker", "worker")["scheduler"] == address
    assert environment("dashboard")["LMSCOPE_SCHEDULER"] == address
    for name in CLIENTS:
        assert service(name)["depends_on"]["scheduler"] == {"condition": "service_healthy"}


def test_workers_run_one_task_at_a_time_and_scale() -> None:
    worker = dask_command("worker", "worker")
    assert (worker["nthreads"], worker["n_workers"], worker["nanny"]) == (1, "1", True)
    assert service("worker")["deploy"]["replicas"] >= 2
    env = environment("worker")
    assert {"LMSCOPE_WORKER_THREADS", "LMSCOPE_WORKER_MODELS"} <= set(env)


def test_workers_read_the_dask_settings_that_leave_torch_threads_to_lmscope() -> None:
    """Dask's nanny would set OMP_NUM_THREADS=1 in the worker: the Dask config the workers read unsets it."""
    folder = ROOT / environment("worker")["DASK_CONFIG"].removeprefix("/app/")
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from distributed.nanny import _get_env_variables as g; "
            "print(sorted(g('distributed.nanny.pre-spawn-environ')))",
        ],
        env={**os.environ, "DASK_CONFIG": str(folder)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "OMP_NUM_THREADS" not in found.stdout and "MALLOC_TRIM_THRESHOLD_" in found.stdout


def test_health_checks_ask_each_service_its_own_port() -> None:
    """The image's HEALTHCHECK asks the dashboard's port, so the scheduler and the workers have their own (else they
    are never healthy, and a service that waits for a healthy scheduler never starts)."""
    assert "healthcheck" not in service("dashboard")
    for name, subcommand in (("scheduler", "scheduler"), ("worker", "worker")):
        http = dask_command(name, subcommand)["dashboard_address"]
        assert health_url(name) == f"http://127.0.0.1:{port_of(http)}/health"


def test_settings_named_are_ones_lmscope_reads_and_the_readme_documents() -> None:
    named = set(re.findall(r"LMSCOPE_[A-Z0-9_]+", COMPOSE.read_text()))
    assert {"LMSCOPE_SCHEDULER", "LMSCOPE_WORKER_MODELS"} <= named
    read = set(re.findall(r'"(LMSCOPE_[A-Z0-9_]+)"', (ROOT / "runtime" / "settings.py").read_text()))
    assert named <= read, f"not read by runtime/settings.py: {sorted(named - read)}"
    documented = set(re.findall(r"^\| `(LMSCOPE_[A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(), re.MULTILINE))
    assert named <= documented, f"not in the README's environment table: {sorted(named - documented)}"


def test_volumes_are_declared_and_mounted_where_the_image_reads_them() -> None:
    declared = set(compose().get("volumes") or {})
    named = {
        source
        for name in SERVICES
        for source in volumes(name).values()
        if not source.startswith((".", "/", "~", "$"))  # bind mounts of host folders
    }
    assert named == declared
    image_env = env_values(instructions(DOCKERFILE))
    cache_dir = image_env["LMSCOPE_CACHE_DIR"]
    assert volumes("dashboard")[cache_dir] in declared  # the result cache outlives the container, shared by replicas
    assert cache_dir not in volumes("worker")  # only the dashboard writes it
    for root in image_env["LMSCOPE_MODEL_ROOTS"].split(":"):  # a folder model is named by its path: same on both
        assert volumes("dashboard")[root] == volumes("worker")[root]


def compose_command() -> list[str]:
    """Docker's compose plugin (`docker compose`), else the standalone `docker-compose`."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    assert standalone, "neither `docker compose` nor `docker-compose` is installed (`make test` installs the latter)"
    return [standalone]


@pytest.mark.docker
def test_docker_compose_accepts_the_file() -> None:
    """Compose's own schema and interpolation (no Docker engine needed)."""
    done = subprocess.run(
        [*compose_command(), "--file", str(COMPOSE), "config", "--quiet"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
