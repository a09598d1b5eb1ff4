"""The weight views' shared parts: the spectra of every matrix, and choosing one matrix by its module name (kept
in the URL as `matrix`)."""

from __future__ import annotations

import streamlit as st

from probes import spectra
from results.spectra import ModelSpectra, WeightRef
from runtime.handle import ModelHandle
from ui.models import probe_with_progress, result_cache
from ui.scaffold import Page, Setting


def default_matrix(refs: list[WeightRef]) -> str:
    """A query projection half-way up the model, or the first matrix."""
    middle = max(r.layer for r in refs) // 2
    return next((r.name for r in refs if r.layer == middle and r.kind == "q"), refs[0].name)


def matrix_input(page: Page, refs: list[WeightRef]) -> str:
    """A searchable select box of the matrices (module names, with shape); starts from the URL's `matrix`."""
    names = [r.name for r in refs]
    page.settings(
        Setting("matrix", "choice", default_matrix(refs), options=names, allowed="a weight matrix of this model")
    )
    shapes = {r.name: r.shape for r in refs}
    return page.widget(
        "matrix",
        st.selectbox,
        "Weight matrix",
        format_func=lambda name: f"{name}  ({shapes[name][0]} x {shapes[name][1]})",
        help="Module names as in model.named_modules(); type to search (for example 'layers.3.mlp').",
    )


def model_spectra(handle: ModelHandle) -> ModelSpectra:
    """The spectra and entry statistics of every weight matrix: computed once per model with a progress bar, then
    read from the cache."""
    return probe_with_progress(
        "Computing the spectrum of every weight matrix (once per model), matrices",
        lambda progress: spectra.run(handle, result_cache(), progress),
    ).value
