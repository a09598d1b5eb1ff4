"""The page scaffold: a page names its file, what it needs and its settings; the frame, the guards, the URL and
session state, and the way errors are shown come from here, the same on every page.

    page = start(__file__, Need.DECODER, Need.TEXT)
    page.settings(Setting("layer", "int", 0, lower=0, upper=page.handle.n_layers - 1))
    layer = page.widget("layer", st.number_input, "Layer")

A setting starts from the URL (checked; a bad value falls back to its default with a warning), lives in session
state under a key of the page's own (`page.key(name)`), is reset when a new model or text no longer allows it, and
is written back into the URL so that a copied link reopens the view.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import plotly.graph_objects as go
import streamlit as st

from probes import neurons, routing
from runtime.builtin import DERIVED, MOEFIED, TRAINED_MOE
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from ui import state
from ui.charts import show_figure
from ui.layout import page as frame
from ui.markdown import literal
from ui.models import current_model, show_error
from ui.navigation import view_of
from views.registry import View

T = TypeVar("T")
Kind = Literal["int", "float", "bool", "choice", "multi", "str"]
SHOWN_OPTIONS = 12  # a message lists at most this many of a setting's options
SHOWN_CHARACTERS = 60  # a message quotes at most this much of a link's value

# The MoEs built from SmolLM2 that a page needing an MoE offers on a dense model, by name.
MOE_CHOICES = {TRAINED_MOE.name: "Use the trained MoE", MOEFIED.name: "Use the MoEfication (untrained)"}


def _cut(raw: str) -> str:
    """A link's value as a message quotes it: its first SHOWN_CHARACTERS characters."""
    return raw if len(raw) <= SHOWN_CHARACTERS else f"{raw[:SHOWN_CHARACTERS]}…"


class Need(enum.Enum):
    """What a view (or a section of it) needs from the user's choice."""

    MODEL = enum.auto()
    DECODER = enum.auto()
    MOE = enum.auto()
    DENSE_MLP = enum.auto()
    TEXT = enum.auto()


@dataclass(frozen=True)
class Setting:
    """One choice a page offers: its URL parameter, its type, its default and the values it allows (numbers within
    lower..upper, inclusive; choices among options; strings of at most `length` characters)."""

    name: str
    kind: Kind
    default: Any
    lower: float | None = None
    upper: float | None = None
    options: Sequence[Any] = ()
    length: int = 200
    url: bool = True  # mirrored in the URL; off for choices that a link does not carry
    check: Callable[[Any], None] | None = None  # raises LmscopeError for a value this model or text cannot use
    allowed: str = ""  # how a message names the allowed values ("a weight matrix of this model")

    def _problem(self, value: Any) -> str | None:
        """Why a value does not fit, or None."""
        if self.kind in ("int", "float"):
            low = -float("inf") if self.lower is None else self.lower
            high = float("inf") if self.upper is None else self.upper
            if not low <= value <= high:  # also False for NaN
                return f"is out of range ({self._number(low)} to {self._number(high)})"
        elif self.kind == "choice" and value not in self.options:
            return f"is not {self._allowed()}"
        elif self.kind == "multi" and not set(value) <= set(self.options):
            return f"are not all {self._allowed()}"
        elif self.kind == "str" and len(value) > self.length:
            return f"is longer than {self.length} characters"
        if self.check is not None:
            try:
                self.check(value)
            except LmscopeError as exc:
                return f"cannot be used here ({str(exc).rstrip('.')})"
        return None

    def _number(self, value: float) -> str:
        return str(int(value)) if self.kind == "int" and abs(value) != float("inf") else str(value)

    def _allowed(self) -> str:
        if self.allowed:
            return self.allowed
        shown = ", ".join(map(str, self.options[:SHOWN_OPTIONS]))
        return f"among {shown}{', …' if len(self.options) > SHOWN_OPTIONS else ''}"

    def parse(self, raw: str) -> Any:
        """The value a URL parameter spells; ValueError if it spells none of this kind."""
        if self.kind == "int":
            return int(raw)
        if self.kind == "float":
            return float(raw)
        if self.kind == "bool":
            if raw not in ("0", "1"):
                raise ValueError(raw)
            return raw == "1"
        if self.kind == "choice":
            return next((o for o in self.options if str(o) == raw), raw)
        if self.kind == "multi":
            spelled = {str(o): o for o in self.options}
            return [spelled.get(part.strip(), part.strip()) for part in raw.split(",") if part.strip()]
        return raw  # whole: a value over its length is refused with a message, never cut into another value

    def spell(self, value: Any) -> str:
        """The value as the URL writes it."""
        if self.kind == "bool":
            return str(int(value))
        if self.kind == "float":
            return f"{value:g}"
        if self.kind == "multi":
            return ",".join(map(str, value))
        return str(value)

    def from_url(self, raw: str) -> tuple[Any, str | None]:
        """The value of a URL parameter, or the default with a message saying why."""
        shown = f"{self.name} {self.spell(self.default)}" if self.kind != "multi" else "the defaults"
        try:
            value = self.parse(raw)
        except ValueError:
            what = "0 or 1" if self.kind == "bool" else "a number"
            return self.default, f"The link's {self.name}={_cut(raw)!r} is not {what}; showing {shown}."
        problem = self._problem(value)
        if problem is None:
            return value, None
        spelled = repr(_cut(raw)) if self.kind in ("choice", "multi", "str") else _cut(str(value))
        return self.default, f"The link's {self.name}={spelled} {problem}; showing {shown}."

    def kept(self, value: Any) -> Any:
        """A value kept from an earlier run, or what this model and text allow of it (the default, or for several
        choices those still allowed)."""
        if self.kind == "multi":
            return [v for v in value if v in self.options]
        return value if self._problem(value) is None else self.default


class Page:
    """A page being drawn: its view, the model it runs on, and its settings (kept per page in session state)."""

    def __init__(self, view: View) -> None:
        self.view = view
        self._settings: dict[str, Setting] = {}
        self._link = st.query_params.to_dict()  # as opened: writing the URL drops what is not declared yet

    def key(self, name: str) -> str:
        """The session state key of a setting or widget of this page (scoped by the view's key)."""
        return f"{self.view.key}_{name}"

    @property
    def handle(self) -> ModelHandle:
        """The chosen model, loaded; if it cannot be, the page shows why and stops."""
        return current_model()

    def show(self, fig: go.Figure, key: str, name: str, **chart_options: Any) -> object:
        """Draw a figure of the page's model (widget key scoped like `key`, downloads named `name`), its
        sliding-window layers marked on any per-layer axis; returns what st.plotly_chart returns."""
        return show_figure(fig, self.key(key), name, windows=self.handle.layer_windows, **chart_options)

    @property
    def text(self) -> str:
        """The chosen text."""
        return state.text()

    def settings(self, *settings: Setting) -> None:
        """Start each setting from the URL the first time (a warning for a bad value), keep it afterwards (reset
        when this model or text no longer allows it), then write every setting of the page into the URL."""
        for setting in settings:
            self._settings[setting.name] = setting
            key = self.key(setting.name)
            if key in st.session_state:
                st.session_state[key] = setting.kept(st.session_state[key])
                continue
            raw = self._link.get(setting.name) if setting.url else None
            value, problem = (setting.default, None) if raw is None else setting.from_url(raw)
            if problem:
                st.warning(literal(problem))
            st.session_state[key] = value
        state.sync_url(**{s.name: s.spell(self.value(s.name)) for s in self._settings.values() if s.url})

    def value(self, name: str) -> Any:
        """A setting's (or keyed widget's) current value."""
        return st.session_state.get(self.key(name))

    def set(self, name: str, value: Any) -> None:
        """Change a setting, from a callback (a click on a chart, a button) before its widget is drawn."""
        st.session_state[self.key(name)] = value

    def widget(self, name: str, draw: Callable[..., Any], label: str, **options: Any) -> Any:
        """Draw a setting's widget (st.number_input, st.slider, st.selectbox, st.radio, st.toggle, st.text_input,
        ... or a column's) with its limits or options and its key; returns the widget's value."""
        setting = self._settings[name]
        if setting.kind in ("int", "float"):
            cast = int if setting.kind == "int" else float
            low, high = (None if v is None else cast(v) for v in (setting.lower, setting.upper))
            return draw(label, **{"min_value": low, "max_value": high, **options}, key=self.key(name))
        if setting.kind in ("choice", "multi"):
            return draw(label, setting.options, key=self.key(name), **options)
        if setting.kind == "str":
            options.setdefault("max_chars", setting.length)
        return draw(label, key=self.key(name), **options)

    def lacks(self, need: Need, where: str = "this section") -> bool:
        """Whether the model lacks what a section needs; if it does, the page says so, the same way everywhere (a
        model that cannot be loaded stops the page with why)."""
        if need == Need.DECODER and not self.handle.is_causal:
            st.info(
                f"{self.handle.name} is an encoder: it predicts no next token, which {where} needs. Pick a decoder "
                "(SmolLM2 or Gemma 3) on the home page."
            )
            return True
        if need == Need.MODEL:
            current_model()  # loaded, or the page stops with why
            return False
        if need == Need.TEXT and not self.text.strip():
            st.info(f"The text is empty, and {where} reads it: type one on the home page.")
            return True
        if need == Need.DENSE_MLP and not neurons.has_dense_mlp(self.handle):
            st.info(
                f"{self.handle.name} sends each token through a few experts instead of one dense MLP, and {where} "
                "needs a dense MLP. Pick a dense model on the home page."
            )
            derived = DERIVED.get(self.handle.name)
            if derived is not None and st.button(f"Use {derived.base}, the dense model it was built from"):
                state.choose(model=derived.base)
                st.rerun()
            return True
        if need == Need.MOE:
            try:
                routing.routers(self.handle)
            except LmscopeError as exc:
                st.warning(literal(str(exc)))
                st.caption(
                    "No real MoE weights ship with lmscope (none can be installed offline). Both MoEs built here "
                    "split each of SmolLM2's MLPs into experts of neurons that fire together (MoEfication, Zhang et "
                    "al. 2022); the trained one is a Qwen2-MoE with two shared experts and a softmax router, trained by "
                    "distillation."
                )
                columns = st.columns(2)
                for column, (name, label) in zip(columns, MOE_CHOICES.items(), strict=True):
                    if column.button(label, icon=":material/call_split:"):
                        state.choose(model=name)
                        st.rerun()
                return True
        return False

    def require(self, need: Need, where: str = "this section") -> None:
        """Stop the page here unless the model has what the rest of it needs (saying so)."""
        if self.lacks(need, where):
            st.stop()

    @contextmanager
    def errors(self, about: str = "") -> Iterator[None]:
        """Show a user error raised inside (LmscopeError) and go on with the rest of the page."""
        try:
            yield
        except LmscopeError as exc:
            show_error(exc, about)

    def or_stop(self, call: Callable[[], T]) -> T:
        """call(); a user error is shown and stops the page."""
        try:
            return call()
        except LmscopeError as exc:
            show_error(exc)
            st.stop()


def start(page_file: str, *needs: Need, export: bool = True) -> Page:
    """Open the page of this file: the frame with its view's title and caption, then a guard for each need."""
    view = view_of(page_file)
    frame(view.title, view.caption, export=export)
    page = Page(view)
    state.sync_url()
    for need in needs:
        page.require(need, "this view")
    return page
