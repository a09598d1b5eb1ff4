"""Where models are placed and in which float type (runtime.placement): the operator's choices checked before a load,
the float type in the fingerprint, and a real model held in bfloat16 on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Gemma3TextConfig, LlamaConfig

from probes import activations, attention
from runtime import cluster_worker, engine
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.models import info, load
from runtime.placement import device_of, host, placement, typed_fingerprint

TEXT = "Attention sinks soak up the weight of queries with nowhere else to look."
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")


@no_gpu
def test_auto_is_the_cpu_without_a_gpu_and_asking_for_one_is_a_message() -> None:
    assert device_of("auto") == torch.device("cpu")
    with pytest.raises(LmscopeError, match="sees 0 CUDA device"):
        device_of("cuda")


@pytest.mark.parametrize("choice", ["tpu", "gpu0", "mps"])
def test_other_devices_are_a_message(choice: str) -> None:
    with pytest.raises(LmscopeError, match="LMSCOPE_DEVICE"):
        device_of(choice)


@no_gpu
@pytest.mark.parametrize(
    ("choice", "dtype"), [("auto", torch.float32), ("float32", torch.float32), ("BFloat16", torch.bfloat16)]
)
def test_float_types(choice: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSCOPE_DTYPE", choice)
    assert placement(LlamaConfig()).dtype == dtype


def test_unknown_float_types_and_float16_for_gemma_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSCOPE_DEVICE", "cpu")
    with pytest.raises(LmscopeError, match="not a float type"):
        placement(LlamaConfig(), "float64")
    assert placement(LlamaConfig(), "float16").dtype == torch.float16
    with pytest.raises(LmscopeError, match="overflow float16"):
        placement(Gemma3TextConfig(), "float16")


def test_the_float_type_is_in_the_fingerprint_and_host_widens_half_floats() -> None:
    assert typed_fingerprint("abc", torch.float32) == "abc"
    assert typed_fingerprint("abc", torch.bfloat16) == "abc-bf16" != typed_fingerprint("abc", torch.float16)
    same = torch.ones(3)
    assert host(same).data_ptr() == same.data_ptr()  # no copy on the CPU in float32
    assert host(torch.ones(3, dtype=torch.bfloat16)).dtype == torch.float32


def test_smollm2_in_bfloat16_on_the_cpu(smollm2: ModelHandle, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSCOPE_DTYPE", "bfloat16")
    half = load(smollm2.name)
    assert half.dtype == torch.bfloat16 and half.fingerprint == f"{smollm2.fingerprint}-bf16"
    assert (info(half).device, info(half).dtype) == ("cpu", "bfloat16")
    a, b = (activations.run(h, TEXT, ResultCache(tmp_path / h.fingerprint)).value for h in (half, smollm2))
    assert a.dim_peak.dtype == np.float32 and np.allclose(a.max_abs, b.max_abs, rtol=0.1)
    assert (a.top_dims[:, 0] == b.top_dims[:, 0]).mean() > 0.9  # the same massive dimensions
    a, b = (attention.run(h, TEXT, ResultCache(tmp_path / h.fingerprint)).value for h in (half, smollm2))
    assert np.allclose(a.sink_share, b.sink_share, atol=0.03)


def test_a_process_on_the_meta_device_holds_shapes_and_says_what_it_cannot_do(
    smollm2: ModelHandle, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMSCOPE_DEVICE", "meta")
    shapes = load(smollm2.name)  # the dashboard of a cluster: modules and shapes, no weights
    assert shapes.device.type == "meta" and shapes.fingerprint == smollm2.fingerprint
    assert (info(shapes).n_parameters, shapes.n_layers) == (info(smollm2).n_parameters, smollm2.n_layers)
    with pytest.raises(LmscopeError, match="holds no model weights"):
        attention.run(shapes, TEXT, ResultCache(tmp_path))
    monkeypatch.setattr(engine, "_started", None)
    with pytest.raises(LmscopeError, match="need a Dask cluster"):
        engine.start()
    with pytest.raises(LmscopeError, match="must hold the weights"):
        cluster_worker.held(smollm2.name, "float32", smollm2.fingerprint)
