"""The slide export command: render lecture presets headless and offline, write each figure as PNG, SVG or PDF
slides, and an index (index.json, index.md) of what produced them.

    python -m lecture.export --preset NAME[,NAME...]|all --out DIR [--format png,svg,pdf] [--size 1920x1080] [--model NAME]
                         [--no-titles] [--no-captions]

Probe results come from the normal disk cache (LMSCOPE_CACHE_DIR), so a second export is fast. User errors print
one line on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

from lecture import catalog
from lecture.checks import Verdict, caption, judge
from lecture.presets import MOST_COMPARED, Preset, view_url
from lecture.render import Rendered, render
from runtime import engine, limits
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.models import load
from viz.export import FORMATS, ExportUnavailable, browser_path, figure_bytes
from viz.theme import slide

MAX_SIDE = 7680  # 8K; a larger PNG costs chromium gigabytes
MIN_SIDE = 100
_SIZE = re.compile(r"^(\d+)x(\d+)$")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a one-line LmscopeError like every other user error."""

    def error(self, message: str) -> NoReturn:
        raise LmscopeError(f"{message} (see python -m lecture.export --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lecture.export", description="Export lecture presets as slide figures.")
    parser.add_argument("--preset", required=True, help="a preset name (or several, commas between), or 'all'")
    parser.add_argument("--out", required=True, type=Path, help="folder for the figures and index.json")
    parser.add_argument("--format", default="png", help=f"comma-separated, from {', '.join(FORMATS)} (default png)")
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT in pixels (default 1920x1080)")
    parser.add_argument("--model", help="run every preset on this model instead of its own")
    parser.add_argument(
        "--compare",
        help="the models a comparing preset draws instead of its own, commas between (the first is its model; at "
        "most 3)",
    )
    parser.add_argument("--no-titles", action="store_true", help="leave out each figure's title and subtitle")
    parser.add_argument("--no-captions", action="store_true", help="leave out the caption under each figure")
    return parser


def parse_size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT in pixels, each from MIN_SIDE to MAX_SIDE."""
    found = _SIZE.match(text.strip().lower())
    if not found or not all(MIN_SIDE <= int(side) <= MAX_SIDE for side in found.groups()):
        raise LmscopeError(
            f"--size must be WIDTHxHEIGHT in pixels, each from {MIN_SIDE} to {MAX_SIDE} (e.g. 1920x1080); got '{text}'."
        )
    return int(found.group(1)), int(found.group(2))


def parse_formats(text: str) -> list[str]:
    """The formats asked for, in order, without repeats."""
    asked = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [fmt for fmt in asked if fmt not in FORMATS]
    if unknown or not asked:
        raise LmscopeError(f"--format takes {', '.join(FORMATS)} (commas between); got '{text}'.")
    return list(dict.fromkeys(asked))


def chosen_presets(names: str) -> list[Preset]:
    """Every preset for 'all', else the ones named (commas between), in the order given."""
    if names.strip() == "all":
        return list(catalog.presets().values())
    asked = [name.strip() for name in names.split(",") if name.strip()]
    if not asked:
        raise LmscopeError("--preset needs a preset name, or 'all'.")
    return [catalog.preset(name) for name in dict.fromkeys(asked)]


def writable_folder(path: Path) -> Path:
    """The output folder, created if needed; an error if it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".lmscope-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LmscopeError(f"Cannot write to the output folder {path}: {exc.strerror or exc}.") from exc
    return path.resolve()


def models_of(preset: Preset, model: str | None, compare: Sequence[str]) -> list[str]:
    """The models a preset is drawn on: its own (or `model`), then for a comparing preset the ones it compares (or
    all of them from `compare`)."""
    if not preset.compare:
        if compare:
            raise LmscopeError(f"{preset.name} draws one model: run it on another with --model, not --compare.")
        return [model or preset.model]
    chosen = list(compare) or [model or preset.model, *preset.compare]
    limits.check_count(chosen, 1 + MOST_COMPARED, "models to compare")
    if len(set(chosen)) < len(chosen):
        raise LmscopeError(f"--compare names a model twice: {', '.join(chosen)}.")
    return chosen


def _entry(rendered: Rendered, files: dict[str, str], verdict: Verdict, seconds: float) -> dict:
    preset = rendered.preset
    return {
        "preset": preset.name,
        "version": preset.version,
        "section": preset.section,
        "title": preset.title,
        "caption": caption(rendered, verdict),
        "written_for": preset.model,
        "files": files,
        "model": rendered.model,
        "fingerprint": rendered.handle.fingerprint,
        "settings": rendered.settings,
        "seconds": round(rendered.seconds, 3),
        "export_seconds": round(seconds, 3),
        "cached": rendered.cached,
        "check": {"ok": verdict.ok, "finding": verdict.finding},
        "page": preset.page,
        "query": rendered.query,
        "url": f"/{view_url(preset.page, rendered.query)}",
    }


def _write_figure(
    rendered: Rendered, out: Path, formats: list[str], size: tuple[int, int], titles: bool, caption: str | None
) -> dict[str, str]:
    figure = slide(rendered.figure, *size, titles=titles, caption=caption)
    files = {}
    for fmt in formats:
        name = f"{rendered.preset.name}.{fmt}"
        (out / name).write_bytes(figure_bytes(figure, fmt, size[0], size[1], scale=1))
        files[fmt] = name
    return files


_CHECK_WORDS = {True: "ok", False: "FAILED", None: "none"}


def _markdown(index: dict) -> str:
    """index.md: the figures for a human, with what produced them."""
    lines = [f"# lmscope slides ({index['created']})", "", f"`{index['command']}`", ""]
    for figure in index["figures"]:
        image = figure["files"].get("png") or figure["files"].get("svg")
        lines += [f"## {figure['title']}", ""]
        lines += [f"![{figure['title']}]({image})", ""] if image else []
        source = "from the cache" if figure["cached"] else "computed"
        lines += [
            figure["caption"],
            "",
            f"- preset `{figure['preset']}` v{figure['version']} · {figure['model']} (fingerprint `{figure['fingerprint']}`)"
            f" · {figure['seconds']:.1f} s, {source} · files: {', '.join(figure['files'].values())}",
            f"- check: {_CHECK_WORDS[figure['check']['ok']]}: {figure['check']['finding']}",
            f"- live: `{figure['page']}`, `{figure['url']}`",
            "",
        ]
    for failed in index["errors"]:
        lines += [f"- **{failed['preset']} failed**: {failed['error']}"]
    return "\n".join(lines) + "\n"


def export(
    chosen: list[Preset],
    out: Path,
    formats: list[str],
    size: tuple[int, int],
    model: str | None,
    titles: bool,
    captions: bool,
    cache: ResultCache,
    command: str = "",
    handles: dict[str, ModelHandle] | None = None,
    compare: Sequence[str] = (),
) -> dict:
    """Render and write every chosen preset, on its own model or on `model`, a comparing preset on its own models
    or on `compare` (its model first); returns the index (also written as index.json and index.md).

    A preset that fails is reported on stderr and in the index; the others are still written. `handles`: models
    already loaded, by name; each other model is loaded once for this export."""
    started = time.perf_counter()
    figures, errors = [], []
    handles = dict(handles or {})
    for preset in chosen:
        try:
            names = models_of(preset, model, compare)
            for name in names:
                handles[name] = handles.get(name) or load(name)
            rendered = render(preset, handles[names[0]], cache, others=[handles[name] for name in names[1:]])
            verdict = judge(rendered)
            if verdict.ok is False:
                print(f"warning: preset {preset.name} on {rendered.model}: {verdict.finding}", file=sys.stderr)
            writing = time.perf_counter()
            files = _write_figure(
                rendered, out, formats, size, titles, caption(rendered, verdict) if captions else None
            )
        except LmscopeError as exc:
            errors.append({"preset": preset.name, "error": str(exc)})
            print(f"error: preset {preset.name}: {exc}", file=sys.stderr)
            continue
        figures.append(_entry(rendered, files, verdict, time.perf_counter() - writing))
        source = "cache" if rendered.cached else "computed"
        print(f"{preset.name}: {rendered.seconds:.1f} s ({source}) -> {', '.join(files.values())}", flush=True)
    index = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "size": f"{size[0]}x{size[1]}",
        "formats": formats,
        "titles": titles,
        "captions": captions,
        "model": model,
        "cache": str(cache.directory),
        "total_seconds": round(time.perf_counter() - started, 3),
        "figures": figures,
        "errors": errors,
    }
    (out / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "index.md").write_text(_markdown(index), encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    """Run the export command; user errors print one line on stderr and return 1."""
    logging.basicConfig(level=logging.WARNING, format="lmscope: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m lecture.export", *argv])
    try:
        args = _parser().parse_args(argv)
        size, formats = parse_size(args.size), parse_formats(args.format)
        chosen = chosen_presets(args.preset)
        out = writable_folder(args.out)
        if browser_path() is None:
            raise ExportUnavailable("Static export needs chromium: install Debian's chromium or set BROWSER_PATH.")
        handles = {args.model: load(args.model)} if args.model else {}  # an unknown model is one error
        engine.start()
        cache = ResultCache()
        try:
            index = export(
                chosen,
                out,
                formats,
                size,
                args.model,
                not args.no_titles,
                not args.no_captions,
                cache,
                command,
                handles,
                [name.strip() for name in (args.compare or "").split(",") if name.strip()],
            )
        finally:
            cache.close()
    except (LmscopeError, ExportUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(index['figures'])} figure(s) in {out} (index.json, index.md), {index['total_seconds']:.1f} s")
    return 1 if index["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
