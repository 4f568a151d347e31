"""snnedge.plots and neuromorphic_targets.plots: every function returns a Figure whose title,
labels and data are right."""
import io
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import snnedge
from neuromorphic_targets.baselines import BASELINES, get_baseline
from neuromorphic_targets import plots as target_plots
from neuromorphic_targets.compare import compare
from snnedge import plots

SHAPE = (1, 8, 8)
torch.manual_seed(0)
NET = snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(threshold=0.5),
                         nn.Conv2d(4, 4, 3, stride=2, padding=1), snnedge.IF(threshold=0.5),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3), input_shape=SHAPE)
X, Y = torch.rand(5, *SHAPE), torch.tensor([0, 1, 2, 0, 1])
RES = {T: snnedge.simulate(NET, X, timesteps=T, encoding="poisson", seed=0) for T in (4, 8)}
REP = compare(list(RES.values()), snn=NET, y=Y, targets=["truenorth", "dynap-cnn"],
              baselines=["cpu", "tpu-v1"], accuracy_ann=0.8)


def only_axes(fig):
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    return ax


def data_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_gid() != "iso"]


def test_spike_raster_marks_every_spike():
    spikes = (torch.rand(6, 3, 4) > 0.7).float()
    ax = only_axes(plots.plot_spike_raster(spikes))
    pts = ax.collections[0].get_offsets()
    assert len(pts) == int(spikes.sum())
    t, n = np.nonzero(spikes.reshape(6, -1).numpy())
    assert sorted(map(tuple, np.asarray(pts))) == sorted(zip(t + 1.0, n * 1.0))
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("Spike raster", "time step", "neuron")
    with pytest.raises(ValueError, match="spikes"):
        plots.plot_spike_raster(torch.ones(5))


def test_accuracy_vs_timesteps_from_a_result_a_list_and_a_curve():
    res = RES[8]
    ax = only_axes(plots.plot_accuracy_vs_timesteps(res, y=Y, ann_accuracy=0.9))
    line = ax.get_lines()[0]
    assert np.allclose(line.get_ydata(), 100 * res.accuracy_curve(Y).numpy())
    assert list(line.get_xdata()) == list(range(1, 9))
    assert ax.get_lines()[1].get_ydata()[0] == pytest.approx(90)  # the ANN line
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
        "Accuracy vs time steps", "time steps T", "accuracy (%)")
    ax = only_axes(plots.plot_accuracy_vs_timesteps(list(RES.values()), y=Y))
    assert list(ax.get_lines()[0].get_xdata()) == [4, 8]
    assert np.allclose(ax.get_lines()[0].get_ydata(), [100 * RES[T].accuracy(Y) for T in (4, 8)])
    ax = only_axes(plots.plot_accuracy_vs_timesteps([0.5, 0.75, 1.0]))
    assert list(ax.get_lines()[0].get_ydata()) == [50, 75, 100]


def test_firing_rates_bars():
    ax = only_axes(plots.plot_firing_rates(RES[8]))
    rates = RES[8].firing_rates()
    assert [p.get_height() for p in ax.patches] == pytest.approx(list(rates.values()))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(rates)
    assert ax.get_ylabel() == "spikes / neuron / step" and ax.get_title() == "Firing rate per layer"
    with pytest.raises(TypeError):
        plots.plot_firing_rates({"1": 0.1})


def test_energy_bars_equal_the_energies():
    ax = only_axes(REP.plot())
    known = [r for r in REP.rows if r.energy_j is not None]
    bars = [p for p in ax.patches if p.get_height() > 0 and p.get_width() < 1]
    assert [b.get_height() for b in bars] == pytest.approx([r.energy_j for r in known])
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "energy per inference (J)"
    assert ax.get_title() == "Energy per inference"
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("unknown") == sum(r.energy_j is None for r in REP.rows)  # dynap-cnn rows
    assert ">=" in texts  # tpu-v1 misses its DRAM energy
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "truenorth\nT=4"


def test_infeasible_rows_are_hatched():
    rows = [SimpleNamespace(name="a", timesteps=4, energy_j=1e-6, energy_complete=True,
                            feasible=False, kind="neuromorphic"),
            SimpleNamespace(name="b", timesteps=None, energy_j=2e-6, energy_complete=False,
                            feasible=True, kind="baseline")]
    ax = only_axes(target_plots.plot_energy_comparison(SimpleNamespace(rows=rows)))
    bars = ax.patches[:2]
    assert bars[0].get_hatch() == "//" and not bars[1].get_hatch()
    assert {t.get_text() for t in ax.texts} == {"infeasible", ">="}
    with pytest.raises(TypeError, match="Comparison"):
        target_plots.plot_energy_comparison([1, 2])


def test_accuracy_vs_energy():
    ax = only_axes(REP.plot_accuracy_vs_energy())
    tn = [r for r in REP.rows if r.name == "truenorth"]
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == pytest.approx([r.energy_j for r in tn])
    assert list(line.get_ydata()) == pytest.approx([100 * r.accuracy for r in tn])
    assert ax.get_xscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("energy per inference (J)", "accuracy (%)")
    assert ax.get_title() == "Accuracy vs energy per inference"
    labels = ax.get_legend_handles_labels()[1]
    assert "truenorth" in labels and "cpu (ANN)" in labels and "dynap-cnn" not in labels


def test_core_occupancy_bars():
    ax = only_axes(target_plots.plot_core_occupancy(REP.mappings))
    want = [r.cores + r.splitter_cores for m in REP.mappings.values() for r in m.per_layer]
    assert [p.get_height() for p in ax.patches] == want
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "layer", "cores", "Core occupancy per layer")
    single = only_axes(target_plots.plot_core_occupancy(REP.mappings["truenorth"]))
    assert single.get_legend_handles_labels()[1] == ["truenorth"]


def test_ops_vs_performance_density_points():
    ops = snnedge.count_ops(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), SHAPE)
    models = {"tiny": ops, "alexnet conv": 666e6}
    devices = [get_baseline(n) for n in ("cpu", "gpu-jetson-tx2", "eyeriss")]
    ax = only_axes(target_plots.plot_ops_vs_performance_density(models, devices))
    pts = {tuple(p) for p in np.asarray(ax.collections[0].get_offsets())}
    want = {(d.performance_density("W"), m) for d in devices for m in (640.0, 666e6)}
    assert len(pts) == len(want)
    for x, y in want:
        assert any(np.isclose(px, x) and np.isclose(py, y) for px, py in pts)
    assert ax.get_title() == "Required operations vs performance density"
    assert ax.get_ylabel() == "MACs per inference" and "MAC/J" in ax.get_xlabel()
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert any(ln.get_gid() == "iso" for ln in ax.get_lines())  # joules-per-inference lines
    # no device has a die area in our sources: the per-mm^2 plot lists them as unknown
    ax = only_axes(target_plots.plot_ops_vs_performance_density(models, devices, per="mm^2"))
    assert "cpu" in ax.texts[0].get_text() and not ax.collections
    ax = only_axes(target_plots.plot_ops_vs_performance_density({"m": 10.0}, {"dev": 1e9}))
    assert np.allclose(ax.collections[0].get_offsets(), [[1e9, 10.0]])


def test_memory_vs_energy_efficiency_points():
    ops = snnedge.count_ops(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), SHAPE)
    devices = list(BASELINES.values())
    ax = only_axes(target_plots.plot_memory_vs_energy_efficiency({"tiny": ops}, devices))
    pts = np.asarray(ax.collections[0].get_offsets())
    cpu = get_baseline("cpu").memory_energy_efficiency("dram")
    assert np.allclose(pts[0], [cpu, ops.memory_bytes])
    assert "gpu-v100" in " ".join(t.get_text() for t in ax.texts)  # listed as unknown
    assert ax.get_title() == "Memory accesses vs memory energy efficiency"
    assert ax.get_ylabel() == "memory traffic per inference (bytes)"
    ax = only_axes(target_plots.plot_memory_vs_energy_efficiency({"tiny": ops}, devices,
                                                                 level=("sram", "dram")))
    assert len(ax.collections[0].get_offsets()) == 4  # SRAM and DRAM of cpu and cpu-int8
    with pytest.raises(ValueError, match="'level'"):
        target_plots.plot_memory_vs_energy_efficiency({"tiny": ops}, devices, level="disk")
    with pytest.raises(TypeError, match="models"):
        target_plots.plot_memory_vs_energy_efficiency([ops], devices)


def test_draws_into_a_given_axes_and_saves_headless():
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.plot_firing_rates(RES[4], ax=ax) is fig
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_importing_plots_leaves_pyplot_alone():
    code = "import sys, snnedge.plots; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_target_plots_leaves_pyplot_alone():
    code = "import sys, neuromorphic_targets.plots; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
