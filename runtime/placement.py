"""Where a model's weights live and in which float type, and the one way probes bring a tensor back to the host.

The operator chooses with LMSCOPE_DEVICE (auto: the GPU when torch sees one; meta: no weights in this process, for a
dashboard whose Dask cluster computes everything) and LMSCOPE_DTYPE (auto: bfloat16 on a GPU, float32 elsewhere).
Both are checked before a model is loaded. The float type is part of what a result is
about, so a model held in another type than float32 gets a fingerprint of its own (its results are cached apart);
the device is not: the same float type on another device changes results only by rounding, as thread counts do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers.configuration_utils import PretrainedConfig

from runtime.errors import LmscopeError
from runtime.settings import settings

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_SHORT = {torch.bfloat16: "bf16", torch.float16: "fp16"}
# Families whose activations outgrow float16's range (largest finite 65504): Gemma 2 and 3 were trained in
# bfloat16 and their residual stream carries values far beyond it, which float16 turns into inf and then NaN.
_NO_FLOAT16 = ("gemma2", "gemma3")


@dataclass(frozen=True)
class Placement:
    """The device a model is placed on and the float type of its weights."""

    device: torch.device
    dtype: torch.dtype


def dtype_name(dtype: torch.dtype) -> str:
    """The name LMSCOPE_DTYPE uses for a float type (float32, bfloat16, float16)."""
    return _NAMES.get(dtype, str(dtype).removeprefix("torch."))


def device_name(device: torch.device) -> str:
    """The device in words: "cpu", "cuda:0 (NVIDIA H200)"."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def device_of(choice: str) -> torch.device:
    """The device LMSCOPE_DEVICE names, checked against what this process's torch can see."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError) as exc:
        raise LmscopeError(f"LMSCOPE_DEVICE={choice!r} is not a device: use auto, cpu, cuda or cuda:N.") from exc
    if device.type in ("cpu", "meta"):
        return device
    if device.type != "cuda":
        raise LmscopeError(f"LMSCOPE_DEVICE={choice!r}: lmscope places models on cpu, cuda or meta only.")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if (device.index or 0) >= count:
        raise LmscopeError(f"LMSCOPE_DEVICE={choice!r}, but this machine's torch sees {count} CUDA device(s).")
    return device


def placement(config: PretrainedConfig, dtype: str | None = None) -> Placement:
    """Where and in which float type a model of this config is loaded: LMSCOPE_DEVICE and `dtype` (what a dashboard
    asked a cluster worker for) or else LMSCOPE_DTYPE. Refuses float16 for the families it breaks."""
    device = device_of(settings().device)
    choice = (dtype or settings().dtype).strip().lower()
    if choice == "auto":
        chosen = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif choice in DTYPES:
        chosen = DTYPES[choice]
    else:
        raise LmscopeError(f"LMSCOPE_DTYPE={choice!r} is not a float type: use auto, {', '.join(DTYPES)}.")
    family = str(config.get_text_config().model_type or "")
    if chosen == torch.float16 and family.startswith(_NO_FLOAT16):
        raise LmscopeError(
            f"{family} models overflow float16 (their activations exceed its largest value, 65504) and give NaN: "
            "use LMSCOPE_DTYPE=bfloat16 or float32."
        )
    return Placement(device, chosen)


def typed_fingerprint(fingerprint: str, dtype: torch.dtype) -> str:
    """The fingerprint of a model's files held in `dtype`: unchanged for float32, tagged otherwise."""
    return fingerprint if dtype == torch.float32 else f"{fingerprint}-{_SHORT.get(dtype, dtype_name(dtype))}"


_NO_WEIGHTS = (
    "This process holds no model weights (LMSCOPE_DEVICE=meta): its computations run on the Dask cluster "
    "(LMSCOPE_SCHEDULER), and this one could not go there (the cluster is gone, its workers hold another version of "
    "the model, or the computation needs a private copy of it)."
)


def require_weights(device: torch.device) -> None:
    """Raise LmscopeError for a model placed on the meta device: it has a shape but no values."""
    if device.type == "meta":
        raise LmscopeError(_NO_WEIGHTS)


def host(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` detached and on the CPU, 16-bit floats widened to float32 (numpy has no bfloat16); a CPU float32
    tensor comes back as it is, without a copy. A meta tensor (no weights here) is an LmscopeError."""
    require_weights(tensor.device)
    tensor = tensor.detach().cpu()
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """`host(tensor)` as a numpy array (sharing memory with a CPU tensor)."""
    return host(tensor).numpy()
