"""Static export of figures (PNG, SVG, PDF) through kaleido and Debian's chromium, kept running between exports."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
import warnings
import zipfile

import plotly.graph_objects as go

from viz.theme import TEMPLATE, layout_of

FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
_started = threading.Lock()
_server_running = False
# plotly hands kaleido its defaults (kopts) on every export, which a running server ignores and warns about. One
# narrow filter for the whole process: a per-call `warnings.catch_warnings` swaps the process's filter list under
# every other session's thread.
warnings.filterwarnings("ignore", message="The kopts argument is ignored if using a server", category=UserWarning)


class ExportUnavailable(RuntimeError):
    """No browser for kaleido: static export cannot work on this machine."""


def browser_path() -> str | None:
    """The chromium kaleido will use (BROWSER_PATH, else chromium on PATH), or None if there is none."""
    path = os.environ.get("BROWSER_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


def _ensure_server() -> None:
    global _server_running
    with _started:
        if _server_running:
            return
        browser = browser_path()
        if browser is None:
            raise ExportUnavailable("Static export needs chromium: install Debian's chromium or set BROWSER_PATH.")
        os.environ["BROWSER_PATH"] = browser
        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        _server_running = True


def figure_bytes(fig: go.Figure, fmt: str, width: int = 1400, height: int | None = None, scale: float = 2.0) -> bytes:
    """The figure rendered as PNG, SVG or PDF bytes, in the lmscope template whatever the default is.

    The height defaults to the figure's own layout height, else 900 px.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    _ensure_server()
    export = go.Figure(fig)
    export.update_layout(template=TEMPLATE)
    height = height or layout_of(export).height or 900
    return export.to_image(format=fmt, width=width, height=height, scale=scale if fmt == "png" else 1)


def slug(text: str) -> str:
    """A file-name-safe version of a figure's name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:80] or "figure"


def figures_zip(figures: list[tuple[str, go.Figure]], formats: tuple[str, ...] = ("png", "svg")) -> bytes:
    """A zip of named figures, each in every format, with an index.json of their file names and titles."""
    buffer, index, used = io.BytesIO(), [], set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, fig in figures:
            stem = base = slug(name)
            for n in range(2, len(figures) + 2):  # the same chart name twice on a page gets -2, -3, ...
                if stem not in used:
                    break
                stem = f"{base}-{n}"
            used.add(stem)
            files = [f"{stem}.{fmt}" for fmt in formats]
            for file, fmt in zip(files, formats, strict=True):
                archive.writestr(file, figure_bytes(fig, fmt))
            index.append({"name": name, "title": layout_of(fig).title.text, "files": files})
        archive.writestr("index.json", json.dumps(index, indent=2, ensure_ascii=False))
    return buffer.getvalue()
