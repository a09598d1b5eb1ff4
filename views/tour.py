"""The lecture tour: the sparsity and low-rankness lecture, section by section, with live figures (its page reads
the presets; the view declares only where it sits in the navigation)."""

from __future__ import annotations

from views.registry import View, register

VIEW = register(
    View(
        key="tour",
        title="Lecture tour",
        summary="the sparsity and low-rankness lecture, section by section, with live figures",
        icon="school",
        group="Lecture",
        page="app_pages/0_Lecture_tour.py",
        caption=(
            "The lecture on sparsity and low-rankness, section by section, each with its figures computed live on the "
            "built-in models. Every figure opens in its own view with the same settings."
        ),
    )
)
