"""Choosing a head: layer and head settings (kept in the URL as `layer` and `head`), and clicks on a layer x head
grid."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.delta_generator import DeltaGenerator

from ui.scaffold import Page, Setting


def head_inputs(
    page: Page, n_layers: int, n_heads: int, layer_slot: DeltaGenerator, head_slot: DeltaGenerator
) -> tuple[int, int]:
    """Layer and head number inputs: first from the URL (checked, with a warning if bad), then as chosen."""
    page.settings(
        Setting("layer", "int", 0, lower=0, upper=n_layers - 1), Setting("head", "int", 0, lower=0, upper=n_heads - 1)
    )
    return int(page.widget("layer", layer_slot.number_input, "Layer")), int(
        page.widget("head", head_slot.number_input, "Head")
    )


def grid_click(page: Page) -> Callable[[], None]:
    """An on_select callback for the grid chart keyed page.key("grid"): the clicked cell becomes the head."""

    def pick() -> None:
        points = page.value("grid")["selection"]["points"]
        if points:  # the grid's markers sit at x = head, y = layer
            page.set("layer", int(points[0]["y"]))
            page.set("head", int(points[0]["x"]))

    return pick
