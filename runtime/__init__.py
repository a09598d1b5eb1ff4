"""The machinery that runs the probes: model loading and the model store, placement, per-call observation of a
shared model (attention capture, hooks, the forward pass under the model's lock), the executor and its queue,
the Dask engine, the result cache and its codec, settings and limits. It never imports a probe (tests/test_layout.py).

The dashboard's sessions run in threads of one process, and the first pages opened on a fresh server import the
probe stack at the same moment. transformers resolves its names lazily, and two threads resolving them at once
have seen `ImportError: cannot import name 'AutoConfig' from 'transformers'`. Importing the model loader here
makes the first import of any runtime module (every probe imports one) finish it under this package's import lock,
which every other thread waits for.

numpy's and scipy's BLAS run one thread per call in every process that imports the runtime (runtime.machine.
one_blas_thread): set once here, before any session's work, never per call.
"""

import runtime.models  # noqa: F401
from runtime.machine import one_blas_thread

one_blas_thread()
