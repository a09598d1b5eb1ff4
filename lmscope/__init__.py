"""lmscope from Python: load a model, run a view on a text, and get the typed result the dashboard draws together
with the page's figure of it.

    import lmscope
    m = lmscope.load("smollm2-135m-instruct")
    r = lmscope.attention(m, "The cat sat on the mat.")   # r.value: the AttentionResult; r.maps, r.tokens, ...
    r.figure(layer=3, head=1)                             # the Attention page's heatmap (a Plotly figure)
    lmscope.head_types(m, text).value.labels              # every head's types (induction + sink, ...)
    lmscope.compare([m, "gemma3-270m"], "sinks", text)    # one line per model, layers by relative depth
    lmscope.compare_texts(m, "sinks", [text, other])      # one model, a line per text
    lmscope.figure("sink_share", m, text, k=4).figure     # any figure a lecture preset can name

A model is a loaded handle or a name (`lmscope.models()` lists the built-ins); results go to the user's result cache
(LMSCOPE_CACHE_DIR) unless `cache=` says otherwise; `progress=False` hides the progress bar. The command line
(`python -m lmscope`) prints what these functions return.
"""

import sys
from pathlib import Path

# lmscope's layers (results, runtime, probes, viz, views, ...) live beside this package in the repository, which an
# editable install (`pip install -e .`) does not put on the path: add it, last, so that it shadows nothing.
_REPOSITORY = str(Path(__file__).resolve().parents[1])
if _REPOSITORY not in sys.path:
    sys.path.append(_REPOSITORY)

from results.moefication import Setting as MoeSetting
from runtime.builtin import BUILTINS, DERIVED
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from views.api import Drawn, Result, figure
from views.api import loaded as load
from views.attention import run as attention
from views.compare import compare, compare_texts
from views.heads import run as head_types
from views.lens import attribute
from views.lens import run as lens
from views.massive import run as massive_activations
from views.registry import figures as _figures
from views.routing import run as routing
from views.sinks import run as sinks
from views.spectra import run as spectra


def models() -> list[str]:
    """The built-in models and the MoE derived from SmolLM2 (any Hugging Face id or local folder loads too)."""
    return [*BUILTINS, *DERIVED]


def figure_names() -> list[str]:
    """Every figure `figure` can draw (the lecture presets' figures), by name."""
    return sorted(_figures())


__all__ = [
    "Drawn",
    "LmscopeError",
    "ModelHandle",
    "MoeSetting",
    "Result",
    "ResultCache",
    "attention",
    "attribute",
    "compare",
    "compare_texts",
    "figure",
    "figure_names",
    "head_types",
    "lens",
    "load",
    "massive_activations",
    "models",
    "routing",
    "sinks",
    "spectra",
]
