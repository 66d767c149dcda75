"""The notebooks: stored without outputs, and they run top to bottom on a CPU."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_both_notebooks_are_there():
    assert {path.name for path in NOTEBOOKS} == {"quickstart.ipynb", "ablations.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: clear the outputs before committing"
            )


def run_notebook(path: Path, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Execute a copy of the notebook in ``cwd``; returns the text of every output, in order."""
    # The notebooks write into tempfile.mkdtemp() folders: keep them inside the test's own.
    monkeypatch.setenv("TMPDIR", str(cwd))
    notebook = nbformat.read(path, as_version=4)
    # Raises CellExecutionError (with the cell and its traceback) when a cell fails.
    NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", output
            texts.append(output.get("text", "") + "".join(str(v) for v in output.get("data", {}).values()))
    return texts


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    texts = run_notebook(NOTEBOOK_DIR / "quickstart.ipynb", tmp_path, monkeypatch)
    assert any("test accuracy after 3 epochs" in text for text in texts)
    assert any("iVBOR" in text for text in texts)  # a base64 PNG: the curves were drawn


@pytest.mark.slow
def test_ablations_notebook_makes_and_reports_a_demo_sweep(tmp_path, monkeypatch):
    texts = run_notebook(NOTEBOOK_DIR / "ablations.ipynb", tmp_path, monkeypatch)
    joined = "\n".join(texts)
    assert list(tmp_path.glob("pyramid_lab-demo-sweep-*/0/metrics.json"))
    assert "making a demo sweep" in joined
    assert "| scheduler=cosine" in joined and "| scheduler=exp" in joined
    assert "results.md" in joined and "runs.png" in joined  # the one table's figure
