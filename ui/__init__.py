"""Streamlit helpers shared by app.py and the pages: the user's choice, loaded models, charts with downloads.

Sessions run in threads of one server process, and some libraries import others lazily after looking in
sys.modules first (plotly looks for pandas there, which Streamlit imports on a page's first table): a module that
another session's thread is still importing is then seen half-initialised ("partially initialized module 'pandas'
has no attribute 'Series'"). Importing them here, once, under Python's import lock, before any page draws, closes
that race.
"""

import pandas  # noqa: F401
import pyarrow  # noqa: F401
