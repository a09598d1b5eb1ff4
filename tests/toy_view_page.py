"""A toy view's page, registered only by tests/test_views.py: it proves a view needs no other file to appear."""

import streamlit as st

from ui.scaffold import Need, start

page = start(__file__, Need.MODEL)
st.markdown(f"The toy view of {page.handle.name}.")
