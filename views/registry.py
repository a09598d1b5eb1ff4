"""The view registry: each view of lmscope is declared once, and the navigation, the CLI and the lecture's preset
schema are read from here.

A view is one dashboard page with what belongs to it: the CLI commands that print its probes' results as JSON, and
the figures a lecture preset can ask for by name (each a draw function over a `Run`, the same probe -> figure code
the page calls). Declaring a `View` and passing it to `register` is all it takes to add one.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import plotly.graph_objects as go

from probes.batches import Progress
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle

T = TypeVar("T")


@dataclass
class Run:
    """What a figure's draw function works with, and what it reports back: the results, their cache hits, and the
    choices the draw made (options as used, heads and layers picked from measurements)."""

    handle: ModelHandle
    options: Mapping[str, object]
    text_value: str | None
    cache: ResultCache
    on_progress: Progress | None = None
    label: str = "this figure"  # who asked, for error messages ("Preset 'x'")
    others: tuple[ModelHandle, ...] = ()  # the models a comparing figure draws beside `handle`
    hits: list[bool] = field(default_factory=list)
    results: dict[str, object] = field(default_factory=dict)
    used: dict[str, object] = field(default_factory=dict)
    picked: dict[str, object] = field(default_factory=dict)

    def option(self, key: str) -> object:
        """An option of the request; a clear error when it lacks it."""
        if key not in self.options:
            raise LmscopeError(f"{self.label} needs the option '{key}'.")
        value = self.options[key]
        self.used.setdefault(key, value)
        return value

    def integer(self, key: str) -> int:
        """An option that must be a whole number."""
        value = self.option(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise LmscopeError(f"{self.label}: option '{key}' must be a whole number, not {value!r}.")
        return value

    def number(self, key: str) -> float:
        """An option that must be a number."""
        value = self.option(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LmscopeError(f"{self.label}: option '{key}' must be a number, not {value!r}.")
        return float(value)

    def integers(self, key: str) -> list[int]:
        """An option that must be a list of whole numbers."""
        value = self.option(key)
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise LmscopeError(f"{self.label}: option '{key}' must be a list of whole numbers, not {value!r}.")
        return [int(v) for v in value]

    def strings(self, key: str) -> list[str]:
        """An option that must be a list of strings."""
        value = self.option(key)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise LmscopeError(f"{self.label}: option '{key}' must be a list of strings, not {value!r}.")
        return list(value)

    def flag(self, key: str) -> bool:
        """An option that must be true or false."""
        value = self.option(key)
        if not isinstance(value, bool):
            raise LmscopeError(f"{self.label}: option '{key}' must be true or false, not {value!r}.")
        return value

    def string(self, key: str) -> str:
        """An option that must be a string."""
        value = self.option(key)
        if not isinstance(value, str):
            raise LmscopeError(f"{self.label}: option '{key}' must be a string, not {value!r}.")
        return value

    def use(self, key: str, value: object) -> None:
        """Record the value an option actually took (a default, or one adapted to the model)."""
        self.used[key] = value

    def pick(self, **values: object) -> None:
        """Record what the draw chose from measurements; they go into the page's URL too."""
        self.picked.update(values)

    @property
    def text(self) -> str:
        """The text to run on; a clear error when the request has none."""
        if self.text_value is None:
            raise LmscopeError(f"{self.label} needs a text.")
        return self.text_value

    def keep(self, name: str, cached: Cached[T]) -> T:
        """A probe result, kept for checks and counted for `cached`."""
        self.hits.append(cached.hit)
        self.results[name] = cached.value
        return cached.value


@dataclass(frozen=True)
class Figure:
    """A figure a lecture preset can name: the probes it runs (their versions are recorded) and how it is drawn."""

    name: str
    draw: Callable[[Run], go.Figure]
    probes: tuple[ModuleType, ...] = ()
    compares: bool = False  # draws `Run.others` beside the model: its preset names them (`compare`)


@dataclass(frozen=True)
class Command:
    """A CLI subcommand: its name and help, the arguments it takes, the JSON-ready value it prints, and the older
    names it still answers to."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], object]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class View:
    """One view: its page (a script relative to the project root), how the navigation lists it, and its CLI
    commands and preset figures."""

    key: str
    title: str
    summary: str  # one line for the home page's list of views
    icon: str  # a Material Symbols name
    group: str  # the navigation section
    page: str
    caption: str = ""  # the page's lead paragraph, under its title
    aliases: tuple[str, ...] = ()  # old URL paths that still open this view
    commands: tuple[Command, ...] = ()
    figures: tuple[Figure, ...] = ()

    @property
    def url_path(self) -> str:
        """The page's URL path (see `url_path`)."""
        return url_path(self.page)


def url_path(page: str) -> str:
    """A page's URL path: its file name without the ordering number ("4_Attention_sinks.py" -> "Attention_sinks"),
    as Streamlit infers it, so links stay stable."""
    return re.sub(r"^[0-9]*[_ -]*", "", Path(page).stem)


_views: dict[str, View] = {}


def register(view: View) -> View:
    """Add a view; its key, page, commands and figures must be new (a clear error names the clash)."""
    taken = {
        "key": {v.key for v in _views.values()},
        "page": {path for v in _views.values() for path in (v.url_path, *v.aliases)},
        "command": {c.name for v in _views.values() for c in v.commands},
        "figure": {f.name for v in _views.values() for f in v.figures},
    }
    mine = {
        "key": {view.key},
        "page": {view.url_path, *view.aliases},
        "command": {c.name for c in view.commands},
        "figure": {f.name for f in view.figures},
    }
    for what, names in mine.items():
        clash = names & taken[what]
        if clash:
            raise LmscopeError(f"View '{view.key}': {what} {', '.join(sorted(clash))} is already registered.")
    _views[view.key] = view
    return view


def _order(view: View) -> tuple[int, str]:
    number = re.match(r"[0-9]+", Path(view.page).name)
    return (int(number.group()) if number else 1_000_000, view.key)


def views() -> list[View]:
    """Every registered view in the navigation's order: by the number its page file starts with, unnumbered last."""
    return sorted(_views.values(), key=_order)


def figures() -> dict[str, tuple[View, Figure]]:
    """Every preset figure by name, with the view that draws it."""
    return {f.name: (v, f) for v in views() for f in v.figures}


def figure_pages() -> dict[str, tuple[str, bool]]:
    """The page of each preset figure and whether it compares models, by figure name (what a preset file is
    checked against)."""
    return {name: (view.page, figure.compares) for name, (view, figure) in figures().items()}


def commands() -> Sequence[Command]:
    """Every view's CLI commands, in the navigation's order."""
    return [c for v in views() for c in v.commands]
