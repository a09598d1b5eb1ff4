"""Typed results: the plain dataclasses (numpy arrays, token strings, parameters) that probes return, the cache
stores and viz draws. Numpy only: no torch, transformers, plotly or streamlit, and no import of probes or viz."""
