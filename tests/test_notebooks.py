"""Every notebook in examples/ is stored without outputs and runs top to bottom in quick mode
(``SNNEDGE_NOTEBOOK_QUICK=1``: small data, few steps), printing what it promises."""
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


def run_notebook(name: str, monkeypatch, tmp_path) -> tuple[str, int]:
    """Execute ``examples/<name>`` in quick mode; returns its printed text and figure count."""
    monkeypatch.setenv("SNNEDGE_NOTEBOOK_QUICK", "1")  # the kernel inherits the environment
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows figures
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    # On a shared CI machine, spinning OpenMP threads slow small operators 30-100x.
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, images


def test_every_notebook_is_covered():
    assert NOTEBOOKS == ["01_convert_cnn.ipynb", "02_surrogate_training.ipynb",
                         "03_neuromorphic_targets.ipynb", "04_energy_comparison.ipynb",
                         "05_seed_networks.ipynb", "06_event_input.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{name}: commit the notebook with outputs cleared"


def test_convert_notebook(monkeypatch, tmp_path):
    text, images = run_notebook("01_convert_cnn.ipynb", monkeypatch, tmp_path)
    assert "quick mode" in text and "ANN test accuracy" in text and "T=  32: SNN" in text
    assert images >= 2  # accuracy vs T and per-layer firing rates


def test_training_notebook(monkeypatch, tmp_path):
    text, images = run_notebook("02_surrogate_training.ipynb", monkeypatch, tmp_path)
    assert "quick mode" in text and "test accuracy after T=4 steps" in text
    assert "same predictions True" in text and "bptt=checkpoint" in text
    assert images == 2  # the learning curves and the spike raster


def test_targets_notebook(monkeypatch, tmp_path):
    text, images = run_notebook("03_neuromorphic_targets.ipynb", monkeypatch, tmp_path)
    assert "Mapping onto 'truenorth'" in text and "per inference" in text
    # issue 19: each target in its own arithmetic, float and on-chip accuracy beside the energy
    assert "DYNAP-CNN scales per layer" in text and "| on-chip accuracy |" in text
    for chip in ("truenorth", "dynap-cnn", "loihi"):  # an accuracy on chip, and an energy
        energy = "unknown" if chip == "dynap-cnn" else r"[\d.]+ uJ"  # no published DYNAP-CNN cost
        assert re.search(rf"{chip} +float [\d.]+% +on chip +[\d.]+% +energy {energy}", text), chip
    for chip in ("dynap-cnn", "loihi"):  # converted by default and for the chip
        for kind in ("default", "for the chip"):
            assert re.search(rf"{chip} +{kind} +largest share of weights rounded to zero +[\d.]+%, "
                             rf"on-chip accuracy [\d.]+%", text), (chip, kind)
    assert images >= 2  # core occupancy, accuracy vs energy with the on-chip lines


def test_energy_notebook(monkeypatch, tmp_path):
    text, images = run_notebook("04_energy_comparison.ipynb", monkeypatch, tmp_path)
    assert "quick mode" in text
    for row in ("| truenorth |", "| dynap-se |", "| dynap-cnn |", "| cpu |", "| gpu-jetson-tx2 |",
                "| gpu-v100 |", "| tpu-v1 |", "| eyeriss |"):
        assert row in text, row
    # accuracy, energy, accuracy-energy, rates, cores and the two gap figures
    assert images >= 7, f"{images} figures displayed"
    # both accountings side by side, the profile's figures per accounting, a timed row (issue 21)
    assert "throughput: share of cores" in text and "single / throughput" in text
    assert "figures used by each accounting" in text and "| this-cpu |" in text
    assert "single (timed)" in text and "ops lower bound" in text


def test_seed_networks_notebook(monkeypatch, tmp_path):
    # issue 17: runs with torchvision's models where torchvision is installed, with snnedge's
    # stand-ins (equal to them) where it is not, and says which
    text, images = run_notebook("05_seed_networks.ipynb", monkeypatch, tmp_path)
    assert "quick mode" in text and ("built with torchvision" in text or "stand-ins" in text)
    # the counts at 224 px equal torchvision's metadata, for all five
    assert text.count("  True\n") == 5 and "  False\n" not in text
    for net in ("AlexNet", "VGG-16", "GoogLeNet", "ResNet-50", "MobileNetV2"):
        assert f"| {net} |" in text, net
    for fragment in ("TrueNorth cores (splitters)", "DYNAP-SE boards", "Loihi chips",
                     "`single` accounting", "`throughput` accounting", ">= ",
                     "on dynap-cnn**: does not fit", "exit code 0", "report.md"):
        assert fragment in text, fragment
    assert images >= 2  # the two gap figures


def test_event_input_notebook(monkeypatch, tmp_path):
    text, images = run_notebook("06_event_input.ipynb", monkeypatch, tmp_path)
    assert "quick mode" in text and "frames (144, 15, 2, 34, 34)" in text
    assert "test accuracy after T=15 bins" in text and "Mapping onto 'dynap-cnn'" in text
    assert "input events per sequence" in text and "mW while streaming" in text
    assert images == 2  # the frames and the activity per sequence
