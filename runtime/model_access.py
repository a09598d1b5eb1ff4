"""Which models a server will load: the operator's roots (LMSCOPE_MODEL_ROOTS) and a memory limit
(LMSCOPE_MAX_MODEL_GB), both checked before a model is read.

LMSCOPE_MODEL_ROOTS unset: any model (one's own machine). `builtin`: the built-in models only. Folders separated
by ":": the built-ins and the models under those folders. A name outside what is allowed gets the same message
whether or not it exists, so that a visitor cannot probe the server's files. The size of a model is its
parameter count, read from its config (a model built on the meta device, which holds no weights) or from a GGUF
file's tensor table, times 4 bytes (lmscope runs models in float32).
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.errors import LmscopeError
from runtime.settings import settings

BYTES_PER_PARAMETER = 4


class NotAllowed(LmscopeError):
    """The server's operator does not allow this model."""

    def __init__(self, name: str, roots: str) -> None:
        where = "" if roots == "builtin" else " and models under the folders its operator allows"
        super().__init__(
            f"Model '{name}' is not available on this server: it loads the built-in models{where} "
            "(LMSCOPE_MODEL_ROOTS). Choose a built-in model, or ask the operator."
        )


def allowed_roots() -> list[Path] | None:
    """The folders models may come from; None when any model may be loaded, [] for built-ins only."""
    roots = settings().model_roots
    if roots is None:
        return None
    if roots == "builtin":
        return []
    return [Path(part).expanduser().resolve() for part in roots.split(os.pathsep) if part.strip()]


def check_allowed(name: str) -> None:
    """Refuse a model that is not a built-in when the operator restricts models, before looking at any file.

    A path counts as inside a root when it is, after symbolic links and `..` are resolved."""
    roots = allowed_roots()
    if roots is None:
        return
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or path.suffix == ".gguf" or os.sep in name
    inside = looks_like_path and any(path.resolve().is_relative_to(root) for root in roots)
    if not inside:
        raise NotAllowed(name, settings().model_roots or "")


def gguf_parameters(path: Path) -> int:
    """The parameter count of a GGUF file, from its tensor table (the weights are not read)."""
    from gguf import GGUFReader  # heavy; only GGUF files need it

    try:
        return sum(int(tensor.n_elements) for tensor in GGUFReader(path).tensors)
    except (ValueError, OSError, KeyError) as exc:
        raise LmscopeError(f"{path.name} is not a readable GGUF file: {exc}") from exc


def check_size(name: str, n_parameters: int) -> None:
    """Refuse a model whose float32 weights exceed LMSCOPE_MAX_MODEL_GB."""
    limit = settings().max_model_gb
    needed = n_parameters * BYTES_PER_PARAMETER / 1e9
    if needed > limit:
        raise LmscopeError(
            f"Model '{name}' has {n_parameters / 1e9:.2f} B parameters, {needed:.1f} GB in float32: more than this "
            f"server's limit of {limit:g} GB (LMSCOPE_MAX_MODEL_GB)."
        )
