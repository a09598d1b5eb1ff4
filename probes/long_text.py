"""A long text to try the long-context views on, from what every Python installation ships: chapters of the Python
language reference and library documentation (`pydoc_data.topics`, under the Python Software Foundation License),
about 45,000 tokens in all, cut to the model's limit by the caller."""

from __future__ import annotations

from pydoc_data.topics import topics

# Prose with code in it: statements, the data model, string formatting, the sequence types.
CHAPTERS = ("compound", "specialnames", "formatstrings", "typesseq", "types")
SOURCE = "the Python language reference and library documentation, as Python ships them (pydoc_data; PSF License)"


def long_text() -> str:
    """The chapters, in order, separated by blank lines."""
    return "\n\n".join(topics[name].strip() for name in CHAPTERS)
