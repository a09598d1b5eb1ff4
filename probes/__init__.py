"""The probes: how each phenomenon is measured on a loaded model, returning plain results (no Streamlit, no Plotly).

The machinery that runs them (loading, the executor, the cache, the cluster) lives in `runtime`, which never
imports a probe.
"""
