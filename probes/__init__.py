"""Model loading and probes: run a model on text and return plain results (no Streamlit, no Plotly)."""
