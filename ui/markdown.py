"""User input shown inside Streamlit's Markdown (st.error, st.warning, st.markdown): as typed, never as markup."""

from __future__ import annotations

import re

# Every ASCII punctuation character that Markdown, its HTML, Streamlit's directives (:red[...], :material/x:) or
# its LaTeX ($...$) reads; CommonMark lets a backslash escape any of them.
_PUNCTUATION = r"[!-/:-@\[-`{-~]"
_MARKUP = re.compile(f"({_PUNCTUATION})")
_ESCAPED = re.compile(rf"\\({_PUNCTUATION})")
# What GitHub-flavoured Markdown turns into a link even unmarked, after escapes are read: a URL's scheme or "www.",
# and the "@" of an e-mail address (a dotted domain after it). A word joiner (U+2060, invisible) after each keeps it
# text.
_AUTOLINK = re.compile(r"(?i)(https?(?=:)|ftp(?=:)|www(?=\.)|@(?=[-\w]+(?:\.[-\w]+)+))")
WORD_JOINER = "\u2060"


def literal(text: str) -> str:
    """`text` escaped so that Streamlit's Markdown shows it character for character: a link's value or a model
    name in a message is never a link (not even a bare URL), an image, emphasis or a directive. Each line break is
    a hard break, so that no blank line starts an indented code block, where escapes are not read."""
    escaped = _MARKUP.sub(r"\\\1", _AUTOLINK.sub(rf"\1{WORD_JOINER}", text))
    return escaped.replace("\r\n", "\n").replace("\n", "\\\n")


def read(markdown: str) -> str:
    """What a reader sees of Markdown that holds `literal` text: its escapes, hard breaks and word joiners undone."""
    plain = markdown.replace(WORD_JOINER, "").replace("\\\n", "\n")
    return _ESCAPED.sub(r"\1", plain)


def code(text: str) -> str:
    """`text` as an inline code span (a token, a model name), where Markdown reads nothing; as `literal` text when
    it holds what would end the span (a backtick or a line break)."""
    return f"`{text}`" if not re.search(r"[`\r\n]", text) else literal(text)
