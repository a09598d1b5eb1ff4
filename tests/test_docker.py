"""The Dockerfile: hadolint accepts it, and its install steps and start command work (checked without Docker)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from runtime.settings import settings
from tests.browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS
from tests.server import serving

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
PREPARE = ["python", "-m", "lmscope", "prepare"]
WARM = ["python", "-m", "ui.warm"]

Instruction = tuple[str, str]  # (keyword in capitals, its arguments)


def instructions(dockerfile: Path) -> list[Instruction]:
    """A Dockerfile's instructions, with comments dropped and backslash-continued lines joined."""
    parsed: list[Instruction] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        parsed.append((keyword.upper(), arguments.strip()))
        pending = ""
    return parsed


def env_values(parsed: list[Instruction]) -> dict[str, str]:
    """The variables that the ENV instructions set (KEY=value form)."""
    return dict(
        token.split("=", 1) for keyword, arguments in parsed if keyword == "ENV" for token in shlex.split(arguments)
    )


def python_steps(parsed: list[Instruction]) -> list[list[str]]:
    """The pip and python commands of the RUN instructions, in order (the apt and user steps need Debian and root)."""
    return [
        argv
        for keyword, arguments in parsed
        if keyword == "RUN"
        for command in arguments.split("&&")
        if (argv := shlex.split(command)) and argv[0] in {"pip", "python"}
    ]


def start_command(parsed: list[Instruction]) -> list[str]:
    """The CMD instruction's JSON array."""
    commands = [json.loads(arguments) for keyword, arguments in parsed if keyword == "CMD"]
    assert commands, "the Dockerfile has no CMD"
    return commands[-1]


def in_venv(argv: list[str], venv: Path) -> list[str]:
    """The command with its program (pip, python, streamlit) taken from the virtual environment."""
    program = venv / "bin" / argv[0]
    assert program.exists(), f"{argv[0]} is not installed in the virtual environment"
    return [str(program), *argv[1:]]


def on_loopback(argv: list[str], port: int) -> list[str]:
    """The start command with --server.port and --server.address replaced to listen on 127.0.0.1:port."""
    overrides = {"--server.port": str(port), "--server.address": "127.0.0.1"}
    replaced = []
    for arg in argv:
        name = arg.split("=", 1)[0]
        replaced.append(f"{name}={overrides.pop(name)}" if name in overrides else arg)
    assert not overrides, f"the start command does not set {', '.join(overrides)}"
    return replaced


def run_step(argv: list[str], env: dict[str, str]) -> None:
    """Run one build step from the repository root; fail the test with its output if it fails."""
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"`{shlex.join(argv)}` exited {done.returncode}:\n{output}"


def test_every_package_the_app_imports_is_copied_into_the_image() -> None:
    copied = {arguments.split()[0].rstrip("/") for keyword, arguments in instructions(DOCKERFILE) if keyword == "COPY"}
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages | {"app_pages", "app.py"} <= copied


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), f"hadolint is not installed next to {sys.executable} (requirements-test.txt)"
    done = subprocess.run(
        [str(hadolint), "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_install_steps_and_start_command_work_in_a_fresh_venv(tmp_path: Path) -> None:
    parsed = instructions(DOCKERFILE)
    steps = python_steps(parsed)
    assert any(argv[:2] == ["pip", "install"] for argv in steps), "the Dockerfile installs nothing with pip"
    assert PREPARE in steps, "the Dockerfile does not convert the built-in models at build time"
    assert WARM in steps, "the Dockerfile does not warm the result cache at build time"
    steps.remove(WARM)  # minutes of computing; test_warm.py runs it

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        **os.environ,
        **env_values(parsed),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        # The session's store is already prepared, so `prepare` only checks it; the rest stays in tmp_path.
        "LMSCOPE_MODEL_STORE": str(settings().model_store),
        "LMSCOPE_HOME": str(tmp_path / "home"),
        "LMSCOPE_CACHE_DIR": str(tmp_path / "cache"),
    }
    for argv in steps:
        run_step(in_venv(argv, venv), env)

    start = start_command(parsed)
    with serving(tmp_path / "server.log", lambda port: in_venv(on_loopback(start, port), venv), env) as server:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = chromium.new_page()
            page.goto(f"{server.url}/?model=/etc")  # a visitor's link to a folder outside /models
            page.wait_for_selector('[data-testid="stAlertContentError"]', timeout=WAIT_MS)
            assert "not available on this server" in page.locator('[data-testid="stAlertContentError"]').inner_text()
            chromium.close()


def test_the_image_hides_tracebacks_and_watches_no_files() -> None:
    """The image's environment, as `streamlit` reads it (its command line takes STREAMLIT_* variables)."""
    env = {**os.environ, **env_values(instructions(DOCKERFILE))}
    streamlit = Path(sys.executable).parent / "streamlit"
    done = subprocess.run([str(streamlit), "config", "show"], cwd=ROOT, env=env, capture_output=True, text=True)
    shown = dict(line.split(" = ", 1) for line in done.stdout.splitlines() if " = " in line and line[0] != "#")
    assert (shown["showErrorDetails"], shown["fileWatcherType"], shown["runOnSave"]) == ('"none"', '"none"', "false")


def test_the_image_restricts_models() -> None:
    env = env_values(instructions(DOCKERFILE))
    assert env["LMSCOPE_MODEL_ROOTS"] == "/models" and 0 < float(env["LMSCOPE_MAX_MODEL_GB"]) <= 8
