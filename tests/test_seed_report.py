"""The seed paper's networks (issue 17): stand-ins equal to torchvision's models, the seed
report, and ``snnedge report`` on their ``.pt2`` exports.

The stand-ins' counts are checked against torchvision's published metadata everywhere
(REFERENCES.md, "ANN operation counts"); where torchvision is installed, the stand-ins'
state dicts are checked equal to torchvision's models' and the command line runs on
torchvision's own exports too.
"""
import json

import numpy as np
import pytest
import torch

import snnedge
from snnedge.cli import main
from snnedge.cli.seed import TORCHVISION_METADATA, seed_report
from snnedge.cli.seed_models import (SEED_NETWORKS, STAND_IN, STAND_INS, TORCHVISION,
                                     build_seed_model, has_torchvision)

needs_torchvision = pytest.mark.skipif(not has_torchvision(), reason="torchvision not installed")


@pytest.mark.parametrize("name", SEED_NETWORKS)
def test_stand_ins_count_as_torchvision_states(name):
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = STAND_INS[name]()
    ops = snnedge.count_ops(model, (3, 224, 224))
    params, gmacs = TORCHVISION_METADATA[name]
    assert ops.params == params
    assert round(ops.macs / 1e9, 3) == gmacs


@needs_torchvision
@pytest.mark.parametrize("name", SEED_NETWORKS)
def test_metadata_is_torchvisions(name):
    import torchvision
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    assert TORCHVISION_METADATA[name] == (meta["num_params"], meta["_ops"])


@needs_torchvision
@pytest.mark.parametrize("name", SEED_NETWORKS)
def test_stand_ins_equal_torchvision_models(name):
    a = build_seed_model(name, 64, source="torchvision", bn_passes=1, bn_batch=2)
    b = build_seed_model(name, 64, source="snnedge", bn_passes=1, bn_batch=2)
    assert (a.source, b.source) == (TORCHVISION, STAND_IN)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_batchnorm_statistics_are_set_and_model_in_eval():
    built = build_seed_model("mobilenet_v2", 32, source="snnedge", bn_passes=2, bn_batch=2)
    assert not built.model.training
    bn = built.model.features[0][1]
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 2
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_build_refuses_bad_input():
    with pytest.raises(ValueError, match="at least 63 px"):
        build_seed_model("alexnet", 32)
    with pytest.raises(ValueError, match="'name' parameter of build_seed_model"):
        build_seed_model("lenet")


@pytest.fixture(scope="module")
def small_report():
    return seed_report(["mobilenet_v2"], size=32, samples=1, calibration=2, timesteps=4,
                       source="snnedge", convert_options={"calibrate_membrane": False})


def test_seed_report_has_every_number(small_report):
    rep = small_report
    (row,) = rep.rows
    assert row.macs == snnedge.count_ops(STAND_INS["mobilenet_v2"]().eval(), (3, 32, 32)).macs
    assert row.params == TORCHVISION_METADATA["mobilenet_v2"][0]
    assert row.matches_torchvision() is None  # the metadata is for 224 px
    assert row.neurons > 0 and row.synaptic_events > row.spikes > 0
    assert set(row.mappings) == set(rep.targets) == {"truenorth", "dynap-se", "dynap-cnn", "loihi"}
    tn = row.mappings["truenorth"]
    assert tn["cores"] >= row.splitter_cores() > 0  # cores include the splitter cores
    assert row.mappings["dynap-se"]["boards"] >= 1
    for acc in ("single", "throughput"):
        assert set(row.energies[acc]) == set(rep.targets) | set(rep.baselines)
    # direct encoding: the first layer's analog MACs are not priced, so targets are bounds
    assert all(not ok for t, (v, ok) in row.energies["single"].items() if t in rep.targets)
    single, busy = row.energies["single"]["truenorth"][0], row.energies["throughput"]["truenorth"][0]
    assert busy <= single
    text = rep.to_markdown()
    for fragment in ("TrueNorth cores (splitters)", "DYNAP-SE boards", "DYNAP-CNN", "Loihi chips",
                     "`throughput` accounting", ">= ", "MobileNetV2 on dynap-cnn"):
        assert fragment in text


def test_seed_report_writes_folder_and_strict_json(small_report, tmp_path):
    out = small_report.write(tmp_path / "seed")
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json",
                                               "ops_vs_performance_density.png",
                                               "memory_vs_energy_efficiency.png"}
    data = json.loads((out / "report.json").read_text())  # strict JSON: no NaN
    (net,) = data["networks"]
    assert net["ann"]["params"] == TORCHVISION_METADATA["mobilenet_v2"][0]
    assert net["energy_j"]["single"]["truenorth"]["lower_bound"] is True


def test_gap_plots_place_every_network(small_report):
    fig = small_report.plot_ops_vs_performance_density()
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert {"MobileNetV2", "MobileNetV2 SNN"} <= labels
    fig = small_report.plot_memory_vs_energy_efficiency()
    assert "MobileNetV2" in {t.get_text() for t in fig.axes[0].texts}


# -- snnedge report on a .pt2 export ----------------------------------------------------------
@pytest.fixture(scope="module", params=["snnedge", pytest.param("torchvision",
                                                                 marks=needs_torchvision)])
def exported(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("pt2")
    built = build_seed_model("mobilenet_v2", 32, source=request.param, bn_passes=1, bn_batch=2)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.export.save(torch.export.export(built.model, (x[:1],)), d / "model.pt2")
    np.savez(d / "data.npz", x=x.numpy())
    return d, built


def test_report_converts_a_pt2_and_counts_the_ann(exported, tmp_path, capsys):
    d, built = exported
    out = tmp_path / "report"
    assert main(["report", str(d / "model.pt2"), "--calibration", str(d / "data.npz"),
                 "--data", str(d / "data.npz"), "--timesteps", "4", "--no-progress",
                 "-o", str(out)]) == 0
    assert "| truenorth | SNN |" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    ops = snnedge.count_ops(built.model, (3, 32, 32))
    assert rep["ann_ops"] == {"macs": ops.macs, "params": ops.params,
                              "memory_bytes": ops.memory_bytes}  # the ANN's own counts
    assert not any("rate-equivalent" in n for n in rep["notes"])
    assert {r["name"] for r in rep["comparison"]} >= {"truenorth", "loihi", "cpu", "eyeriss"}


def test_convert_stores_the_exported_ann_counts(exported, tmp_path):
    d, built = exported
    assert main(["convert", str(d / "model.pt2"), "--calibration", str(d / "data.npz"),
                 "--timesteps", "4", "-o", str(tmp_path / "snn.pt")]) == 0
    _, meta = snnedge.load_network(tmp_path / "snn.pt", with_metadata=True)
    assert meta["ann_ops"]["params"] == TORCHVISION_METADATA["mobilenet_v2"][0]


@pytest.mark.parametrize("argv,fragments", [
    (["simulate", "{d}/model.pt2", "--data", "{d}/data.npz"],
     ["torch.export program (an ANN)", "snnedge convert"]),
    (["report", "{d}/model.pt2", "--data", "{d}/data.npz", "-o", "{o}/rep"],
     ["pass --calibration DATA"]),
    (["report", "{d}/data.npz", "--calibration", "{d}/data.npz", "--data", "{d}/data.npz",
      "-o", "{o}/rep"], ["--calibration converts a trained ANN"]),
])
def test_pt2_misuse_is_one_line(exported, tmp_path, capsys, argv, fragments):
    d, _ = exported
    code = main([a.format(d=d, o=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert all(f in err for f in fragments), err
    assert list(tmp_path.iterdir()) == []


def test_seed_command_writes_the_report(tmp_path, capsys):
    out = tmp_path / "seed"
    assert main(["seed", "--networks", "mobilenet_v2", "--size", "32", "--samples", "1",
                 "--calibration", "2", "--timesteps", "4", "--no-membrane-calibration",
                 "--source", "snnedge", "--targets", "loihi", "--baselines", "cpu",
                 "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| MobileNetV2 | snnedge stand-in | 32x32 |" in captured.out
    assert "wrote" in captured.err and (out / "report.md").is_file()
    data = json.loads((out / "report.json").read_text())
    assert data["targets"] == ["loihi"] and data["baselines"] == ["cpu"]


def test_seed_command_unknown_target_fails_before_building(tmp_path, capsys):
    code = main(["seed", "--targets", "spinnaker", "-o", str(tmp_path / "seed")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "spinnaker" in err
    assert list(tmp_path.iterdir()) == []
