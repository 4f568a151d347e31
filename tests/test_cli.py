"""The command line: version, help, the demo's report folder, and convert / simulate / report
on a user's model (happy paths, and every user error as one line with exit code 2)."""
import argparse
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import snnedge
from snnedge.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    from snnedge.events import native_kernel
    kernels = "compiled CPU kernels (" if native_kernel() else "CPU kernels not compiled"
    assert capsys.readouterr().out.strip().startswith(f"snnedge {snnedge.__version__}, {kernels}")


def test_version_names_torch_and_numpy(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip().endswith(
        f"; torch {torch.__version__}, numpy {np.__version__}")


def test_help_lists_demo(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "snnedge.cli", "demo", "--help"],
                         capture_output=True, text=True, check=True)
    assert "--quick" in out.stdout


def test_demo_quick_writes_a_complete_report(tmp_path):
    # in the default run, so that CI executes `snnedge demo --quick` (about 20 s) besides the
    # full demo of the README's first command
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


# -- convert, simulate, report on a user's model ------------------------------------------
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny CNN saved every way a user might save it, data files, and its converted SNN."""
    d = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(TESTS))
        from cli_models import SigmoidCNN, TinyCNN
    torch.manual_seed(0)
    ann = TinyCNN().eval()
    x = torch.rand(24, 1, 8, 8)
    np.savez(d / "calib.npz", x=x.numpy(), y=ann(x).argmax(1).numpy())
    np.savez(d / "wrong_shape.npz", x=np.random.default_rng(0).random((6, 1, 6, 6), dtype=np.float32))
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.export.save(torch.export.export(ann, (x[:4],), dynamic_shapes=({0: batch},)),
                      d / "model.pt2")
    torch.save(ann.state_dict(), d / "weights.pt")
    torch.save(ann, d / "whole.pt")  # a pickled nn.Module: must be refused
    torch.save(SigmoidCNN().state_dict(), d / "sigmoid.pt")
    assert main(["convert", str(d / "model.pt2"), "--calibration", str(d / "calib.npz"),
                 "--timesteps", "8", "-o", str(d / "snn.pt")]) == 0
    return d


@pytest.fixture
def models_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def test_help_of_every_command(capsys):
    for command in ("convert", "simulate", "report"):
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "example: snnedge " + command in out and "weights_only=True" in out


def test_convert_takes_the_default_normalization_of_its_reset(files, tmp_path, capsys):
    """No --normalization: channel-wise with reset by subtraction, one percentile per layer
    with reset to zero (convert's default_normalization)."""
    calib = str(files / "calib.npz")
    for reset, norm in (("subtract", "channelwise"), ("zero", "percentile")):
        assert main(["convert", str(files / "model.pt2"), "--calibration", calib, "--timesteps",
                     "8", "--reset", reset, "-o", str(tmp_path / f"{reset}.pt")]) == 0
        assert f"normalization: {norm} (99.9th percentile); reset: {reset}" in capsys.readouterr().out


def test_convert_for_a_chip(files, tmp_path, capsys):
    """--hardware loihi: channel scales within the chip's ratio, said in the summary and kept
    in the file's conversion record."""
    out = tmp_path / "loihi.pt"
    assert main(["convert", str(files / "model.pt2"), "--calibration", str(files / "calib.npz"),
                 "--timesteps", "8", "--hardware", "loihi", "-o", str(out)]) == 0
    assert "converted for 'loihi'; channel scales within a ratio of 8" in capsys.readouterr().out
    info = snnedge.load_network(out).conversion_
    assert info.hardware == "loihi" and info.max_scale_ratio == 8.0
    assert main(["convert", str(files / "model.pt2"), "--calibration", str(files / "calib.npz"),
                 "--hardware", "dynap-se", "-o", str(tmp_path / "x.pt")]) == 2
    assert "no number format 'dynap-se'" in capsys.readouterr().err


def test_convert_readout_option(files, tmp_path, capsys):
    """--readout: chosen by default (said in the summary, kept in the file), a number as
    given, anything else a one-line usage error."""
    args = ["convert", str(files / "model.pt2"), "--calibration", str(files / "calib.npz"),
            "--timesteps", "8"]
    assert main(args + ["-o", str(tmp_path / "auto.pt")]) == 0
    assert "(chosen on the calibration data)" in capsys.readouterr().out
    assert snnedge.load_network(tmp_path / "auto.pt").conversion_.readout_errors
    assert main(args + ["--readout", "2.5", "-o", str(tmp_path / "p.pt")]) == 0
    assert "readout: step t of T weighted by (t/T)^2.5; first-layer phases: " in capsys.readouterr().out
    assert snnedge.load_network(tmp_path / "p.pt").readout_exponent == 2.5
    assert main(args + ["--readout", "late", "-o", str(tmp_path / "x.pt")]) == 2
    assert "--readout takes 'auto' or a number" in capsys.readouterr().err


def test_convert_phases_option(files, tmp_path, capsys):
    """--phases: given phases are kept in the file and said in the summary; others refused."""
    args = ["convert", str(files / "model.pt2"), "--calibration", str(files / "calib.npz"),
            "--timesteps", "8", "--readout", "0"]
    for phases in ("ordered", "aligned"):
        assert main(args + ["--phases", phases, "-o", str(tmp_path / f"{phases}.pt")]) == 0
        assert f"first-layer phases: {phases}\n" in capsys.readouterr().out
        assert snnedge.load_network(tmp_path / f"{phases}.pt").conversion_.phases == phases
    with pytest.raises(SystemExit) as exit_:
        main(args + ["--phases", "random", "-o", str(tmp_path / "x.pt")])
    assert exit_.value.code == 2 and "invalid choice: 'random'" in capsys.readouterr().err


def test_convert_simulate_report(files, tmp_path, capsys):
    calib = str(files / "calib.npz")
    assert main(["convert", str(files / "model.pt2"), "--calibration", calib, "--timesteps", "8",
                 "--normalization", "max", "-o", str(tmp_path / "snn.pt")]) == 0
    out = capsys.readouterr().out
    assert "neuron layers" in out and "normalization: max" in out and "capture error" in out

    assert main(["simulate", str(tmp_path / "snn.pt"), "--data", calib, "--timesteps", "8",
                 "--engine", "event", "-o", str(tmp_path / "results.json")]) == 0
    out = capsys.readouterr().out
    assert "SimulationResult: 24 samples x 8 steps" in out and "accuracy:" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"timesteps", "num_samples", "spike_counts", "synaptic_events", "firing_rates",
            "per_inference", "accuracy", "accuracy_curve", "network", "data"} <= set(results)
    assert results["timesteps"] == 8 and results["num_samples"] == 24
    assert results["engine"] == "event" and results["accuracy"] > 0.5

    report = tmp_path / "report"
    assert main(["report", str(tmp_path / "snn.pt"), "--data", calib, "--timesteps", "4", "8",
                 "--no-progress", "-o", str(report)]) == 0
    assert "| truenorth | SNN |" in capsys.readouterr().out
    assert {"report.md", "report.json", "energy.png", "firing_rates.png", "core_occupancy.png",
            "accuracy_vs_T.png", "accuracy_vs_energy.png"} <= {p.name for p in report.iterdir()}
    rep = json.loads((report / "report.json").read_text())
    rows = {(r["name"], r["timesteps"]) for r in rep["comparison"]}
    assert {("truenorth", 4), ("truenorth", 8), ("dynap-se", 8), ("dynap-cnn", 8), ("loihi", 8),
            ("cpu", None), ("gpu-jetson-tx2", None), ("tpu-v1", None), ("eyeriss", None)} <= rows
    assert set(rep["snn"]["accuracy_by_T"]) == {"4", "8"}
    assert "## Mapping problems" in (report / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "results.json", "snn.pt"]


def test_report_hardware_shows_float_and_on_chip_accuracy(files, tmp_path, capsys):
    report = tmp_path / "report"
    assert main(["report", str(files / "snn.pt"), "--data", str(files / "calib.npz"),
                 "--timesteps", "8", "--targets", "truenorth", "loihi", "--baselines", "cpu",
                 "--hardware", "--no-progress", "-o", str(report)]) == 0
    assert "| row | model | accuracy | on-chip accuracy |" in capsys.readouterr().out
    rep = json.loads((report / "report.json").read_text())
    rows = {r["name"]: r for r in rep["comparison"]}
    assert rows["loihi"]["hardware_accuracy"] is not None and rows["cpu"]["hardware_accuracy"] is None
    assert rep["hardware"] == {"truenorth T=8": rows["truenorth"]["hardware_accuracy"],
                               "loihi T=8": rows["loihi"]["hardware_accuracy"]}
    assert "on-chip accuracy" in (report / "report.md").read_text()


def test_state_dict_with_class(files, tmp_path, capsys, models_on_path):
    snn = tmp_path / "snn.pt"
    assert main(["convert", str(files / "weights.pt"), "--class", "cli_models:TinyCNN",
                 "--class-kwargs", '{"channels": 4}', "--calibration", str(files / "calib.npz"),
                 "--timesteps", "8", "-o", str(snn)]) == 0
    assert "MACs" in capsys.readouterr().out
    net, meta = snnedge.load_network(snn, with_metadata=True)
    assert meta["class"] == "cli_models:TinyCNN" and meta["ann_ops"]["macs"] > 0
    assert main(["report", str(snn), "--data", str(files / "calib.npz"), "--timesteps", "8",
                 "--targets", "truenorth", "--baselines", "cpu", "eyeriss", "-o",
                 str(tmp_path / "rep")]) == 0
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [r["name"] for r in rep["comparison"]] == ["truenorth", "cpu", "eyeriss"]
    assert rep["ann_ops"]["macs"] == meta["ann_ops"]["macs"]  # the ANN's own counts
    assert not any("rate-equivalent" in n for n in rep["notes"])
    # a second report replaces the folder as a whole and leaves no temporary folders
    assert main(["report", str(snn), "--data", str(files / "calib.npz"), "--timesteps", "4",
                 "--targets", "dynap-se", "--baselines", "tpu-v1", "-o", str(tmp_path / "rep")]) == 0
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [r["name"] for r in rep["comparison"]] == ["dynap-se", "tpu-v1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep", "snn.pt"]


def test_saved_network_simulates_like_the_converted_one(files):
    from converters import convert

    x = torch.as_tensor(np.load(files / "calib.npz")["x"])
    fresh = convert(torch.export.load(files / "model.pt2"), calibration=x, timesteps=8)
    loaded = snnedge.load_network(files / "snn.pt")
    a, b = snnedge.simulate(fresh, x, timesteps=8), snnedge.simulate(loaded, x, timesteps=8)
    assert a.spike_counts == b.spike_counts and torch.equal(a.output, b.output)


def _usage_error(capsys, argv, out_dir, *fragments):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"snnedge {argv[0]}: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert list(out_dir.iterdir()) == []  # nothing written, no temporary files


ERRORS = {
    "missing model": (lambda f, o: ["convert", f / "nope.pt2", "--calibration", f / "calib.npz",
                                    "-o", o / "snn.pt"], ["'", "nope.pt2", "does not exist"]),
    "missing calibration data": (lambda f, o: ["convert", f / "model.pt2", "--calibration",
                                               f / "nope.npz", "-o", o / "snn.pt"],
                                 ["nope.npz", "does not exist"]),
    "missing simulate data": (lambda f, o: ["simulate", f / "snn.pt", "--data", f / "nope.npz",
                                            "-o", o / "r.json"], ["nope.npz", "does not exist"]),
    "missing network": (lambda f, o: ["report", f / "nope.pt", "--data", f / "calib.npz",
                                      "-o", o / "rep"], ["nope.pt", "snnedge convert"]),
    "pickled model": (lambda f, o: ["convert", f / "whole.pt", "--calibration", f / "calib.npz",
                                    "-o", o / "snn.pt"],
                      ["pickled", "torch.export.save", "state_dict()", "--class"]),
    "unsupported layer": (lambda f, o: ["convert", f / "sigmoid.pt", "--class",
                                        "cli_models:SigmoidCNN", "--calibration",
                                        f / "calib.npz", "-o", o / "snn.pt"],
                          ["'act' (Sigmoid)", "Fix: replace Sigmoid with ReLU"]),
    "calibration shape (class)": (lambda f, o: ["convert", f / "weights.pt", "--class",
                                                "cli_models:TinyCNN", "--calibration",
                                                f / "wrong_shape.npz", "-o", o / "snn.pt"],
                                  ["[1, 6, 6]", "shaped like the model's input"]),
    "calibration shape (export)": (lambda f, o: ["convert", f / "model.pt2", "--calibration",
                                                 f / "wrong_shape.npz", "-o", o / "snn.pt"],
                                   ["[1, 8, 8]", "[1, 6, 6]"]),
    "simulate shape": (lambda f, o: ["simulate", f / "snn.pt", "--data", f / "wrong_shape.npz",
                                     "-o", o / "r.json"], ["[1, 6, 6]", "takes [1, 8, 8]"]),
    "unknown target": (lambda f, o: ["report", f / "snn.pt", "--data", f / "calib.npz",
                                     "--targets", "truenorth", "spinnaker", "-o", o / "rep"],
                       ["unknown target 'spinnaker'", "truenorth, dynap-se, dynap-cnn"]),
    "unknown baseline": (lambda f, o: ["report", f / "snn.pt", "--data", f / "calib.npz",
                                       "--baselines", "tpu-v9", "-o", o / "rep"],
                         ["unknown baseline 'tpu-v9'", "gpu-jetson-tx2", "eyeriss"]),
    "class not importable": (lambda f, o: ["convert", f / "weights.pt", "--class",
                                           "no_such_package.models:Net", "--calibration",
                                           f / "calib.npz", "-o", o / "snn.pt"],
                             ["cannot import module 'no_such_package.models'", "PYTHONPATH"]),
    "class not in module": (lambda f, o: ["convert", f / "weights.pt", "--class",
                                          "cli_models:Missing", "--calibration", f / "calib.npz",
                                          "-o", o / "snn.pt"], ["no attribute 'Missing'"]),
    "state dict without class": (lambda f, o: ["convert", f / "weights.pt", "--calibration",
                                               f / "calib.npz", "-o", o / "snn.pt"],
                                 ["state dict", "--class"]),
    "weights of another class": (lambda f, o: ["convert", f / "weights.pt", "--class",
                                               "cli_models:SigmoidCNN", "--calibration",
                                               f / "calib.npz", "-o", o / "snn.pt"],
                                 ["does not fit cli_models:SigmoidCNN"]),
    "network as model": (lambda f, o: ["convert", f / "snn.pt", "--calibration", f / "calib.npz",
                                       "-o", o / "snn.pt"], ["already", "snnedge simulate"]),
    "model as network": (lambda f, o: ["simulate", f / "weights.pt", "--data", f / "calib.npz",
                                       "-o", o / "r.json"], ["not a network saved by"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_errors_are_one_line(case, files, tmp_path, capsys, models_on_path):
    argv, fragments = ERRORS[case]
    _usage_error(capsys, argv(files, tmp_path), tmp_path, *fragments)


def test_data_file_with_unknown_arrays(files, tmp_path, capsys):
    np.savez(files / "keys.npz", a=np.zeros((2, 1, 8, 8)), b=np.zeros(2))
    out = tmp_path / "out"
    out.mkdir()
    _usage_error(capsys, ["simulate", files / "snn.pt", "--data", files / "keys.npz", "-o",
                          out / "r.json"], out, "['a', 'b']", "x=x, y=y")


def _tampered_pt2(src, dst, member: str, data: bytes, replace: bool):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for item in zin.infolist():
            if not (replace and item.filename == f"{root}/{member}"):
                zout.writestr(item, zin.read(item.filename))
        zout.writestr(f"{root}/{member}", data)


def _pickle_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(argparse.Namespace(evil=True), buf)  # weights_only loading refuses this
    return buf.getvalue()


_PICKLED_WEIGHTS = json.dumps({"config": {"0.weight": {"path_name": "weight_0", "is_param": True,
                                                       "use_pickle": True}}}).encode()


@pytest.mark.parametrize("member,data,replace,fragment", [
    ("data/sample_inputs/model.pt", _pickle_bytes(), True, "data/sample_inputs/model.pt"),
    ("data/aotinductor/model/model.so", b"\x7fELF", False, "compiled code"),
    ("data/weights/model_weights_config.json", _PICKLED_WEIGHTS, True, "'0.weight' as a pickled"),
])
def test_pt2_that_would_unpickle_or_load_code_is_refused(files, tmp_path, capsys, member, data,
                                                          replace, fragment):
    _tampered_pt2(files / "model.pt2", files / "tampered.pt2", member, data, replace)
    _usage_error(capsys, ["convert", files / "tampered.pt2", "--calibration", files / "calib.npz",
                          "-o", tmp_path / "snn.pt"], tmp_path, fragment, "torch.export.save")


# tiny_cnn_torch<version>.pt2: one model saved by each torch release named (written by
# tests/data/pt2/make_archive.py), so that one environment checks every release's archives
PT2_ARCHIVES = sorted((TESTS / "data" / "pt2").glob("tiny_cnn_torch*.pt2"))


def _torch_release(archive: Path) -> tuple[int, int]:
    major, minor = archive.stem.removeprefix("tiny_cnn_torch").split(".")[:2]
    return int(major), int(minor)


def test_pt2_archives_span_the_supported_torch_range():
    releases = {_torch_release(a) for a in PT2_ARCHIVES}
    assert {(2, 8), (2, 9), (2, 13), (2, 14), (2, 15)} <= releases


@pytest.mark.parametrize("archive", PT2_ARCHIVES, ids=lambda a: a.stem)
def test_pt2_archive_of_each_torch_release(archive, files, tmp_path, capsys):
    argv = ["convert", archive, "--calibration", files / "calib.npz", "--timesteps", "8",
            "-o", tmp_path / "snn.pt"]
    if _torch_release(archive) >= (2, 9):  # raw tensor bytes and JSON: accepted and converted
        assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
        # the archive holds the seeded TinyCNN of `files`: the same network comes out
        got = snnedge.load_network(tmp_path / "snn.pt").state_dict()
        want = snnedge.load_network(files / "snn.pt").state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
    else:  # torch 2.8 pickled the weights into data/weights/model.pt: refused, with the reason
        _usage_error(capsys, argv, tmp_path, "data/weights/model.pt", "torch 2.8 and older",
                     "torch 2.9 or newer")


def test_report_survives_a_closed_pipe(files, tmp_path, monkeypatch):
    """`snnedge report ... | head` must still leave the whole report folder."""
    real_print = print

    def closed_pipe(*args, **kwargs):
        if kwargs.get("file") is None:
            raise BrokenPipeError
        real_print(*args, **kwargs)

    monkeypatch.setattr("builtins.print", closed_pipe)
    rc = main(["report", str(files / "snn.pt"), "--data", str(files / "calib.npz"), "--timesteps", "4", "--targets", "loihi",
               "--baselines", "cpu", "--no-progress", "-o", str(tmp_path / "rep")])
    monkeypatch.undo()
    assert rc == 0 and (tmp_path / "rep" / "report.md").is_file()
