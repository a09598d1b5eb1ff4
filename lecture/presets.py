"""The lecture's presets and the tour's sections: one plain data file (presets.toml), parsed and checked against
the figures the registered views declare (lecture.catalog loads it once, with views.registry's figures).

A preset is a named, versioned recipe (model, text, figure, options) for one figure, with the title and caption a
slide needs and the dashboard page (and URL query) that shows the same figure live; the page is the one of the view
that declares the figure.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlencode

from runtime.builtin import BUILTINS, DERIVED
from runtime.errors import LmscopeError
from views.compare import comparable_models
from views.registry import url_path

PATH = Path(__file__).with_name("presets.toml")

_TOP_KEYS = {"model", "texts", "section", "preset"}
_SECTION_KEYS = {"id", "title", "text"}
_PRESET_REQUIRED = {"name", "version", "section", "title", "caption", "figure"}
_PRESET_KEYS = _PRESET_REQUIRED | {"model", "text", "options", "query", "compare"}
# The page reads these from the preset's own fields, so a query table may not set them a second time.
_FROM_FIELDS = {"model", "text", "compare"}
MOST_COMPARED = 2  # models a comparing preset draws beside its own


@dataclass(frozen=True)
class Preset:
    """One figure of the lecture: what to run, how to draw it, what it shows, and where to see it live."""

    name: str
    version: int
    section: str
    title: str
    caption: str
    figure: str
    model: str
    text: str | None
    options: Mapping[str, object]
    page: str
    query: Mapping[str, str]
    compare: tuple[str, ...] = ()  # the models a comparing figure draws beside `model`


def view_url(page: str, query: Mapping[str, str]) -> str:
    """The URL of a dashboard page in a given state, relative to the server's root ("Attention_sinks?...")."""
    return f"{url_path(page)}?{urlencode(query)}"


@dataclass(frozen=True)
class Section:
    """One section of the lecture, in order, with a short paragraph and the presets that illustrate it."""

    id: str
    title: str
    text: str
    presets: tuple[str, ...]


@dataclass(frozen=True)
class Lecture:
    """Everything presets.toml defines: presets by name (in file order) and sections in lecture order."""

    presets: dict[str, Preset]
    sections: list[Section]


def _fail(path: Path, where: str, message: str) -> LmscopeError:
    return LmscopeError(f"{path.name}: {where}: {message}")


def _check_keys(path: Path, where: str, table: object, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(table, dict):
        raise _fail(path, where, "must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(path, where, f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(table))
    if missing:
        raise _fail(path, where, f"missing field(s) {', '.join(missing)}")
    return table


def _text_field(path: Path, where: str, table: dict, key: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, f"'{key}' must be a non-empty string")
    return value.strip()


def _query_value(path: Path, where: str, key: str, value: object) -> str:
    """A URL value as the page parses it: strings as written, whole numbers and booleans as 1/0."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise _fail(path, where, f"query value '{key}' must be a string or a number, not {type(value).__name__}")


def _sections(path: Path, data: dict) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    if not isinstance(data["section"], list):
        raise _fail(path, "sections", "write each section as [[section]]")
    for i, table in enumerate(data["section"]):
        where = f"section {i + 1}"
        _check_keys(path, where, table, _SECTION_KEYS, _SECTION_KEYS)
        section_id = _text_field(path, where, table, "id")
        if any(section_id == seen for seen, _, _ in found):
            raise _fail(path, where, f"duplicate section id '{section_id}'")
        found.append((section_id, _text_field(path, where, table, "title"), _text_field(path, where, table, "text")))
    if not found:
        raise _fail(path, "sections", "the file defines no [[section]]")
    return found


def _compared(path: Path, where: str, fields: dict, model: str, compares: bool) -> tuple[str, ...]:
    """The models a preset compares with its own: given exactly when its figure compares, known, at most
    MOST_COMPARED, none of them its own."""
    names = fields.get("compare", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail(path, where, "'compare' must be a list of model names")
    if compares != bool(names):
        need = "names the models it compares (compare = [...])" if compares else "draws one model: drop 'compare'"
        raise _fail(path, where, f"its figure {need}")
    known = comparable_models()
    for name in names:
        if name not in known or name == model:
            raise _fail(path, where, f"compare: {name!r} is not another built-in model or twin ({', '.join(known)})")
    if len(names) > MOST_COMPARED:
        raise _fail(path, where, f"compare: at most {MOST_COMPARED} models beside its own")
    return tuple(names)


def _preset(
    path: Path, table: object, index: int, data: dict, sections: set[str], pages: Mapping[str, tuple[str, bool]]
) -> Preset:
    """One [[preset]] table, checked field by field."""
    where = f"preset {index + 1}"
    fields = _check_keys(path, where, table, _PRESET_KEYS, _PRESET_REQUIRED)
    name = _text_field(path, where, fields, "name")
    where = f"preset '{name}'"
    version = fields["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(path, where, f"version must be a whole number of at least 1, not {version!r}")
    section = _text_field(path, where, fields, "section")
    if section not in sections:
        raise _fail(path, where, f"unknown section '{section}' (sections: {', '.join(sections)})")
    figure = _text_field(path, where, fields, "figure")
    if figure not in pages:
        raise _fail(path, where, f"unknown figure '{figure}' (figures: {', '.join(sorted(pages))})")
    page, compares = pages[figure]
    model = fields.get("model", data.get("model"))
    if model not in {*BUILTINS, *DERIVED}:
        raise _fail(
            path, where, f"model {model!r} is not a built-in or derived model ({', '.join([*BUILTINS, *DERIVED])})"
        )
    text = None
    if "text" in fields:
        texts = data.get("texts", {})
        if fields["text"] not in texts:
            raise _fail(path, where, f"text '{fields['text']}' is not in [texts] ({', '.join(texts)})")
        text = texts[fields["text"]].strip()
    options, query = fields.get("options", {}), fields.get("query", {})
    for field_name, value in (("options", options), ("query", query)):
        if not isinstance(value, dict):
            raise _fail(path, where, f"'{field_name}' must be a fields")
    repeated = sorted(_FROM_FIELDS & set(query))
    if repeated:
        raise _fail(path, where, f"query may not set {', '.join(repeated)}: they come from the preset's own fields")
    compare = _compared(path, where, fields, model, compares)
    url = {"model": model, **({"text": text} if text is not None else {})}
    url |= {"compare": ",".join(compare)} if compare else {}
    url |= {key: _query_value(path, where, key, value) for key, value in query.items()}
    return Preset(
        name=name,
        version=version,
        section=section,
        title=_text_field(path, where, fields, "title"),
        caption=_text_field(path, where, fields, "caption"),
        figure=figure,
        model=model,
        text=text,
        options=MappingProxyType(dict(options)),
        page=page,
        query=MappingProxyType(url),
        compare=compare,
    )


def load(path: Path, pages: Mapping[str, tuple[str, bool]]) -> Lecture:
    """Read and check a presets file (pages: the page of each figure a preset may name, and whether the figure
    compares models); any problem is
    an LmscopeError naming the file, the preset and the field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LmscopeError(f"The presets file {path} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LmscopeError(f"{path.name} is not valid TOML: {exc}") from exc
    _check_keys(path, "top level", data, _TOP_KEYS, {"model", "section", "preset"})
    if not isinstance(data.get("texts", {}), dict) or not all(
        isinstance(t, str) for t in data.get("texts", {}).values()
    ):
        raise _fail(path, "[texts]", "must map names to strings")
    section_rows = _sections(path, data)
    if not isinstance(data["preset"], list):
        raise _fail(path, "presets", "write each preset as [[preset]]")
    found: dict[str, Preset] = {}
    for index, table in enumerate(data["preset"]):
        preset = _preset(path, table, index, data, {row[0] for row in section_rows}, pages)
        if preset.name in found:
            raise _fail(path, f"preset {index + 1}", f"duplicate preset name '{preset.name}'")
        found[preset.name] = preset
    sections = [
        Section(section_id, title, text, tuple(p.name for p in found.values() if p.section == section_id))
        for section_id, title, text in section_rows
    ]
    return Lecture(found, sections)
