"""A toy view's page, registered only by tests/test_views.py: it proves a view needs no other file to appear."""

import streamlit as st

from ui.layout import page
from ui.models import current_model

page("Toy view", "Registered by a test.")
st.markdown(f"The toy view of {current_model().name}.")
