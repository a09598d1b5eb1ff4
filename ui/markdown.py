"""User input shown inside Streamlit's Markdown (st.error, st.warning, st.markdown): as typed, never as markup."""

from __future__ import annotations

import re

# Every ASCII punctuation character that Markdown, its HTML, Streamlit's directives (:red[...], :material/x:) or
# its LaTeX ($...$) reads; CommonMark lets a backslash escape any of them.
_MARKUP = re.compile(r"([!-/:-@\[-`{-~])")


def literal(text: str) -> str:
    """`text` escaped so that Streamlit's Markdown shows it character for character: a link's value or a model
    name in a message is never a link, an image, emphasis or a directive."""
    return _MARKUP.sub(r"\\\1", text)
