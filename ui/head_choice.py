"""Choosing a head: layer and head inputs that start from the URL, and clicks on a layer x head grid."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from ui import state


def head_inputs(
    prefix: str, n_layers: int, n_heads: int, layer_slot: DeltaGenerator, head_slot: DeltaGenerator
) -> tuple[int, int]:
    """Layer and head number inputs: first from the URL (checked, with a warning if bad), then as chosen."""
    state.init_number(f"{prefix}_layer", "layer", 0, n_layers)
    state.init_number(f"{prefix}_head", "head", 0, n_heads)
    layer = layer_slot.number_input("Layer", 0, n_layers - 1, key=f"{prefix}_layer")
    head = head_slot.number_input("Head", 0, n_heads - 1, key=f"{prefix}_head")
    return int(layer), int(head)


def grid_click(prefix: str) -> Callable[[], None]:
    """An on_select callback for the grid chart keyed f"{prefix}_grid": the clicked cell becomes the head."""

    def pick() -> None:
        points = st.session_state[f"{prefix}_grid"]["selection"]["points"]
        if points:  # the grid's markers sit at x = head, y = layer
            st.session_state[f"{prefix}_layer"], st.session_state[f"{prefix}_head"] = (
                int(points[0]["y"]),
                int(points[0]["x"]),
            )

    return pick
