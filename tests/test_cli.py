"""The command line: version, help, and the demo's report folder."""
import json
import subprocess
import sys

import pytest

import snnedge
from snnedge.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"snnedge {snnedge.__version__}"


def test_help_lists_demo(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "snnedge.cli", "demo", "--help"],
                         capture_output=True, text=True, check=True)
    assert "--quick" in out.stdout


@pytest.mark.slow
def test_demo_quick_writes_a_complete_report(tmp_path):
    out = tmp_path / "report"
    assert main(["demo", "--quick", "--no-progress", "-o", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.json", "accuracy_vs_T.png", "energy.png", "firing_rates.png",
            "core_occupancy.png"} <= names
    report = json.loads((out / "report.json").read_text())
    rows = {r["name"] for r in report["comparison"]}
    assert {"truenorth", "dynap-se", "dynap-cnn", "cpu", "gpu-jetson-tx2", "tpu-v1", "eyeriss"} <= rows
    assert report["snn"]["accuracy_by_T"]["32"] > 0.8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
