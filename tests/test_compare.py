"""compare: one row per target and T and per baseline, each number traceable to a figure."""
import csv
import io
import pathlib
import sys

import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import estimate_energy, get_profile, map_network
from neuromorphic_targets.baselines import estimate_baseline, get_baseline
from neuromorphic_targets.compare import COLUMNS, Comparison, RateEquivalentANN, compare

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from model_digest import state_hash as digest  # noqa: E402

SHAPE = (1, 8, 8)
TARGETS = ["truenorth", "dynap-se", "dynap-cnn"]
BASELINES = ["cpu", "gpu-jetson-tx2", "tpu-v1", "eyeriss"]


def make_ann():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3)).eval()


ANN = make_ann()
# The SNN shares the ANN's synaptic layers (a conversion with unit scales).
SNN = snnedge.sequential(ANN[0], snnedge.IF(threshold=0.5), ANN[2], ANN[3],
                         snnedge.IF(threshold=0.5), ANN[5], ANN[6], input_shape=SHAPE)
X = torch.rand(6, *SHAPE)
Y = torch.tensor([0, 1, 2, 0, 1, 2])
RESULTS = [snnedge.simulate(SNN, X, timesteps=T, encoding="poisson", seed=1) for T in (8, 4)]
REP = compare(RESULTS, ann=ANN, snn=SNN, y=Y, accuracy_ann=0.75)


def test_rows_per_target_and_T_then_baselines():
    assert isinstance(REP, Comparison)
    labels = [r.label for r in REP.rows]
    assert labels == [f"{t} (T={T})" for t in TARGETS for T in (4, 8)] + BASELINES
    assert [r.timesteps for r in REP.results] == [4, 8]
    assert set(REP.mappings) == set(TARGETS)
    assert REP.row("truenorth").timesteps == 8 and REP.row("truenorth", 4).timesteps == 4
    with pytest.raises(KeyError, match="loihi"):
        REP.row("loihi")


def test_target_rows_equal_estimate_energy():
    for name in TARGETS:
        m = map_network(SNN, name)
        for res in RESULTS:
            row = REP.row(name, res.timesteps)
            e = estimate_energy(res, m)
            assert row.energy_j == e.total_j and row.energy_complete == e.complete
            assert row.latency_s == e.latency_s and list(row.missing) == e.missing
            assert row.spikes == pytest.approx(res.total_spikes / res.num_samples)
            assert row.synaptic_events == pytest.approx(res.total_synaptic_events / res.num_samples)
            assert (row.cores, row.chips, row.feasible) == (m.cores, m.chips, m.feasible)
            assert row.accuracy == res.accuracy(Y) and row.model == "SNN"
    assert REP.row("dynap-cnn").energy_j is None  # no published energy figure


def test_baseline_rows_equal_estimate_baseline():
    ops = snnedge.count_ops(ANN, SHAPE)
    assert REP.ops.macs == ops.macs
    for name in BASELINES:
        row = REP.row(name)
        e = estimate_baseline(ANN, name, input_shape=SHAPE)
        assert row.energy_j == pytest.approx(e.total_j) and row.latency_s == e.latency_s
        assert row.macs == ops.macs and row.accuracy == 0.75 and row.timesteps is None
        assert row.energy_method == get_baseline(name).method and row.model == "ANN"
        assert row.spikes is None and row.cores is None


def test_every_number_is_traceable():
    for row in REP.rows:
        # a row mixing known and unknown terms says so: incomplete <=> missing terms listed
        assert (not row.energy_complete) == bool(row.missing)
        if row.energy_j is not None:
            assert row.sources, row.label
        prof = get_profile(row.name) if row.kind == "neuromorphic" else get_baseline(row.name)
        cited = {f.source for f in prof.figures().values()}
        for s in row.sources:
            assert any(s.startswith(c) for c in cited), (row.label, s)


def test_table_markdown_and_csv():
    table = REP.table()
    assert len(table) == len(REP.rows) and all(tuple(r) == COLUMNS for r in table)
    md = REP.to_markdown()
    assert md.count("\n| ") == len(REP.rows)  # one line per row after the header
    assert ">= " in md and "unknown" in md
    for i, source in enumerate(REP.sources(), 1):
        assert f"[{i}] {source}" in md
    for problem in REP.mappings["dynap-se"].problems[:3]:
        assert f"- dynap-se infeasible: {problem}" in md
    parsed = list(csv.DictReader(io.StringIO(REP.to_csv())))
    assert [r["name"] for r in parsed] == [r.name for r in REP.rows]
    for got, row in zip(parsed, REP.rows):
        assert (got["energy_j"] == "") == (row.energy_j is None)
        if row.energy_j is not None:
            assert float(got["energy_j"]) == pytest.approx(row.energy_j)


def test_to_csv_writes_a_file(tmp_path):
    path = tmp_path / "report.csv"
    text = REP.to_csv(path)
    assert path.read_text() == text and text.startswith(",".join(COLUMNS))


def test_compare_does_not_change_the_networks():
    before = digest(SNN), digest(ANN)
    compare(RESULTS[1], ann=ANN, snn=SNN, targets=["dynap-cnn"], baselines=["cpu"])
    assert (digest(SNN), digest(ANN)) == before


def test_rate_equivalent_ann_counts_the_same_macs():
    eq = RateEquivalentANN(SNN)
    x = torch.rand(2, *SHAPE)
    assert torch.allclose(eq(x), ANN(x))  # neurons as ReLU: the ANN itself
    assert snnedge.count_ops(eq, SHAPE).macs == snnedge.count_ops(ANN, SHAPE).macs
    rep = compare(RESULTS[1], snn=SNN, targets=[], baselines=["cpu"])
    assert rep.row("cpu").energy_j == pytest.approx(REP.row("cpu").energy_j)
    assert any("rate-equivalent" in n for n in rep.notes)


def test_accuracy_is_none_without_labels():
    rep = compare(RESULTS[1], ann=ANN, snn=SNN, targets=["dynap-se"], baselines=["cpu"])
    assert all(r.accuracy is None for r in rep.rows)


def test_baselines_from_stored_op_counts():
    # counts stored beside a network (snnedge convert) stand in for the ANN itself
    ops = snnedge.OpCount.from_dict(snnedge.count_ops(ANN, SHAPE).to_dict())
    rep = compare(RESULTS[1], snn=SNN, targets=[], baselines=BASELINES, ops=ops)
    assert rep.ops == ops and not any("rate-equivalent" in n for n in rep.notes)
    assert [(r.name, r.macs, r.energy_j) for r in rep.rows] == \
        [(b, REP.row(b).macs, REP.row(b).energy_j) for b in BASELINES]
    with pytest.raises(TypeError, match="'ops' parameter of compare"):
        compare(RESULTS[1], snn=SNN, targets=[], baselines=["cpu"], ops={"macs": 1})


def test_baselines_only_with_an_ann():
    rep = compare(RESULTS[1], ann=ANN, targets=[], baselines=["cpu"], input_shape=SHAPE)
    assert [r.name for r in rep.rows] == ["cpu"] and rep.mappings == {}


def test_network_carried_by_the_result():
    import dataclasses
    import weakref

    for held in (SNN, weakref.ref(SNN)):
        res = dataclasses.replace(RESULTS[1], extra={**RESULTS[1].extra, "network": held})
        rep = compare(res, ann=ANN, targets=["dynap-cnn"], baselines=[])
        assert rep.mappings["dynap-cnn"].cores == REP.mappings["dynap-cnn"].cores


def test_errors_say_what_to_pass():
    import dataclasses

    orphan = dataclasses.replace(RESULTS[1], network=None)  # e.g. a result built by hand
    with pytest.raises(ValueError, match="snn="):
        compare(orphan, ann=ANN)
    with pytest.raises(ValueError, match="'spinnaker'"):
        compare(RESULTS[1], snn=SNN, targets=["spinnaker"])
    with pytest.raises(ValueError, match="'gpu'"):
        compare(RESULTS[1], snn=SNN, targets=[], baselines=["gpu"])
    with pytest.raises(ValueError, match="'utilisation'"):
        compare(RESULTS[1], snn=SNN, utilisation=2.0)
    with pytest.raises(TypeError, match="SimulationResult"):
        compare("result", snn=SNN)
    with pytest.raises(ValueError, match="input_shape"):
        compare(orphan, ann=ANN, targets=[], baselines=["cpu"])
