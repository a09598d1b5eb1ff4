"""Plotly figure builders: pure functions from probe results to figures (no torch, no Streamlit)."""
