"""Engine "auto"'s break-even of a narrow layer measured on its own shape (snnedge.layer_calibration)."""
import json

import pytest
import torch
from torch import nn

import snnedge
from snnedge import layer_calibration as lc
from snnedge import path_calibration as pc
from snnedge import path_choice

from calibrations import calibration as _calibration, narrow_net as _net


@pytest.fixture
def calibration_file(tmp_path, monkeypatch):
    previous = path_choice.set_path_policy(None)
    monkeypatch.setenv("SNNEDGE_CALIBRATION", str(tmp_path / "c.json"))
    monkeypatch.setattr(pc, "busy", lambda since=None: None)  # (as on a quiet machine)
    yield tmp_path / "c.json"
    path_choice.set_path_policy(previous)


def test_which_layers_are_measured_and_under_which_key():
    narrow, wide = nn.Conv2d(16, 16, 3), nn.Conv2d(32, 32, 3)
    assert lc.measures(_calibration(layers={}), narrow)
    assert not lc.measures(_calibration(layers=None), narrow)  # a calibration that measures no layers
    assert not lc.measures(None, narrow)  # the rule
    assert not lc.measures(_calibration(layers={}), wide)  # not a measured class
    assert not lc.measures(_calibration(layers={}), nn.Conv2d(16, 16, 3, groups=16))  # no event path
    assert not lc.measures(_calibration(layers={}), narrow, "meta")
    keys = {lc.layer_key(narrow, (16, 8, 8), torch.float32), lc.layer_key(narrow, (16, 9, 8), torch.float32),
            lc.layer_key(narrow, (16, 8, 8), torch.float64), lc.layer_key(nn.Conv2d(16, 16, 3, 2), (16, 8, 8), torch.float32),
            lc.layer_key(nn.Conv2d(16, 16, 3, padding=1), (16, 8, 8), torch.float32),
            lc.layer_key(nn.Conv2d(16, 8, 3), (16, 8, 8), torch.float32)}
    assert len(keys) == 6  # shape, dtype, stride, padding and channels each make a layer of its own
    assert lc.layer_key(nn.Conv2d(16, 16, 3), (16, 8, 8), torch.float32) == lc.layer_key(narrow, (16, 8, 8), torch.float32)


def test_measure_layer_times_a_twin_on_the_layer_s_shape(monkeypatch):
    layer = nn.Conv2d(8, 16, 5, padding=2)
    weight = layer.weight.detach().clone()
    timed = []

    def ratio(twin, shape, density, gen, repeats, dtype):
        timed.append((twin, shape, dtype))
        return 2.0 if density < 0.1 else 0.5  # events win below 10 %
    monkeypatch.setattr(pc, "time_ratio", ratio)
    monkeypatch.setattr(lc, "LAYER_TIMING_VALUES", 100 * 8 * 6 * 6)
    value = lc.measure_layer(layer, (8, 6, 6), torch.float64)
    assert pc.DENSITIES[4] <= value <= pc.DENSITIES[5]  # between 8 % and 12 %
    assert {s[0] for _, s, _ in timed} == {32, 100}  # 400 rows capped by the values per timing
    assert all(s[1:] == (8, 6, 6) and d == torch.float64 for _, s, d in timed)
    twin = timed[0][0]
    assert twin is not layer and (twin.in_channels, twin.out_channels, twin.kernel_size, twin.padding) == (8, 16, (5, 5), (2, 2))
    assert torch.equal(layer.weight, weight)  # the user's layer is not touched
    monkeypatch.undo()
    monkeypatch.setattr(pc, "MIN_TIME", 0.0)  # real timings, one call each: structure, not speed
    assert pc.DENSITIES[0] / 2 <= lc.measure_layer(nn.Conv2d(4, 8, 3), (4, 6, 6), repeats=1) <= pc.CALIBRATED_CAP


def test_auto_measures_a_narrow_layer_once_and_keeps_it(calibration_file, monkeypatch, capsys):
    net, x = _net()
    pc.save(_calibration(layers={}), calibration_file)
    measured = []
    break_even = {"value": 0.9}  # above any density: the event path
    monkeypatch.setattr(lc, "measure_layer", lambda m, shape, dtype: measured.append((m, shape)) or break_even["value"])
    res = snnedge.simulate(net, x, timesteps=4, engine="auto")
    assert [shape for _, shape in measured] == [(16, 8, 8)] and measured[0][0] is net.layer("2")
    assert res.extra["event_layers"][0] == ["2"]  # its own break-even (capped at the grid's top) says events
    assert "timed Conv2d 16->16" in capsys.readouterr().err
    kept = json.loads(calibration_file.read_text())["machines"][0]["layers"]
    assert list(kept.values()) == [0.9]
    assert path_choice.density_limit(net.layer("2"), sample_shape=(16, 8, 8)) == pc.CALIBRATED_CAP
    snnedge.simulate(net, x, timesteps=4, engine="auto")
    pc._LOADED.clear()  # as a new process: read from the file
    snnedge.simulate(net, x, timesteps=4, engine="auto")
    assert len(measured) == 1  # kept: measured once
    pc.save(_calibration(layers={}), calibration_file)  # a fresh calibration: measured again
    break_even["value"] = 0.001  # below its density: dense
    assert snnedge.simulate(net, x, timesteps=4, engine="auto").extra["event_layers"][0] == []
    assert len(measured) == 2
    ref = snnedge.simulate(net, x, timesteps=4, engine="dense")
    assert snnedge.simulate(net, x, timesteps=4, engine="auto").spike_counts == ref.spike_counts


def test_a_layer_measured_on_a_busy_machine_is_not_kept(calibration_file, monkeypatch):
    net, x = _net()
    pc.save(_calibration(layers={}), calibration_file)
    monkeypatch.setattr(lc, "measure_layer", lambda m, shape, dtype: 0.05)
    monkeypatch.setattr(pc, "busy", lambda since=None: "load average 9.0 on 2 core(s)")
    with pytest.warns(UserWarning, match="does not keep it .*busy"):
        snnedge.simulate(net, x, timesteps=4, engine="auto")
    assert json.loads(calibration_file.read_text())["machines"][0]["layers"] == {}


def test_calibrate_measures_layers_as_they_come_and_shows_them(monkeypatch):
    monkeypatch.setattr(pc, "MIN_TIME", 0.0)
    cal = pc.calibrate(rows=(3,), repeats=1, threads=1, progress=False, search="bisection")
    assert cal.layers == {}
    cal.layers["Conv2d 8->16 ..., input 8x14x14, float32"] = 0.1
    assert "| Conv2d 8->16 ..., input 8x14x14, float32 | 10.0% |" in cal.table()
