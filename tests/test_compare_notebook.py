"""The energy-comparison notebook runs top to bottom in quick mode, in under a minute, and is
stored without outputs."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "04_energy_comparison.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_executes_in_quick_mode_in_under_a_minute(monkeypatch):
    monkeypatch.setenv("SNNEDGE_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "quick mode" in text
    for row in ("| truenorth |", "| dynap-se |", "| dynap-cnn |", "| cpu |", "| gpu-jetson-tx2 |",
                "| gpu-v100 |", "| tpu-v1 |", "| eyeriss |"):
        assert row in text, row
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    assert images >= 7, f"{images} figures displayed"  # accuracy, energy, acc-energy, rates,
    # cores and the two gap figures
