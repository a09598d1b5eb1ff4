"""Helpers shared by the tests: open app pages in AppTest, read their charts, call the CLI, ask the model directly."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from unittest import mock

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from runtime.handle import ModelHandle
from tests.conftest import ROOT
from ui.markdown import read
from views import cli as views_cli

APP = "app.py"
TIMEOUT = 300
UNIT_ROUNDOFF = 2.0**-24  # u of float32: a rounded operation is off by at most u of its result


def dot_spread(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """How far two float32 evaluations of z = x @ weight.T may lie apart, per entry of z (tokens x outputs).

    A dot product of length d summed in float32, in any order, is within gamma_d * sum_i |w_i x_i| of its exact
    value, gamma_d = d u / (1 - d u) (Higham, Accuracy and Stability of Numerical Algorithms, 3.1); two evaluations
    (batched or not, other threads, other kernels) are within twice that of each other. Their inputs x also differ
    by the rounding of the layers before: measured against a float64 pass of the built-ins, a float32 pass stayed
    within 31 u * sum_i |w_i x_i| at every MLP input (so two passes within 62 u), far inside 2 gamma_d (768 u to
    1,280 u for their widths)."""
    d = x.shape[-1]
    gamma = d * UNIT_ROUNDOFF / (1 - d * UNIT_ROUNDOFF)
    return 2 * gamma * (np.abs(x).astype(np.float64) @ np.abs(weight).astype(np.float64).T)


def open_page(page: str, timeout: float = TIMEOUT, **params: str) -> AppTest:
    """Open a page of the app as a browser would, with these URL query parameters (a run may take `timeout` s)."""
    at = AppTest.from_file(str(ROOT / APP), default_timeout=timeout)
    for key, value in params.items():
        at.query_params[key] = value
    if page != APP:
        at.switch_page(page)
    return at.run()


def texts(elements) -> str:
    """The text of a list of AppTest elements (errors, warnings, markdown), joined, as the reader sees it: without
    the backslashes and word joiners that keep user input from being read as Markdown (ui.markdown.literal)."""
    return read(" ".join(str(e.value) for e in elements))


def plotly_array(value: object) -> np.ndarray:
    """A Plotly JSON array: a plain list, or base64 {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict):
        shape = [int(d) for d in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    if value and isinstance(value[0], list):
        return np.array([[np.nan if v is None else v for v in row] for row in value], dtype=float)
    return np.array([np.nan if v is None else v for v in value], dtype=float)


def chart(at: AppTest, index: int) -> dict:
    """The Plotly figure (as JSON) of the index-th chart on the page."""
    return json.loads(at.get("plotly_chart")[index].proto.spec)


@dataclasses.dataclass
class Done:
    """What a command printed and its exit status, as subprocess.CompletedProcess has them."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, env: dict[str, str] | None = None) -> Done:
    """Run lmscope's command line on ARGS in this process, with `env` added to the environment for the call: what
    `python -m lmscope ARGS` prints and returns, without starting Python, torch and the models again. Settings read
    once per process (the engine: LMSCOPE_SCHEDULER, LMSCOPE_WORKERS) need `cli_process`."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = views_cli.main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return Done(code, out.getvalue(), err.getvalue())


def cli_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m lmscope ARGS` in a new process from the repository root, with `env` added to its environment."""
    return subprocess.run(
        [sys.executable, "-m", "lmscope", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def direct(handle: ModelHandle, token_ids: np.ndarray, **flags: bool):
    """The model's own outputs for one sequence, called directly (not through lmscope's probes)."""
    with torch.inference_mode():
        return handle.model(input_ids=torch.as_tensor(np.asarray(token_ids))[None], **flags)


def direct_attentions(handle: ModelHandle, token_ids: np.ndarray) -> list[np.ndarray]:
    """Per layer, output_attentions as (heads, n, n) float64 arrays."""
    return [a[0].double().numpy() for a in direct(handle, token_ids, output_attentions=True).attentions]


def assert_same(a: object, b: object, where: str = "result") -> None:
    """Equal, bit for bit: arrays with array_equal (NaN equal to NaN), dataclasses field by field."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for field in dataclasses.fields(a):
            assert_same(getattr(a, field.name), getattr(b, field.name), f"{where}.{field.name}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where
