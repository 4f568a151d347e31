"""The two energy accountings (issue 21): `single` (whole chips x latency, the default and the
numbers of before) and `throughput` (static power by the share of cores used), on
hand-computed examples; every row's accounting and lower-bound status in the table, the
markdown, the CSV and the plots; the 45 nm table as a named lower bound; rows timed here."""
import csv
import io
import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import (ACCOUNTINGS, accounting_table, compare, estimate_energy,
                                  get_baseline, get_profile, map_network)
from neuromorphic_targets.baselines import estimate_baseline
from neuromorphic_targets.measured import (MeasuredDevice, estimate_measured, measured_device,
                                           time_inference)
from neuromorphic_targets.plots import plot_accuracy_vs_energy, plot_energy_comparison
from snnedge.results import SimulationResult

TN = get_profile("truenorth")
SHAPE = (1, 8, 8)


def network(channels: int = 4) -> snnedge.SpikingNetwork:
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(1, channels, 3, padding=1), snnedge.IF(threshold=0.5),
                              nn.AvgPool2d(2), nn.Flatten(), nn.Linear(channels * 16, 3),
                              input_shape=SHAPE)


NET = network()
X = torch.rand(6, *SHAPE)
Y = torch.tensor([0, 1, 2, 0, 1, 2])
RES = snnedge.simulate(NET, X, timesteps=10, encoding="poisson", seed=1, labels=Y)
MAP = map_network(NET, "truenorth")


def test_throughput_charges_k_cores_of_4096():
    k, T = MAP.cores, RES.timesteps
    single = estimate_energy(RES, MAP)
    busy = estimate_energy(RES, MAP, accounting="throughput")
    # static: 42 mW x chips x T x 1 ms (single); 42 mW x k / 4096 x T x 1 ms (throughput)
    assert single.static_j == pytest.approx(0.042 * MAP.chips * T * 1e-3, rel=1e-12)
    assert busy.static_j == pytest.approx(0.042 * k / 4096 * T * 1e-3, rel=1e-12)
    assert single.static_j / busy.static_j == pytest.approx(4096 * MAP.chips / k)
    # the per-event energy is the same in both
    syn = RES.total_synaptic_events / RES.num_samples
    assert busy.dynamic_j == single.dynamic_j
    assert busy.breakdown["synaptic_events"].joules == pytest.approx(syn * TN.e_synop_j.value)
    assert busy.total_j == pytest.approx(busy.static_j + busy.dynamic_j)
    assert (single.accounting, busy.accounting) == ("single", "throughput")
    assert busy.static_share_chips == pytest.approx(k / 4096) and single.static_share_chips == 1
    assert busy.time_per_inference_s == single.time_per_inference_s == pytest.approx(T * 1e-3)
    assert f"{k} cores / 4096 per chip" in busy.breakdown["static"].note
    assert "[throughput accounting]" in busy.table() and "[single accounting]" in single.table()


def test_a_chip_filled_by_copies_costs_the_same_under_both():
    # a network on all 4,096 cores of one chip: its share is the whole chip
    m = MAP.__class__(**{**MAP.__dict__, "cores": 4096, "chips": 1})
    assert estimate_energy(RES, m, accounting="throughput").static_j == pytest.approx(
        estimate_energy(RES, m).static_j)


def test_input_rate_charges_the_time_between_inputs():
    T = RES.timesteps  # 10 ticks of 1 ms: at most 100 inputs/s per copy
    at_max = estimate_energy(RES, MAP, accounting="throughput", input_rate_hz=100.0)
    assert at_max.static_j == pytest.approx(estimate_energy(RES, MAP, accounting="throughput").static_j)
    slow = estimate_energy(RES, MAP, accounting="throughput", input_rate_hz=25.0)
    assert slow.time_per_inference_s == pytest.approx(1 / 25)
    assert slow.static_j == pytest.approx(0.042 * MAP.cores / 4096 / 25.0)
    assert slow.static_j == pytest.approx(4 * at_max.static_j) and slow.dynamic_j == at_max.dynamic_j
    with pytest.raises(ValueError, match="at most 100 inputs/s"):
        estimate_energy(RES, MAP, accounting="throughput", input_rate_hz=1000.0)
    with pytest.raises(ValueError, match="accounting='throughput'"):
        estimate_energy(RES, MAP, input_rate_hz=10.0)
    with pytest.raises(ValueError, match="'input_rate_hz'"):
        estimate_energy(RES, MAP, accounting="throughput", input_rate_hz=0.0)
    assert T == 10


def test_static_scope_is_the_same_idea_under_its_old_name():
    with pytest.warns(DeprecationWarning, match="accounting='throughput'"):
        old = estimate_energy(RES, MAP, static_scope="cores")
    assert old.to_dict() == estimate_energy(RES, MAP, accounting="throughput").to_dict()
    with pytest.warns(DeprecationWarning):
        assert estimate_energy(RES, MAP, static_scope="chips").to_dict() == \
            estimate_energy(RES, MAP).to_dict()
    with pytest.raises(ValueError, match="pass accounting only"):
        estimate_energy(RES, MAP, static_scope="chips", accounting="throughput")
    with pytest.raises(ValueError, match="'accounting'"):
        estimate_energy(RES, MAP, accounting="shared")
    with pytest.warns(DeprecationWarning):
        rep = compare(RES, snn=NET, targets=["truenorth"], baselines=[], static_scope="cores")
    assert rep.accounting == "throughput"


def test_unknown_static_power_stays_unknown_under_both():
    m = map_network(NET, "dynap-se")
    for accounting in ACCOUNTINGS:
        e = estimate_energy(RES, m, accounting=accounting)
        assert e.static_j is None and "static" in e.missing and e.is_lower_bound


def _golden_network_and_activity():
    """The network and hand-written activity of tests/test_targets_golden.py (before issue 21:
    TrueNorth 0.0004203981990739703 J per inference)."""
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(1, 8, 3, padding=1), snnedge.IF(threshold=0.5),
                             nn.AvgPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                             snnedge.IF(threshold=0.5), nn.Flatten(), nn.Linear(8 * 8 * 8, 3),
                             input_shape=(1, 16, 16))
    spikes = {"1": torch.arange(8 * 16 * 16).reshape(8, 16, 16) % 7,
              "4": torch.arange(8 * 8 * 8).reshape(8, 8, 8) % 5}
    res = SimulationResult(
        output=torch.zeros(4, 3), step_predictions=torch.zeros(10, 4, dtype=torch.long),
        spike_counts={k: int(v.sum()) for k, v in spikes.items()},
        synaptic_events={"0": 0, "3": 123_456, "6": 6_789}, input_macs={},
        neurons={"1": 2048, "4": 512}, neuron_spike_counts=spikes, timesteps=10, num_samples=4,
        encoding="poisson", engine="dense")
    return net, res


def test_compare_by_default_gives_the_numbers_of_before():
    net, res = _golden_network_and_activity()
    rep = compare(res, snn=net, targets=["truenorth"], baselines=[])
    assert rep.accounting == "single" and rep.row("truenorth").accounting == "single"
    assert rep.row("truenorth").energy_j == 0.0004203981990739703  # pinned before issue 21
    busy = compare(res, snn=net, targets=["truenorth"], baselines=[], accounting="throughput")
    m = rep.mappings["truenorth"]
    # 42 mW x (1 chip -> cores / 4096) x 10 ms: the difference is the static share only
    assert rep.row("truenorth").energy_j - busy.row("truenorth").energy_j == pytest.approx(
        0.042 * 10e-3 * (1 - m.cores / 4096), rel=1e-9)


REP = compare(RES, snn=NET, y=Y, targets=["truenorth", "dynap-se"],
              baselines=["cpu", "gpu-jetson-tx2", "tpu-v1", "eyeriss"], accounting="throughput")


def test_every_row_says_its_accounting_and_bound_in_table_markdown_and_csv():
    how = {r.name: r.accounting for r in REP.rows}
    assert how == {"truenorth": "throughput", "dynap-se": "throughput", "cpu": "ops lower bound",
                   "gpu-jetson-tx2": "throughput (peak)", "tpu-v1": "throughput (peak)",
                   "eyeriss": "throughput (measured)"}
    assert all(row["accounting"] == how[row["name"]] for row in REP.table())
    cpu = REP.row("cpu")
    assert not cpu.energy_complete and "overhead" in cpu.missing
    md = REP.to_markdown()
    lines = {ln.split(" | ")[0][2:]: ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "| accounting |" in lines["row"]
    assert "| throughput |" in lines["truenorth"] and "| >= " in lines["dynap-se"]
    assert "| ops lower bound |" in lines["cpu"] and "| >= " in lines["cpu"]
    assert "Accounting: targets `throughput`" in md
    parsed = list(csv.DictReader(io.StringIO(REP.to_csv())))
    assert [(r["name"], r["accounting"], r["energy_complete"]) for r in parsed] == [
        (r.name, r.accounting, str(r.energy_complete)) for r in REP.rows]
    assert any("throughput accounting" in n for n in REP.notes)


def test_plots_show_the_accounting_and_the_bounds():
    ax = plot_energy_comparison(REP).axes[0]
    assert "throughput accounting" in ax.get_title(loc="right")
    assert ">= lower bound" in ax.get_title(loc="right")
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert "cpu\nops lower bound" in ticks and "eyeriss\nthroughput (measured)" in ticks
    assert ">=" in [t.get_text() for t in ax.texts]
    ax = plot_accuracy_vs_energy(REP).axes[0]
    assert "throughput accounting" in ax.get_title(loc="right")


def test_accounting_table_side_by_side():
    single = compare(RES, snn=NET, targets=["truenorth", "dynap-se"], baselines=[])
    text = accounting_table(single, REP)
    row = next(ln for ln in text.splitlines() if ln.startswith("| truenorth |"))
    ratio = single.row("truenorth").energy_j / REP.row("truenorth").energy_j
    assert row.endswith(f"| {ratio:,.0f}x |") and ratio > 1
    assert "| dynap-se |" in text and text.count("\n") == 3


def test_profiles_name_the_figures_of_each_accounting():
    assert set(TN.accounting_figures("single")) == {"p_static_w", "tick_s", "e_synop_j"}
    assert set(TN.accounting_figures("throughput")) == {"p_static_w", "tick_s", "e_synop_j",
                                                       "cores_per_chip"}
    for name in ("truenorth", "dynap-se", "dynap-cnn", "loihi"):
        prof = get_profile(name)
        for accounting in ACCOUNTINGS:
            figs = prof.accounting_figures(accounting)
            assert "p_static_w" in figs and all(f.source for f in figs.values())
    text = TN.describe_accounting()
    assert "Merolla" in text and "throughput:" in text and "cores_per_chip" in text
    assert "unverified" in get_profile("dynap-se").describe_accounting()
    with pytest.raises(ValueError, match="'accounting'"):
        TN.accounting_figures("busy")


def test_the_45nm_table_is_a_named_lower_bound():
    cpu = get_baseline("cpu")
    assert get_baseline("horowitz-45nm-bound") is cpu
    assert get_baseline("horowitz-45nm-bound-int8") is get_baseline("cpu-int8")
    assert "lower bound" in cpu.description
    e = estimate_baseline(nn.Linear(100, 10, bias=False), "horowitz-45nm-bound", input_shape=(100,))
    assert e.total_j == pytest.approx(645_150e-12)  # unchanged (test_baselines derives it)
    assert e.is_lower_bound and e.missing == ["overhead"]
    assert "instruction" in e.breakdown["overhead"].note and "Horowitz" in e.breakdown["overhead"].note
    assert e.breakdown["overhead"].joules is None
    assert "lower bound" in e.table()
    rep = compare(RES, snn=NET, targets=[], baselines=["horowitz-45nm-bound"])
    assert [r.name for r in rep.rows] == ["cpu"]


def test_measured_rows_time_the_ann_and_say_where_the_power_comes_from():
    dev = measured_device("bench", 12.5, "wall meter, my lab")
    e = estimate_measured(nn.Linear(8, 2), dev, (8,), latency_s=4e-6)
    assert e.total_j == pytest.approx(4e-6 * 12.5) and e.complete
    assert e.breakdown["device"].source == "wall meter, my lab (unverified)"
    assert e.accounting == "single (timed)" and e.latency_s == 4e-6
    batch = measured_device("bench", 12.5, "wall meter", batch_size=8)
    eb = estimate_measured(nn.Linear(8, 2), batch, (8,), latency_s=8e-6)
    assert eb.total_j == pytest.approx(1e-6 * 12.5) and eb.accounting.startswith("throughput")
    tx2 = measured_device("tx2-power", "gpu-jetson-tx2")
    assert tx2.power is get_baseline("gpu-jetson-tx2").power_w
    assert time_inference(nn.Linear(8, 2), (8,), repeats=2, warmup=1) > 0
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 16, 3))
    rep = compare(RES, ann=ann, snn=NET, targets=["truenorth"], baselines=["cpu"],
                  measured=[dev])
    row = rep.row("bench")
    assert row.accounting == "single (timed)" and row.energy_method == "measured-latency"
    assert row.energy_j == pytest.approx(row.latency_s * 12.5) and row.latency_s > 0
    assert row.macs == rep.row("cpu").macs and "wall meter, my lab (unverified)" in row.sources
    assert any("bench: latency timed" in n for n in rep.notes)
    assert "| single (timed) |" in rep.to_markdown()


def test_measured_inputs_are_checked():
    with pytest.raises(ValueError, match="say where"):
        measured_device("x", 10.0)
    with pytest.raises(ValueError, match="no published power"):
        measured_device("x", "cpu")
    with pytest.raises(ValueError, match="'batch_size'"):
        measured_device("x", 10.0, "meter", batch_size=0)
    with pytest.raises(ValueError, match="'device'"):
        measured_device("x", 10.0, "meter", device="tpu:9")
    with pytest.raises(TypeError, match="MeasuredDevice"):
        compare(RES, snn=NET, targets=[], baselines=[], measured=["cpu"])
    with pytest.raises(ValueError, match="input_shape"):
        estimate_measured(nn.Linear(8, 2), measured_device("x", 1.0, "meter"))
    assert isinstance(measured_device("x", 1.0, "meter"), MeasuredDevice)


def test_report_command_takes_the_accounting(tmp_path, capsys):
    from snnedge.cli import main

    snnedge.save_network(NET, tmp_path / "snn.pt")
    np.savez(tmp_path / "data.npz", x=X.numpy(), y=Y.numpy())
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "snn.pt"), "--data", str(tmp_path / "data.npz"),
                 "--timesteps", "4", "--targets", "truenorth", "--baselines",
                 "horowitz-45nm-bound", "--accounting", "throughput", "--no-progress",
                 "-o", str(out)]) == 0
    assert "| throughput |" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    assert rep["accounting"] == "throughput"
    assert [(r["name"], r["accounting"]) for r in rep["comparison"]] == [
        ("truenorth", "throughput"), ("cpu", "ops lower bound")]
    md = (out / "report.md").read_text()
    assert "## Energy accounting" in md and "`throughput` accounting" in md
    assert main(["report", str(tmp_path / "snn.pt"), "--data", str(tmp_path / "data.npz"),
                 "--timesteps", "4", "--input-rate", "50", "-o", str(out)]) == 2
    assert "--accounting throughput" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "snn.pt"), "--data", str(tmp_path / "data.npz"),
                 "--timesteps", "4", "--targets", "truenorth", "--baselines", "cpu",
                 "--accounting", "throughput", "--input-rate", "1000", "-o", str(out)]) == 2
    assert "at most 250 inputs/s" in capsys.readouterr().err
    assert math.isfinite(rep["comparison"][0]["energy_j"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default accounting warns about nothing
        compare(RES, snn=NET, targets=["truenorth"], baselines=[])


@pytest.mark.cuda
def test_measured_row_on_a_gpu():
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 64, 3))
    gpu = measured_device("gpu-here", "gpu-v100", device="cuda", batch_size=4)
    e = estimate_measured(ann, gpu, SHAPE, repeats=5)
    assert e.device == "cuda" and e.latency_s > 0 and e.accounting.startswith("throughput")
    assert e.total_j == pytest.approx(e.latency_s * 300.0)  # the V100's cited board power
    assert next(ann.parameters()).device.type == "cpu"  # the user's model is not moved
