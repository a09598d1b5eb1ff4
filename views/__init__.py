"""Every view of lmscope, declared once (views.registry); importing this package registers them all in the
navigation's order."""

from views import (  # noqa: F401  (each module registers its view)
    attention,
    concepts,
    finetune,
    heads,
    lens,
    lottery,
    massive,
    neurons,
    pruning,
    routing,
    sinks,
    sparse_low_rank,
    spectra,
    structured,
    tour,
    weights,
)
