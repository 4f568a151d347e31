"""The surrogate-training notebook runs from top to bottom (in quick mode) without errors."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "02_surrogate_training.ipynb"


def test_training_notebook_runs_in_quick_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("SNNEDGE_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    # On a shared CI machine, spinning OpenMP threads slow small operators 30-100x.
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook with outputs cleared"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
    assert "quick mode" in text and "test accuracy after T=4 steps" in text
    assert "same predictions True" in text and "bptt=checkpoint" in text
    assert images == 2  # the learning curves and the spike raster
