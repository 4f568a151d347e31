"""Engine "auto"'s per-machine calibration (snnedge.path_calibration, snnedge calibrate)."""
import json
import math
import threading
import time

import pytest
import torch
from torch import nn

import snnedge
from snnedge import path_calibration as pc
from snnedge import path_choice
from snnedge.cli.app import main as cli
from snnedge.events import event_density_limit

from calibrations import calibration as _calibration, narrow_net as _narrow_net


@pytest.fixture
def default_policy():
    previous = path_choice.set_path_policy(None)
    yield
    path_choice.set_path_policy(previous)


def test_break_even_interpolates_the_first_crossing_and_bounds_the_grid():
    d = [0.01, 0.02, 0.04]
    assert pc.break_even(d, [0.9, 0.8, 0.7]) == 0.005  # never wins: half the lowest
    assert pc.break_even(d, [1.0 + pc.TIE / 2, 0.8, 0.7]) == 0.005  # a tie is no win
    assert pc.break_even(d, [1.0 + 2 * pc.TIE, 0.8, 0.7]) > 0.01
    assert pc.break_even(d, [3.0, 2.0, 1.5]) == 0.04  # always wins: the highest
    assert pc.break_even(d, [2.0, 2.0, 0.5]) == pytest.approx(math.sqrt(0.02 * 0.04))  # log-midway
    assert pc.break_even(d, [2.0, 0.9, 1.2]) == pytest.approx(
        math.exp(math.log(0.01) + math.log(2.0) / math.log(2.0 / 0.9) * math.log(2)))


def test_bisection_finds_the_grid_s_break_even_in_four_timings():
    grid = [0.005, 0.01, 0.02, 0.04, 0.08, 0.12, 0.16, 0.24, 0.32]
    for crossing in range(len(grid) + 1):  # the event path wins below grid[crossing]
        full = [4.0 / (1 + i) if i < crossing else 0.9 - 0.01 * i for i in range(len(grid))]
        visited = []
        ratios = pc.first_crossing(lambda i, f=full, v=visited: v.append(i) or f[i], len(grid))
        assert len(visited) <= 4 and len(set(visited)) == len(visited)
        assert [r for r in ratios if r is not None] == [full[i] for i in sorted(visited)]
        assert pc.break_even(grid, ratios) == pc.break_even(grid, full)
    with pytest.raises(ValueError, match="at least one timed density"):
        pc.break_even(grid, [None] * len(grid))
    with pytest.raises(ValueError, match="not the grid's lowest"):
        pc.break_even(grid, [None, 0.5] + [None] * 7)


def test_layer_classes_and_calibrated_limits():
    assert pc.layer_class(nn.Linear(4, 3)) == "linear"
    assert pc.layer_class(nn.Conv2d(64, 8, 1)) == "one_by_one"
    assert pc.layer_class(nn.Conv2d(16, 8, 3)) == "narrow"
    assert pc.layer_class(nn.Conv2d(32, 8, 3)) == "conv"
    assert pc.layer_class(nn.Conv2d(32, 8, 3, stride=2)) == "strided"
    assert pc.layer_class(nn.Conv2d(16, 8, 3, stride=2)) == "narrow"
    cal = _calibration({"conv": 2.0, "strided": 3.0, "narrow": 8.0, "one_by_one": 0.5, "linear": 100.0})
    narrow, wide, dw = nn.Conv2d(16, 16, 3), nn.Conv2d(32, 32, 3), nn.Conv2d(16, 16, 3, groups=16)
    assert cal.limit(narrow) == pytest.approx(8.0 * event_density_limit(narrow))
    assert cal.limit(wide) == pytest.approx(2.0 * event_density_limit(wide))
    strided = nn.Conv2d(64, 64, 3, stride=2)
    assert cal.limit(strided) == pytest.approx(3.0 * event_density_limit(strided))
    assert cal.limit(nn.Linear(1152, 128)) == pc.CALIBRATED_CAP  # capped at the grid's top
    assert cal.limit(dw) == 0.0  # no event path: none by any factor
    assert cal.limit(narrow, "meta") == 0.0


def test_saved_calibrations_are_kept_per_machine_and_read_back(tmp_path):
    path = tmp_path / "cal.json"
    one, two = _calibration({c: 2.0 for c in pc.PROBES}, threads=1), _calibration(threads=2)
    pc.save(one, path)
    pc.save(two, path)
    pc.save(_calibration({c: 3.0 for c in pc.PROBES}, threads=1), path)  # replaces `one`
    entries = json.loads(path.read_text())["machines"]
    assert len(entries) == 2
    assert pc.load(path, threads=1).factors["conv"] == 3.0
    assert pc.load(path, threads=2).factors == two.factors
    assert pc.load(path, threads=3) is None  # no calibration at that thread count
    for key, value in [("cpu", "another CPU"), ("kernels", pc.NATIVE_REVISION - 1), ("fit", pc.FIT_REVISION - 1)]:
        other = dict(entries[0]["machine"], **{key: value})
        path.write_text(json.dumps({"version": pc.FILE_VERSION, "machines": [dict(entries[0], machine=other)]}))
        assert pc.load(path, threads=1) is None  # another machine's, or earlier kernels'
    path.write_text(json.dumps({"version": pc.FILE_VERSION, "machines": entries}))
    assert pc.load(path, threads=1).factors["conv"] == 3.0
    assert pc.load(tmp_path / "missing.json") is None
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="is not used .* Run 'snnedge calibrate' to write a new one"):
        assert pc.load(path) is None  # the rule, with a warning
    path.write_text(json.dumps({"version": pc.FILE_VERSION - 1, "machines": entries}))
    with pytest.warns(UserWarning, match=f"not a version-{pc.FILE_VERSION} snnedge calibration"):
        assert pc.load(path, threads=1) is None
    with pytest.warns(UserWarning):
        pc.save(one, path)  # a new file in place of the old one
    assert pc.load(path, threads=1).factors == one.factors
    broken = json.loads(path.read_text())
    del broken["machines"][0]["factors"]
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="broken entry for this machine"):
        pc.load(path, threads=1)


def test_the_file_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNEDGE_CALIBRATION", "off")
    assert pc.calibration_path() is None and pc.load() is None
    with pytest.raises(ValueError, match="SNNEDGE_CALIBRATION=off"):
        pc.save(_calibration())
    monkeypatch.setenv("SNNEDGE_CALIBRATION", str(tmp_path / "c.json"))
    assert pc.calibration_path() == tmp_path / "c.json"
    monkeypatch.delenv("SNNEDGE_CALIBRATION")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert pc.calibration_path() == tmp_path / "cache" / "snnedge" / "path_calibration.json"


class _FakeCalibrate:
    """Stands in for pc.calibrate: returns a fixed calibration and records its calls."""

    def __init__(self, factors=None, wait=0.0):
        self.calls, self.factors, self.wait = [], factors, wait

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        time.sleep(self.wait)
        return _calibration(self.factors)


def test_auto_follows_this_machines_calibration_by_default(tmp_path, monkeypatch, default_policy, capsys):
    net, x = _narrow_net()
    monkeypatch.setenv("SNNEDGE_CALIBRATION", str(tmp_path / "c.json"))
    fake = _FakeCalibrate()  # factors 1: the rule's limits
    monkeypatch.setattr(pc, "calibrate", fake)
    monkeypatch.setattr(pc, "busy", lambda since=None: None)  # (as on a quiet machine)
    assert path_choice.path_policy() == "limit"  # no calibration kept yet
    rule = snnedge.simulate(net, x, timesteps=4, engine="auto")
    # the first choice measured one (quick: bisection), said so, and kept it
    assert [c["search"] for c in fake.calls] == ["bisection"] and fake.calls[0]["rows"] == pc.QUICK_ROWS
    assert "measuring one now, once" in capsys.readouterr().err
    assert pc.load(tmp_path / "c.json") is not None and path_choice.path_policy() == "calibrated"
    snnedge.simulate(net, x, timesteps=4, engine="auto")
    assert len(fake.calls) == 1  # kept: not measured again
    density = rule.extra["input_density"][0]["2"]
    limit = event_density_limit(net.layer("2"))
    assert rule.extra["event_layers"][0] == [] and density > limit  # the rule keeps "2" dense
    factor = 2 * density / limit
    pc.save(_calibration({**{c: 1.0 for c in pc.PROBES}, "narrow": factor, "linear": 0.0}), tmp_path / "c.json")
    assert path_choice.path_policy() == "calibrated"
    assert path_choice.density_limit(net.layer("2")) == pytest.approx(min(pc.CALIBRATED_CAP, 2 * density))
    res = snnedge.simulate(net, x, timesteps=4, engine="auto")
    assert res.extra["event_layers"][0] == ["2"]  # on events: below this machine's break-even
    ref = snnedge.simulate(net, x, timesteps=4, engine="event")
    assert res.spike_counts == ref.spike_counts and res.synaptic_events == rule.synaptic_events
    monkeypatch.setenv("SNNEDGE_AUTO_PATH", "limit")  # (read at import: set_path_policy here)
    path_choice.set_path_policy("limit")
    assert snnedge.simulate(net, x, timesteps=4, engine="auto").extra["event_layers"][0] == []


def test_auto_looks_up_the_calibration_once_per_batch(monkeypatch, tmp_path, default_policy):
    """Engine "auto" reads the calibration file's state once per batch, not once per layer and
    block (BatchChoices), and chooses as the module-level functions do."""
    net, x = _narrow_net()
    monkeypatch.setenv("SNNEDGE_CALIBRATION", str(tmp_path / "c.json"))
    pc.save(_calibration(), tmp_path / "c.json")
    lookups = []
    real = pc.for_auto
    monkeypatch.setattr(pc, "for_auto", lambda *a, **k: lookups.append(1) or real(*a, **k))
    res = snnedge.simulate(net, torch.cat([x, x]), timesteps=8, engine="auto", batch_size=4,
                           block_steps=1)
    assert len(lookups) == 1  # the first batch chose (8 blocks, two layers); the second took its choice
    assert len(res.extra["input_density"][0]) == 2
    choices = path_choice.BatchChoices()
    for name in ("2", "5"):
        layer, density = net.layer(name), res.extra["input_density"][0][name]
        assert choices.worth_measuring(layer) == path_choice.worth_measuring(layer)
        assert choices.choose_path(layer, x, density) == path_choice.choose_path(layer, x, density)
    assert not choices.worth_measuring(net.layer("2"), "cuda")  # no event path on GPUs


def test_one_by_one_factor_follows_the_input_channels_between_its_probes():
    """A 1x1 convolution's factor is its class's two probes' factors interpolated in the log
    of the input channels (64 and 256 here), the nearer probe's beyond them; other classes
    keep one factor."""
    cal = _calibration({c: 3.0 for c in pc.PROBES})
    rules = {name: rule for name, _, rule in pc._probe_rules("one_by_one")}
    (low, c_low), (high, c_high) = sorted(((n, c) for n, c, _ in pc._probe_rules("one_by_one")),
                                          key=lambda p: p[1])
    cal.break_even[low], cal.break_even[high] = 8.0 * rules[low], 2.0 * rules[high]
    assert (c_low, c_high) == (64, 256)
    assert cal.factor(nn.Conv2d(64, 64, 1)) == pytest.approx(8.0)
    assert cal.factor(nn.Conv2d(256, 32, 1)) == pytest.approx(2.0)
    assert cal.factor(nn.Conv2d(128, 64, 1)) == pytest.approx(4.0)  # halfway in log channels
    assert cal.factor(nn.Conv2d(32, 64, 1)) == pytest.approx(8.0)  # beyond: the nearer probe's
    assert cal.factor(nn.Conv2d(1024, 64, 1)) == pytest.approx(2.0)
    layer = nn.Conv2d(128, 32, 1)
    assert cal.limit(layer) == pytest.approx(min(pc.CALIBRATED_CAP, 4.0 * event_density_limit(layer)))
    assert cal.factor(nn.Conv2d(64, 64, 3, padding=1)) == 3.0  # a class of one factor


def test_narrow_break_even_is_a_plane_in_input_channels_and_taps():
    """The narrow class's limit is a plane in log input channels and log taps per stride area
    fitted to its probes' break-evens, clamped to their range; not the rule times a factor,
    whose dependence on channels was fitted on another CPU."""
    cal = _calibration({c: 3.0 for c in pc.PROBES})

    def law(layer):  # flat in channels, the square root of taps per stride area
        return 0.10 * math.sqrt(layer.kernel_size[0] ** 2 / layer.stride[0] ** 2 / 9)
    for name, layer in pc._probe_layers("narrow"):
        cal.break_even[name] = law(layer)
    assert len(pc.PROBES["narrow"]) >= 3
    for layer in (nn.Conv2d(8, 16, 3), nn.Conv2d(12, 32, 3), nn.Conv2d(16, 16, 5),
                  nn.Conv2d(8, 8, 5), nn.Conv2d(16, 32, 3, stride=2)):
        assert cal.limit(layer) == pytest.approx(law(layer))
        assert cal.limit(layer) != pytest.approx(3.0 * event_density_limit(layer))  # not the rule's shape
    # beyond the probes' range: their nearest edge (8 channels, 3x3 stride 2 / 5x5)
    assert cal.limit(nn.Conv2d(1, 16, 3)) == pytest.approx(law(nn.Conv2d(8, 16, 3)))
    assert cal.limit(nn.Conv2d(3, 64, 7)) == pytest.approx(law(nn.Conv2d(8, 16, 5)))
    assert cal.limit(nn.Conv2d(16, 16, 3, stride=3)) == pytest.approx(law(nn.Conv2d(16, 16, 3, stride=2)))
    assert cal.limit(nn.Conv2d(32, 32, 3)) == pytest.approx(3.0 * event_density_limit(nn.Conv2d(32, 32, 3)))
    assert "x (taps / stride area / 9)^0.50" in cal.summary() and "(in / 16)^0.00" in cal.summary()
    # a plane needs three probes off one line; else the class's factor
    names = [n for n, _ in pc._probe_layers("narrow")]
    for name in names[2:]:
        cal.break_even[name] = 0.0
    assert cal.factor(nn.Conv2d(8, 16, 3)) == 3.0
    assert pc.shape_plane([((0.0, 0.0), 0.1), ((1.0, 1.0), 0.2), ((2.0, 2.0), 0.4)]) is None
    plane = pc.shape_plane([((0.0, 0.0), 0.1), ((1.0, 0.0), 0.2), ((0.0, 1.0), 0.4), ((1.0, 1.0), 0.8)])
    assert plane((0.5, 0.5)) == pytest.approx(math.sqrt(0.08)) and plane((5.0, -3.0)) == pytest.approx(0.2)
    assert plane.exponents == pytest.approx((math.log(2), math.log(4)))


def test_policy_calibrated_without_a_calibration_says_how_to_make_one(monkeypatch):
    monkeypatch.setenv("SNNEDGE_CALIBRATION", "off")  # nowhere to keep one: nothing measured
    previous = path_choice.set_path_policy("calibrated")
    try:
        net, x = _narrow_net()
        with pytest.raises(ValueError, match="Run 'snnedge calibrate --threads"):
            snnedge.simulate(net, x, timesteps=2, engine="auto")
    finally:
        path_choice.set_path_policy(previous)


def test_calibrate_measures_every_probe_at_every_density(monkeypatch):
    monkeypatch.setattr(pc, "MIN_TIME", 0.0)  # one call per timing: structure, not speed
    threads = torch.get_num_threads()
    cal = pc.calibrate(rows=(3, 5), repeats=1, threads=1, progress=False)
    assert torch.get_num_threads() == threads  # restored
    assert cal.machine == pc.machine(1) and cal.rows == [3, 5]
    assert set(cal.factors) == set(pc.PROBES) and all(f > 0 for f in cal.factors.values())
    for probes in pc.PROBES.values():
        for name, _, _ in probes:
            assert [len(r) for r in cal.ratios[name]] == [len(pc.DENSITIES)] * 2
            assert pc.DENSITIES[0] / 2 <= cal.break_even[name] <= pc.DENSITIES[-1]
    assert "factors (break-even / rule)" in cal.table()
    with pytest.raises(ValueError, match="row counts >= 1"):
        pc.calibrate(rows=(0,))
    quick = pc.calibrate(rows=(3,), repeats=1, threads=1, progress=False, search="bisection")
    assert quick.search == "bisection" and quick.seconds > 0
    for (name, ratios), point in zip(quick.ratios.items(), quick.break_even.values()):
        timed = [r for r in ratios[0] if r is not None]
        assert 3 <= len(timed) <= 4, name  # a bisection over the 9 densities
        assert point == pytest.approx(pc.break_even(pc.DENSITIES, ratios[0]))
    assert " - |" in quick.table()  # the densities not timed
    with pytest.raises(ValueError, match="'grid' or 'bisection'"):
        pc.calibrate(rows=(3,), search="binary")


def test_cli_calibrate_measures_keeps_and_shows(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pc, "MIN_TIME", 0.0)
    path = tmp_path / "c.json"
    assert cli(["calibrate", "--file", str(path), "--show", "--threads", "1"]) == 0
    assert "no calibration for this machine at 1 thread(s)" in capsys.readouterr().out
    assert cli(["calibrate", "--file", str(path), "--threads", "1", "--rows", "4",
                "--repeats", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"kept in {path}" in out and "Conv2d 16->16 3x3, 28x28" in out
    assert pc.load(path, threads=1) is not None
    assert cli(["calibrate", "--file", str(path), "--show", "--threads", "1"]) == 0
    assert "factors (break-even / rule)" in capsys.readouterr().out
    assert cli(["calibrate", "--file", str(path), "--threads", "1", "--quick", "--rows", "4",
                "--no-progress"]) == 0
    assert "(quick: bisection)" in capsys.readouterr().out
    assert pc.load(path, threads=1).search == "bisection" and pc.load(path, threads=1).rows == [4]
    assert cli(["calibrate", "--file", str(path), "--threads", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_first_use_is_measured_once_by_concurrent_callers(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SNNEDGE_CALIBRATION", str(tmp_path / "c.json"))
    fake = _FakeCalibrate({c: 2.0 for c in pc.PROBES}, wait=0.3)
    monkeypatch.setattr(pc, "calibrate", fake)
    monkeypatch.setattr(pc, "busy", lambda since=None: None)
    got = []
    callers = [threading.Thread(target=lambda: got.append(pc.for_auto(progress=False))) for _ in range(3)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    # one measured (under the lock beside the file); the others read what it kept
    assert len(fake.calls) == 1 and len(got) == 3 and all(c.factors["conv"] == 2.0 for c in got)
    assert (tmp_path / "c.json.lock").exists()
    assert "kept in" in capsys.readouterr().err


def test_first_use_where_nothing_can_be_kept(tmp_path, monkeypatch):
    fake = _FakeCalibrate()
    monkeypatch.setattr(pc, "calibrate", fake)
    monkeypatch.setattr(pc, "busy", lambda since=None: None)
    monkeypatch.setattr(pc, "_UNKEPT", {})
    monkeypatch.setenv("SNNEDGE_CALIBRATION", "off")  # nothing measured: the rule
    assert pc.for_auto() is None and fake.calls == []
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("SNNEDGE_CALIBRATION", str(tmp_path / "a_file" / "c.json"))  # no such folder
    with pytest.warns(UserWarning, match="does not keep it in .* set SNNEDGE_CALIBRATION to a file"):
        assert pc.for_auto() is not None
    assert pc.for_auto() is not None and len(fake.calls) == 1  # this process keeps it
    bad = tmp_path / "old.json"
    bad.write_text(json.dumps({"version": pc.FILE_VERSION - 1, "machines": []}))
    monkeypatch.setenv("SNNEDGE_CALIBRATION", str(bad))
    with pytest.warns(UserWarning, match="is not used"):
        assert pc.for_auto() is None  # another version's file: the rule, the file left alone
    assert len(fake.calls) == 1 and json.loads(bad.read_text())["version"] == pc.FILE_VERSION - 1


def test_a_first_use_on_a_busy_cpu_is_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(pc.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr(pc.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert pc.busy() == "load average 9.0 on 2 core(s)"
    monkeypatch.setattr(pc.os, "getloadavg", lambda: (2.9, 9.0, 9.0))  # its own 2 threads, and 0.9
    assert pc.busy() is None
    if pc.cpu_times() is not None:  # Linux: the others' share of the CPUs in the window
        monkeypatch.setattr(pc.os, "cpu_count", lambda: 2)
        times = iter([(10.0, 105.0, 2.0)])
        monkeypatch.setattr(pc, "cpu_times", lambda: next(times))
        # 1 s on 2 CPUs; all processes 1.5 CPU-s, this one 1.0: the others 25%
        assert pc.busy((9.0, 103.5, 1.0)) is None
        times = iter([(10.0, 105.0, 2.0)])
        assert pc.busy((9.0, 103.0, 1.0)) == "other processes used 50% of the CPUs"
        monkeypatch.setattr(pc, "cpu_times", lambda: None)
    fake = _FakeCalibrate()
    monkeypatch.setattr(pc, "calibrate", fake)
    monkeypatch.setattr(pc, "_UNKEPT", {})
    monkeypatch.setenv("SNNEDGE_CALIBRATION", str(tmp_path / "c.json"))
    monkeypatch.setattr(pc, "busy", lambda since=None: "other processes used 50% of the CPUs")
    with pytest.warns(UserWarning, match="busy while it measured, other processes used 50% .* Run "
                                         "'snnedge calibrate' when the machine is quiet"):
        assert pc.for_auto() is not None
    assert not (tmp_path / "c.json").exists()  # not kept: the next process measures again
    assert pc.for_auto() is not None and len(fake.calls) == 1  # this process uses its own


def test_cpu_times_see_this_process_work():
    start = pc.cpu_times()
    if start is None:
        pytest.skip("no /proc/stat on this platform")
    t = time.process_time()
    while time.process_time() - t < 0.2:
        pass
    end = pc.cpu_times()
    assert end[2] - start[2] >= 0.15  # this process's CPU time
    assert end[1] - start[1] >= 0.1  # counted among all processes' too


def test_a_break_even_beyond_the_grid_counts_as_a_bound():
    """A probe whose break-even lies beyond the density grid gives a bound, not a value: it
    counts as the measured probes' mean where that lies beyond it, and as itself otherwise."""
    top, low = pc.DENSITIES[-1], pc.DENSITIES[0] / 2
    assert pc.censoring([0.05, 0.1]) == 0
    assert pc.censoring([top, 0.1]) == 1 and pc.censoring([top, top]) == 1
    assert pc.censoring([low, 0.1]) == -1 and pc.censoring([low, top]) == 0
    assert pc.break_even(pc.DENSITIES, [2.0] * len(pc.DENSITIES)) == top  # what censoring reads
    assert pc.break_even(pc.DENSITIES, [0.5] * len(pc.DENSITIES)) == low
    log = math.log
    assert pc.class_factor([log(9.6), log(4.8)], [0, 0]) == pytest.approx(math.sqrt(9.6 * 4.8))
    assert pc.class_factor([log(9.6), log(4.8)], [0, 1]) == pytest.approx(9.6)  # >= 4.8: 9.6
    assert pc.class_factor([log(2.0), log(4.8)], [0, 1]) == pytest.approx(math.sqrt(2.0 * 4.8))
    assert pc.class_factor([log(2.0), log(4.8)], [0, -1]) == pytest.approx(2.0)  # <= 4.8: 2.0
    assert pc.class_factor([log(9.6), log(4.8)], [0, -1]) == pytest.approx(math.sqrt(9.6 * 4.8))
    assert pc.class_factor([log(3.0), log(5.0)], [1, 1]) == pytest.approx(math.sqrt(15.0))  # bounds only

