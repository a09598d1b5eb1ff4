"""The lecture as the dashboard and the export use it: presets.toml, loaded once and checked against the figures
the registered views declare (views.registry, the one list of views)."""

from __future__ import annotations

from functools import cache

import views  # noqa: F401  (registers every view's figures)
from lecture.presets import PATH, Lecture, Preset, Section, load
from runtime.errors import LmscopeError
from views.registry import figure_pages


@cache
def _lecture() -> Lecture:
    return load(PATH, figure_pages())


def presets() -> dict[str, Preset]:
    """Every preset by name, in the file's order (loaded and checked once)."""
    return dict(_lecture().presets)


def sections() -> list[Section]:
    """The lecture's sections in order, each with its presets."""
    return list(_lecture().sections)


def preset(name: str) -> Preset:
    """The preset called `name`; an LmscopeError listing the known presets otherwise."""
    known = _lecture().presets
    if name not in known:
        raise LmscopeError(f"Unknown preset '{name}'. Known presets: {', '.join(known)}.")
    return known[name]
