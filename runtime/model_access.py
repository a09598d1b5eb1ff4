"""Which models a server will load: the operator's roots (LMSCOPE_MODEL_ROOTS) and a memory limit
(LMSCOPE_MAX_MODEL_GB), both checked before a model is read.

LMSCOPE_MODEL_ROOTS unset: any model (one's own machine). `builtin`: the built-in models only. Folders separated
by ":": the built-ins and the models under those folders. A name outside what is allowed gets the same message
whether or not it exists, so that a visitor cannot probe the server's files. The size of a model is its
parameter count, read from its config (a model built on the meta device, which holds no weights) or from a GGUF
file's tensor table, times 4 bytes (lmscope runs models in float32). Before that build, a config's counts of
repeated modules are checked: the build takes time and memory in proportion to them (a config.json asking for 10^8
layers held a server for minutes and 16 GB), and no published model comes near the limits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from runtime.errors import LmscopeError
from runtime.settings import settings

BYTES_PER_PARAMETER = 4
NAME_CHARACTERS = 1024  # of a model name or path
MAX_LAYERS = 1_000  # blocks of a model, encoder or decoder (published models have at most a few hundred)
MAX_EXPERTS = 4_096  # experts of an MoE block
_LAYER_FIELDS = ("num_hidden_layers", "num_layers", "num_decoder_layers", "encoder_layers", "decoder_layers", "n_layer")
_EXPERT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
# Each counted config field: its limit and what it counts.
_COUNTS = {f: (MAX_LAYERS, "layers") for f in _LAYER_FIELDS} | {f: (MAX_EXPERTS, "experts") for f in _EXPERT_FIELDS}


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


def model_path(name: str) -> Path:
    """The path a model name would be (~ expanded); a name that cannot be a path here is a clear error."""
    if len(name) > NAME_CHARACTERS:
        raise LmscopeError(
            f"A model name or path has at most {NAME_CHARACTERS:,} characters; this one has {len(name):,}."
        )
    try:
        return Path(name).expanduser()
    except RuntimeError as exc:  # ~user, for a user this system does not have
        raise LmscopeError(f"'{name}' is not a path on this server: {exc}") from exc


def check_allowed(name: str) -> None:
    """Refuse a model that is not a built-in when the operator restricts models, before looking at any file.

    A path counts as inside a root when it is, after symbolic links and `..` are resolved."""
    path = model_path(name)
    roots = allowed_roots()
    if roots is None:
        return
    looks_like_path = name.startswith((".", "/", "~")) or path.suffix == ".gguf" or os.sep in name
    inside = looks_like_path and any(path.resolve().is_relative_to(root) for root in roots)
    if not inside:
        raise NotAllowed(name, settings().model_roots or "")


def gguf_parameters(path: Path) -> int:
    """The parameter count of a GGUF file, from its tensor table (the weights are not read)."""
    from gguf import GGUFReader  # heavy; only GGUF files need it

    try:
        return sum(int(tensor.n_elements) for tensor in GGUFReader(path).tensors)
    except Exception as exc:  # the reader meets a damaged file with whatever fails first (IndexError, struct.error...)
        raise LmscopeError(f"{path.name} is not a readable GGUF file: {type(exc).__name__}: {exc}") from exc


def check_structure(name: str, fields: Mapping[str, object]) -> None:
    """Refuse a config (config.json as read, before transformers builds anything from it: some configs already
    list every layer) that asks for more layers or experts than MAX_LAYERS and MAX_EXPERTS, in any part of it (a
    text or vision model's config too)."""
    for field, value in fields.items():
        if isinstance(value, Mapping):
            check_structure(name, value)
            continue
        limit, what = _COUNTS.get(field, (None, ""))
        if limit is not None and isinstance(value, int) and value > limit:
            raise LmscopeError(
                f"Model '{name}' asks for {value:,} {what} ({field} in its config): lmscope builds at most {limit:,}."
            )


def check_size(name: str, n_parameters: int) -> None:
    """Refuse a model whose float32 weights exceed LMSCOPE_MAX_MODEL_GB."""
    limit = settings().max_model_gb
    needed = n_parameters * BYTES_PER_PARAMETER / 1e9
    if needed > limit:
        raise LmscopeError(
            f"Model '{name}' has {n_parameters / 1e9:.2f} B parameters, {needed:.1f} GB in float32: more than this "
            f"server's limit of {limit:g} GB (LMSCOPE_MAX_MODEL_GB)."
        )
