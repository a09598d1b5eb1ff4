"""The text as the model's tokens: HTML chips with each token's position and id on hover."""

from __future__ import annotations

import html

import numpy as np

from viz.theme import visible

_CHIP = (
    '<span title="position {pos}, id {tid}" style="display:inline-block;margin:2px;padding:1px 5px;'
    'border:1px solid #c8c8d0;border-radius:4px;background:{bg};font-family:monospace;font-size:0.9em">{text}</span>'
)


def token_chips_html(tokens: list[str], token_ids: np.ndarray) -> str:
    """One chip per token, alternating shades so token boundaries show; whitespace made visible."""
    chips = [
        _CHIP.format(pos=i, tid=int(tid), bg="#eef2fb" if i % 2 else "#fbf3e8", text=html.escape(visible(tok)))
        for i, (tok, tid) in enumerate(zip(tokens, token_ids))
    ]
    return '<div style="line-height:2">' + "".join(chips) + "</div>"
