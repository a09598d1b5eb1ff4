"""Model loading and probes: run a model on text and return plain results (no Streamlit, no Plotly).

The dashboard's sessions run in threads of one process, and the first pages opened on a fresh server import the
probe stack at the same moment. transformers resolves its names lazily, and two threads resolving them at once
have seen `ImportError: cannot import name 'AutoConfig' from 'transformers'`. Importing the model loader here
makes the first import of any probe module finish it under this package's import lock, which every other thread
waits for.
"""

import probes.models  # noqa: F401
