"""Probe results as bytes without pickle: a JSON tree, with numpy arrays stored as .npy blocks after it.

A result is a dataclass of numpy arrays, strings, numbers, lists, tuples, dicts and other such dataclasses. Reading
never imports a module or runs code: a dataclass is rebuilt only when its class is one of lmscope's, already
imported (the probe modules import the `results` modules their results are defined in); arrays are read with
`allow_pickle=False`. Bytes that are not such a result raise `Undecodable`, so a
tampered cache at worst makes a result be computed again.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
from typing import Any

import numpy as np

MAGIC = b"LMSCOPE-RESULT-1\n"
# Modules whose dataclasses may be rebuilt from the cache.
PACKAGES = ("results.", "probes.", "lecture.")


class Undecodable(ValueError):
    """The bytes are not a result this codec wrote (damaged, tampered with, or from another version)."""


def _tree(value: Any, arrays: list[np.ndarray]) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError("arrays of Python objects cannot be cached")
        arrays.append(array)
        return {"array": len(arrays) - 1, "scalar": isinstance(value, np.generic)}
    if isinstance(value, list):
        return [_tree(v, arrays) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [_tree(v, arrays) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[_tree(k, arrays), _tree(v, arrays)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if not cls.__module__.startswith(PACKAGES):
            raise TypeError(f"{cls.__module__}.{cls.__qualname__} is not an lmscope result")
        fields = {f.name: _tree(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}
        return {"dataclass": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    raise TypeError(f"a {type(value).__name__} cannot be cached")


def encode(value: Any) -> bytes:
    """The value as bytes; TypeError for anything that is not made of the types above."""
    arrays: list[np.ndarray] = []
    header = json.dumps(_tree(value, arrays), ensure_ascii=False, allow_nan=False).encode()
    out = io.BytesIO()
    out.write(MAGIC)
    out.write(len(header).to_bytes(8, "little"))
    out.write(header)
    for array in arrays:
        np.lib.format.write_array(out, np.require(array, requirements="C"), allow_pickle=False)
    return out.getvalue()


def _result_class(name: str) -> type:
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name) if module_name.startswith(PACKAGES) else None
    cls: Any = module
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise Undecodable(f"{name} is not a loaded lmscope result class")
    return cls


def _value(node: Any, arrays: list[np.ndarray]) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_value(v, arrays) for v in node]
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise Undecodable("unexpected node")
    if "float" in node:
        return float(node["float"])
    if "array" in node:
        array = arrays[node["array"]]
        return array[()] if node.get("scalar") else array
    if "tuple" in node:
        return tuple(_value(v, arrays) for v in node["tuple"])
    if "dict" in node:
        return {_key(_value(k, arrays)): _value(v, arrays) for k, v in node["dict"]}
    if "dataclass" in node:
        cls = _result_class(node["dataclass"])
        return cls(**{name: _value(v, arrays) for name, v in node["fields"].items()})
    raise Undecodable("unexpected node")


def _key(value: Any) -> Any:
    if isinstance(value, (list, dict, np.ndarray)):
        raise Undecodable("unhashable key")
    return value


def decode(data: bytes) -> Any:
    """The value `encode` wrote; Undecodable for anything else."""
    try:
        if not data.startswith(MAGIC):
            raise Undecodable("not an lmscope result")
        stream = io.BytesIO(data)
        stream.seek(len(MAGIC))
        size = int.from_bytes(stream.read(8), "little")
        tree = json.loads(stream.read(size).decode())
        arrays = []
        while stream.tell() < len(data):
            arrays.append(np.lib.format.read_array(stream, allow_pickle=False))
        return _value(tree, arrays)
    except Undecodable:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, UnicodeDecodeError, EOFError) as exc:
        raise Undecodable(f"{type(exc).__name__}: {exc}") from exc
