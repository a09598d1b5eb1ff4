"""The example notebook runs from top to bottom in a fresh Jupyter kernel on the built-in models, and every figure
cell shows a Plotly figure."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # a kernel of its own loads the models

NOTEBOOK = ROOT / "examples" / "lecture.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


def test_the_lecture_notebook_runs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Run where Jupyter runs it, beside the notebook: `import lmscope` comes from the editable install (make).
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": NOTEBOOK.parent}}
    ).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert errors == []
    figures = [cell for cell in code if any(PLOTLY in o.get("data", {}) for o in cell.outputs)]
    assert len(figures) == sum(".figure" in c.source or "compare(" in c.source for c in code) == 7
    printed = "".join(o.get("text", "") for cell in code for o in cell.outputs)
    assert "previous-token head: layer" in printed and "median alpha:" in printed
