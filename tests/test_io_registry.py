"""The registry of types that save_network / load_network write: every registered type round
trips (one conformance test over the registry), other packages' types are found through
their entry points without being imported, and names that no package registers are refused."""
import doctest
import importlib
import os
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest
import torch
from torch import nn

import snnedge
from converters import (CalibratedIF, ConversionInfo, SpikingAdaptiveMaxPool2d, SpikingMaxPool2d,
                        convert)
from neuromorphic_targets import HardwareInfo
from neuromorphic_targets.hardware_cuba import CubaChipNeuron
from neuromorphic_targets.hardware_soft import TwoCompartmentChipNeuron
from snnedge import io as snn_io
from snnedge import io_registry


@pytest.fixture
def registry():
    """The registry as it is now, put back after the test (tests register their own types)."""
    layers, attributes = dict(snn_io.MODULE_TYPES), dict(snn_io.ATTRIBUTE_TYPES)
    yield snn_io
    for table, saved in ((snn_io.MODULE_TYPES, layers), (snn_io.ATTRIBUTE_TYPES, attributes)):
        table.clear()
        table.update(saved)


def _spikes(*shape):
    return torch.bernoulli(torch.full(shape, 0.4))


# One module per registered type, with arguments away from their defaults (an argument that
# to_args forgets then shows in the comparison), and the input to call it on.
EXAMPLES = {
    "torch.nn.Conv1d": lambda: (nn.Conv1d(2, 4, 3, padding="same", dilation=2, bias=False,
                                          padding_mode="reflect"), (torch.rand(3, 2, 9),)),
    "torch.nn.Conv2d": lambda: (nn.Conv2d(4, 6, (3, 1), stride=(2, 1), padding=(1, 0), groups=2),
                                (torch.rand(3, 4, 8, 8),)),
    "torch.nn.Linear": lambda: (nn.Linear(5, 3, bias=False), (torch.rand(3, 5),)),
    "torch.nn.AvgPool1d": lambda: (nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True,
                                                count_include_pad=False), (torch.rand(3, 2, 9),)),
    "torch.nn.AvgPool2d": lambda: (nn.AvgPool2d((2, 3), stride=1, padding=1, divisor_override=2),
                                   (torch.rand(3, 2, 6, 6),)),
    "torch.nn.AdaptiveAvgPool1d": lambda: (nn.AdaptiveAvgPool1d(7), (torch.rand(3, 2, 5),)),
    "torch.nn.AdaptiveAvgPool2d": lambda: (nn.AdaptiveAvgPool2d((3, None)),
                                           (torch.rand(3, 2, 7, 5),)),
    "torch.nn.ChannelShuffle": lambda: (nn.ChannelShuffle(3), (torch.rand(3, 6, 2, 2),)),
    "torch.nn.Flatten": lambda: (nn.Flatten(2, 3), (torch.rand(3, 2, 4, 5),)),
    "torch.nn.Unflatten": lambda: (nn.Unflatten(1, (2, 3)), (torch.rand(3, 6),)),
    "torch.nn.Identity": lambda: (nn.Identity(), (torch.rand(3, 4),)),
    "torch.nn.Dropout": lambda: (nn.Dropout(0.3), (torch.rand(3, 4),)),
    "torch.nn.Dropout1d": lambda: (nn.Dropout1d(0.3, inplace=True), (torch.rand(3, 4, 5),)),
    "torch.nn.Dropout2d": lambda: (nn.Dropout2d(0.1), (torch.rand(3, 4, 5, 5),)),
    "torch.nn.Dropout3d": lambda: (nn.Dropout3d(0.2), (torch.rand(3, 4, 2, 5, 5),)),
    "torch.nn.AlphaDropout": lambda: (nn.AlphaDropout(0.4), (torch.rand(3, 4),)),
    "torch.nn.FeatureAlphaDropout": lambda: (nn.FeatureAlphaDropout(0.4, inplace=True),
                                             (torch.rand(3, 4, 5, 5),)),
    "snnedge.SumPool2d": lambda: (snnedge.SumPool2d(3, stride=2, padding=1),
                                  (torch.rand(3, 2, 7, 7),)),
    "snnedge.Scale": lambda: (snnedge.Scale(torch.rand(4) + 0.5, torch.rand(4)),
                              (torch.rand(3, 4, 2, 2),)),
    "snnedge.Add": lambda: (snnedge.Add(), (torch.rand(3, 4), torch.rand(3, 4))),
    "snnedge.Concat": lambda: (snnedge.Concat(2), (torch.rand(3, 2, 4), torch.rand(3, 2, 1))),
    "snnedge.Narrow": lambda: (snnedge.Narrow(2, 1, 3), (torch.rand(3, 2, 5),)),
    "snnedge.IF": lambda: (snnedge.IF(threshold=[0.5, 1.0, 1.5], reset="zero", v_init=0.25,
                                      surrogate="sigmoid", alpha=3.0, learn_threshold=True,
                                      detach_reset=True), (torch.rand(6, 2, 3, 5) * 2,)),
    "snnedge.LIF": lambda: (snnedge.LIF(beta=[0.6, 0.8, 0.95], threshold=0.7, learn_beta=True,
                                        surrogate="fast_sigmoid", v_init=0.5),
                            (torch.rand(6, 2, 3) * 2,)),
    "snnedge.CubaLIF": lambda: (snnedge.CubaLIF(beta=[0.6, 0.8, 0.95], beta_syn=0.5, threshold=0.7,
                                                reset="zero", v_init=0.5, surrogate="sigmoid",
                                                alpha=3.0, detach_reset=True),
                                (torch.rand(6, 2, 3) * 2,)),
    "snnedge.LI": lambda: (snnedge.LI(beta=[0.6, 0.9], gain=2.0, v_init=0.3), (torch.rand(6, 2, 2),)),
    "snnedge.Integrator": lambda: (snnedge.Integrator(gain=[0.5, 2.0], v_init=-0.2),
                                   (torch.rand(6, 2, 2),)),
    "snnedge.Threshold": lambda: (snnedge.Threshold([0.2, -0.1], surrogate="sigmoid", alpha=2.0),
                                  (torch.rand(6, 2, 2) - 0.3,)),
    "snnedge.Delay": lambda: (snnedge.Delay(torch.tensor([[0, 3], [1, 2]])), (torch.rand(6, 2, 2, 2),)),
    "converters.SpikingMaxPool2d": lambda: (
        SpikingMaxPool2d(3, stride=2, padding=1, ceil_mode=True, mode="gate"),
        (_spikes(6, 2, 1, 7, 7),)),
    "converters.SpikingAdaptiveMaxPool2d": lambda: (
        SpikingAdaptiveMaxPool2d((3, 9), mode="gate"), (_spikes(6, 2, 1, 7, 5),)),
    "converters.CalibratedIF": lambda: (
        CalibratedIF(threshold=[1.0, 2.0], reset="zero", v_init=0.3,
                     v_init_map=torch.rand(2, 3)), (torch.rand(6, 2, 2, 3) * 2,)),
    "snnedge.ChipNeuron": lambda: (
        snnedge.ChipNeuron(torch.tensor([[3.0], [5.0]]), torch.tensor([[1.0], [-1.0]]),
                           torch.randint(-2, 3, (2, 3)).double(), "zero",
                           decay=torch.tensor([[4000.0], [3000.0]]), decay_shift=12, v_min=-64,
                           v_max=63, current_bits=8, strict=True),
        (torch.randint(-4, 5, (6, 2, 2, 3)).double(),)),
    "neuromorphic_targets.CubaChipNeuron": lambda: (
        CubaChipNeuron(snnedge.ChipNeuron(torch.tensor([[30.0], [50.0]]), torch.tensor([[1.0], [-2.0]]),
                                          torch.randint(-20, 21, (2, 3)).double(), "zero",
                                          decay=torch.tensor([[4000.0], [3000.0]]), decay_shift=12,
                                          v_min=-512, v_max=511, current_bits=10, strict=True),
                       3000, 12, 9),
        (torch.randint(-40, 41, (6, 2, 2, 3)).double(),)),
    "neuromorphic_targets.TwoCompartmentChipNeuron": lambda: (
        TwoCompartmentChipNeuron(
            snnedge.ChipNeuron(torch.tensor([[30.0], [50.0]]), torch.tensor([[1.0], [-2.0]]),
                               torch.randint(-20, 21, (2, 3)).double(), "zero",
                               decay=torch.tensor([[4000.0], [3000.0]]), decay_shift=12,
                               v_min=-512, v_max=511, current_bits=10, strict=True),
            torch.tensor([[28.0], [52.0]])),
        (torch.randint(-40, 41, (6, 2, 2, 3)).double(),)),
}

ATTRIBUTE_EXAMPLES = {
    "converters.ConversionInfo": lambda: ConversionInfo(
        normalization="channelwise", percentile=99.0, reset="zero",
        scales={"features.1": [1.5, 2.0], "fc": 0.5}, thresholds={"features.1": 1.0},
        v_init={"features.1": 0.5}, folded={"bn": "conv"}, removed=["drop"],
        capture_error=1e-6, membrane_excess={"features.1": 0.1}, calibration_samples=32,
        seconds=0.25, calibration_timesteps=16),
    "neuromorphic_targets.HardwareInfo": lambda: HardwareInfo(
        profile="loihi-0.8v", family="loihi", format="loihi: rule 'power-of-two'",
        scales={"features.1": [64.0, 128.0], "readout": 2.0}, exponents={"features.1": 3},
        notes=["layer 'features.1': reset 'subtract' runs as the chip's reset 'zero'"],
        mismatch=0.2, seed=7, current_decays={"features.1": 0.25},
        compartments={"features.4": 2}, cores=3),
}


def _public_attributes(m: nn.Module) -> dict:
    return {k: v for k, v in vars(m).items() if not k.startswith("_")}


def _same_module(a: nn.Module, b: nn.Module) -> None:
    assert type(a) is type(b) and repr(a) == repr(b)
    assert _public_attributes(a) == _public_attributes(b)
    sa, sb = a.state_dict(keep_vars=True), b.state_dict(keep_vars=True)
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
        assert isinstance(sa[k], nn.Parameter) == isinstance(sb[k], nn.Parameter), k


@pytest.mark.parametrize("name", sorted(snn_io.MODULE_TYPES))
def test_every_registered_layer_type_round_trips(tmp_path, name):
    if name not in EXAMPLES:
        pytest.fail(f"layer type {name!r} is registered but has no example in EXAMPLES; add one "
                    f"with its arguments away from their defaults")
    torch.manual_seed(0)
    module, inputs = EXAMPLES[name]()
    kind = snn_io.MODULE_TYPES[name]
    assert kind.name == name and kind.cls is type(module)
    net = snnedge.SpikingNetwork([("m", module, ("input",) * len(inputs))]).eval()
    back = snnedge.load_network(snnedge.save_network(net, tmp_path / "net.pt")).layer("m")
    _same_module(module, back)
    assert kind.to_args(back) == kind.to_args(module)
    assert torch.equal(back(*inputs), module(*inputs))


def test_every_registered_type_has_an_example():
    assert set(EXAMPLES) == set(snn_io.MODULE_TYPES)
    assert set(ATTRIBUTE_EXAMPLES) == set(snn_io.ATTRIBUTE_TYPES)


@pytest.mark.parametrize("name", sorted(snn_io.ATTRIBUTE_TYPES))
def test_every_registered_attribute_type_round_trips(tmp_path, name):
    value = ATTRIBUTE_EXAMPLES[name]()
    kind = snn_io.ATTRIBUTE_TYPES[name]
    assert kind.name == name and kind.cls is type(value)
    net = snnedge.sequential(nn.Linear(2, 2), snnedge.IF(), nn.Linear(2, 2))
    net.conversion_ = value
    back = snnedge.load_network(snnedge.save_network(net, tmp_path / "net.pt"))
    assert type(back.conversion_) is type(value) and back.conversion_ == value


def test_registry_docstring_examples_run():
    result = doctest.testmod(io_registry, verbose=False)
    assert result.failed == 0 and result.attempted > 0


# -- other packages' types, found through entry points ----------------------------------------
def test_converters_registers_through_its_entry_point():
    points = metadata.entry_points(group=snn_io.ENTRY_POINT_GROUP)
    assert [(ep.name, ep.value) for ep in points if ep.name == "converters"] == \
           [("converters", "converters.io_types:register")], \
        "pyproject.toml declares it; install the package again (pip install -e .) to get it"


def _run(code: str, cwd, **env) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_fresh_process_loads_a_converted_network_without_importing_converters(tmp_path):
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(16, 3)).eval()
    x = torch.rand(32, 1, 8, 8)
    snn = convert(ann, x, normalization="max", timesteps=8)
    assert {"CalibratedIF", "SpikingMaxPool2d"} <= {type(n.module).__name__ for n in snn.nodes}
    snnedge.save_network(snn, tmp_path / "snn.pt")
    torch.save(x[:8], tmp_path / "x.pt")
    out = _run("""
        import sys, torch, snnedge
        assert "converters" not in sys.modules, "importing snnedge imported converters"
        net = snnedge.load_network("snn.pt")
        res = snnedge.simulate(net, torch.load("x.pt"), timesteps=8)
        torch.save({"output": res.output, "spikes": res.spike_counts}, "res.pt")
        print(type(net.conversion_).__module__, type(net.conversion_).__name__)
        print(sorted({type(n.module).__module__ for n in net.nodes}))
    """, tmp_path)
    assert out.splitlines()[0] == "converters.pipeline ConversionInfo"
    assert "converters.maxpool" in out.splitlines()[1]
    there = torch.load(tmp_path / "res.pt", weights_only=True)
    here = snnedge.simulate(snn, x[:8], timesteps=8)
    assert torch.equal(there["output"], here.output) and there["spikes"] == here.spike_counts
    assert snnedge.load_network(tmp_path / "snn.pt").conversion_ == snn.conversion_


PLUGIN = '''
import snnedge
from snnedge import io as snn_io


class ScaledIF(snnedge.IF):
    """An IF neuron whose input current is multiplied by ``gain``."""

    def __init__(self, gain=1.0, threshold=1.0):
        super().__init__(threshold=threshold)
        self.gain = float(gain)

    def forward_block(self, current, state, steps, static=False, **kw):
        return super().forward_block(current * self.gain, state, steps, static, **kw)


def register():
    snn_io.register_layer_type("{prefix}.ScaledIF", ScaledIF, lambda m: {{"gain": m.gain}})
'''


def _plugin(root, module: str, entry_point: str, source: str | None = None) -> None:
    """A package on ``root``, with its dist-info naming one function of the group."""
    if source is not None:
        (root / f"{module}.py").write_text(source)
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{snn_io.ENTRY_POINT_GROUP}]\n{module} = {entry_point}\n")


def test_custom_layer_type_registers_and_round_trips(tmp_path, registry, monkeypatch):
    source = PLUGIN.format(prefix="gainplugin")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "snnedge_gain_plugin.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))  # importable here, no entry point
    plugin = importlib.import_module("snnedge_gain_plugin")
    net = snnedge.sequential(nn.Linear(4, 5), plugin.ScaledIF(gain=3.0, threshold=0.5),
                             nn.Linear(5, 2))
    with pytest.raises(TypeError, match=r"layer '1'.*ScaledIF.*register_layer_type"):
        snnedge.save_network(net, tmp_path / "refused.pt")
    plugin.register()
    assert snn_io.MODULE_TYPES["gainplugin.ScaledIF"].cls is plugin.ScaledIF
    snnedge.save_network(net, tmp_path / "net.pt")
    x = torch.rand(6, 4)
    back = snnedge.load_network(tmp_path / "net.pt")
    assert type(back.layer("1")) is plugin.ScaledIF and back.layer("1").gain == 3.0
    expected = snnedge.simulate(net, x, timesteps=5)
    assert torch.equal(snnedge.simulate(back, x, timesteps=5).output, expected.output)
    # a fresh process finds the type through the plugin's entry point alone
    (tmp_path / "dist").mkdir()
    _plugin(tmp_path / "dist", "snnedge_gain_plugin", "snnedge_gain_plugin:register", source)
    torch.save(x, tmp_path / "x.pt")
    out = _run("""
        import sys, torch, snnedge
        assert "snnedge_gain_plugin" not in sys.modules
        net = snnedge.load_network("net.pt")
        torch.save(snnedge.simulate(net, torch.load("x.pt"), timesteps=5).output, "out.pt")
        print(type(net.layer("1")).__module__, type(net.layer("1")).__name__)
    """, tmp_path, PYTHONPATH=os.pathsep.join([str(tmp_path / "dist"),
                                               os.environ.get("PYTHONPATH", "")]))
    assert out.strip() == "snnedge_gain_plugin ScaledIF"
    assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), expected.output)


def test_registration_refuses_ambiguous_names(registry):
    class Gain(nn.Identity):
        pass

    with pytest.raises(ValueError, match=r"'snnedge.IF' already stands for snnedge.neurons.IF"):
        snn_io.register_layer_type("snnedge.IF", Gain, lambda m: {})
    snn_io.register_layer_type("tests.Gain", Gain, lambda m: {})
    snn_io.register_layer_type("tests.Gain", Gain, lambda m: {})  # again: the same entry
    with pytest.raises(ValueError, match=r"already registered as 'tests.Gain'"):
        snn_io.register_layer_type("tests.OtherGain", Gain, lambda m: {})
    with pytest.raises(TypeError, match=r"'to_args' parameter of register_layer_type must be "
                                        r"callable"):
        snn_io.register_layer_type("tests.Gain2", nn.ReLU, {"k": 1})
    with pytest.raises(TypeError, match=r"'cls' parameter of register_layer_type"):
        snn_io.register_layer_type("tests.Gain3", "os.system", lambda m: {})


# -- names that no package registers -----------------------------------------------------------
def _saved(tmp_path, edit) -> str:
    net = snnedge.sequential(nn.Linear(2, 2), snnedge.IF(), nn.Linear(2, 2))
    net.conversion_ = ATTRIBUTE_EXAMPLES["converters.ConversionInfo"]()
    path = snnedge.save_network(net, tmp_path / "n.pt")
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


def test_unknown_layer_type_is_refused_naming_it_and_the_layer(tmp_path):
    path = _saved(tmp_path, lambda p: p["nodes"][1].update(type="mylib.Thing"))
    with pytest.raises(ValueError, match=r"layer '1' has type 'mylib.Thing', which this snnedge "
                                         r"cannot rebuild"):
        snnedge.load_network(path)
    assert "mylib" not in sys.modules  # a name in a file is never imported


def test_attributes_in_a_file_are_checked(tmp_path):
    path = _saved(tmp_path, lambda p: p["attributes"].update(
        forward={"type": "converters.ConversionInfo", "data": {}}))
    with pytest.raises(ValueError, match=r"attribute 'forward' is not a learned attribute name"):
        snnedge.load_network(path)
    path = _saved(tmp_path, lambda p: p["attributes"]["conversion_"].update(type="os.system"))
    with pytest.raises(ValueError, match=r"attribute 'conversion_' has type 'os.system', which "
                                         r"this snnedge cannot read"):
        snnedge.load_network(path)


def test_version_1_files_still_load(tmp_path):
    def as_version_1(p):
        p["version"] = 1
        p["conversion"] = p.pop("attributes")["conversion_"]["data"]

    back = snnedge.load_network(_saved(tmp_path, as_version_1))
    assert back.conversion_ == ATTRIBUTE_EXAMPLES["converters.ConversionInfo"]()


def test_unregistered_attribute_is_refused_when_saving(tmp_path):
    net = snnedge.sequential(nn.Linear(2, 2), snnedge.IF(), nn.Linear(2, 2))
    net.notes_ = {1, 2}
    with pytest.raises(TypeError, match=r"attribute 'notes_'.*builtins.set.*"
                                        r"register_attribute_type"):
        snnedge.save_network(net, tmp_path / "n.pt")
    assert not list(tmp_path.iterdir())


def test_failing_entry_point_is_named(tmp_path, registry, monkeypatch):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    _plugin(plugins, "snnedge_missing_plugin", "snnedge_missing_plugin_xyz:register")
    _plugin(plugins, "snnedge_raising_plugin", "snnedge_raising_plugin:register",
            "def register():\n    raise RuntimeError('cannot register today')\n")
    _plugin(plugins, "snnedge_late_plugin", "snnedge_late_plugin:register",
            PLUGIN.format(prefix="lateplugin"))
    monkeypatch.syspath_prepend(str(plugins))
    # a type that a working plugin registers loads, with a warning naming the broken ones
    net_path = _saved(tmp_path, lambda p: p["nodes"][1].update(
        type="lateplugin.ScaledIF", args={"gain": 2.0}))
    with pytest.warns(RuntimeWarning, match="snnedge_raising_plugin"):
        back = snnedge.load_network(net_path)
    assert type(back.layer("1")).__name__ == "ScaledIF" and back.layer("1").gain == 2.0
    # a type that none registers is refused, naming the functions that failed
    net_path = _saved(tmp_path, lambda p: p["nodes"][1].update(type="mylib.Thing"))
    with pytest.raises(ValueError, match=r"layer '1' has type 'mylib.Thing'") as refused:
        snnedge.load_network(net_path)
    message = str(refused.value)
    assert "'snnedge_missing_plugin = snnedge_missing_plugin_xyz:register'" in message
    assert "ModuleNotFoundError" in message
    assert "'snnedge_raising_plugin = snnedge_raising_plugin:register'" in message
    assert "RuntimeError: cannot register today" in message
