"""compare(..., hardware_data=(x, y)): every target row gains its on-chip accuracy and takes
its activity and energy from the simulation in the chip's own arithmetic."""
import csv
import io

import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import estimate_energy, map_network, to_hardware
from neuromorphic_targets.compare import compare

SHAPE = (1, 8, 8)


def network():
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(threshold=0.5),
                              nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                              snnedge.IF(threshold=0.5), nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
                              input_shape=SHAPE)


SNN = network()
X = torch.rand(6, *SHAPE)
Y = torch.tensor([0, 1, 2, 0, 1, 2])
RESULTS = [snnedge.simulate(SNN, X, timesteps=T, encoding="poisson", seed=1) for T in (8, 4)]
TARGETS = ["truenorth", "dynap-cnn", "loihi", "dynap-se"]
REP = compare(RESULTS, snn=SNN, y=Y, targets=TARGETS, baselines=["cpu"], hardware_data=(X, Y))


def test_target_rows_carry_the_on_chip_accuracy_and_its_counts():
    for name in ("truenorth", "dynap-cnn", "loihi"):
        hw = to_hardware(SNN, name)
        m = map_network(SNN, name)
        for T in (4, 8):
            row = REP.row(name, T)
            res = snnedge.simulate(hw, X, timesteps=T, encoding="poisson", labels=Y)
            assert row.hardware_accuracy == res.accuracy()
            assert row.accuracy == RESULTS[0 if T == 8 else 1].accuracy(Y)  # the float network's
            assert row.spikes == res.per_inference()["spikes"]
            assert row.energy_j == estimate_energy(res, m).total_j
            assert "on-chip simulation" in row.energy_method
    assert REP.row("cpu").hardware_accuracy is None


def test_a_target_the_network_cannot_run_on_says_why():
    # fan-in 36 fits DYNAP-SE's CAM, but the layers have biases: no on-chip run there
    rows = [r for r in REP.rows if r.name == "dynap-se"]
    assert all(r.hardware_accuracy is None for r in rows)
    assert any(n.startswith("dynap-se: no on-chip simulation") for n in REP.notes)
    assert any("loihi: layer '1': reset by subtraction as NxTF's two-compartment neuron" in n
               for n in REP.notes)


def test_markdown_csv_and_plot_show_float_and_on_chip_accuracy():
    md = REP.to_markdown()
    assert "| row | model | accuracy | on-chip accuracy | T |" in md
    row = REP.row("loihi", 8)
    assert f"| loihi | SNN | {100 * row.accuracy:.2f} % | {100 * row.hardware_accuracy:.2f} % | 8 |" in md
    parsed = list(csv.DictReader(io.StringIO(REP.to_csv())))
    assert float(parsed[0]["hardware_accuracy"]) == REP.rows[0].hardware_accuracy
    fig = REP.plot_accuracy_vs_energy()
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "truenorth on chip" in labels and "truenorth" in labels
    plain = compare(RESULTS, snn=SNN, y=Y, targets=["truenorth"], baselines=[])
    assert "on-chip" not in plain.to_markdown()  # no column without hardware data


def test_bad_hardware_data_is_refused():
    with pytest.raises(TypeError, match="'hardware_data' parameter of compare must be a pair"):
        compare(RESULTS, snn=SNN, targets=["truenorth"], baselines=[], hardware_data=X)
    with pytest.raises(ValueError, match="6 samples but 2 labels"):
        compare(RESULTS, snn=SNN, targets=["truenorth"], baselines=[], hardware_data=(X, Y[:2]))


def test_on_chip_rows_under_the_throughput_accounting():
    rep = compare(RESULTS, snn=SNN, y=Y, targets=["dynap-cnn", "loihi"], baselines=[],
                  hardware_data=(X, Y), accounting="throughput")
    for name in ("dynap-cnn", "loihi"):
        res = snnedge.simulate(to_hardware(SNN, name), X, timesteps=8, encoding="poisson", labels=Y)
        row = rep.row(name, 8)
        assert row.accounting == "throughput" and row.hardware_accuracy == res.accuracy()
        assert row.energy_j == estimate_energy(res, map_network(SNN, name),
                                               accounting="throughput").total_j
    assert "| on-chip accuracy | T | energy / inference | accounting |" in rep.to_markdown()
