"""The text as the model's tokens: HTML chips with each token's position and id (and any note) on hover."""

from __future__ import annotations

import html

import numpy as np

from viz.theme import visible

_CHIP = (
    '<span title="position {pos}, id {tid}{note}" style="display:inline-block;margin:2px;padding:1px 5px;'
    'border:1px solid #c8c8d0;border-radius:4px;background:{bg};font-family:monospace;font-size:0.9em">{text}</span>'
)


def token_chips_html(
    tokens: list[str], token_ids: np.ndarray, backgrounds: list[str] | None = None, notes: list[str] | None = None
) -> str:
    """One chip per token, in the given background colours (else alternating shades, so token boundaries show),
    whitespace made visible; `notes` are added to each chip's hover text."""
    backgrounds = backgrounds or ["#eef2fb" if i % 2 else "#fbf3e8" for i in range(len(tokens))]
    notes = notes or [""] * len(tokens)
    chips = [
        _CHIP.format(
            pos=i, tid=int(tid), note=html.escape(f"; {note}" if note else ""), bg=bg, text=html.escape(visible(tok))
        )
        for i, (tok, tid, bg, note) in enumerate(zip(tokens, token_ids, backgrounds, notes, strict=True))
    ]
    return '<div style="line-height:2">' + "".join(chips) + "</div>"
