"""Streamlit helpers shared by app.py and the pages: the user's choice, loaded models, charts with downloads."""
