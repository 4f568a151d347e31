"""save_network / load_network: exact round trips, no pickled code, clear refusals."""
import doctest

import pytest
import torch
from torch import nn

import snnedge
from converters import ConversionInfo, convert
from snnedge import io as snn_io


class ResNetlet(nn.Module):
    """Conv-BN-ReLU, a residual addition, max and average pooling: IF, CalibratedIF with
    per-channel thresholds, SpikingMaxPool2d, SumPool2d and Add in the converted network."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.r1, self.r2 = nn.ReLU(), nn.ReLU()
        self.mp, self.ap = nn.MaxPool2d(2), nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        a = self.r1(self.b1(self.c1(x)))
        b = self.r2(self.c2(a) + a)
        return self.fc(torch.flatten(self.ap(self.mp(b)), 1))


def _same_simulation(a, b, x, **kw):
    ra, rb = snnedge.simulate(a, x, **kw), snnedge.simulate(b, x, **kw)
    assert ra.spike_counts == rb.spike_counts
    assert ra.synaptic_events == rb.synaptic_events
    assert torch.equal(ra.output, rb.output)
    assert all(torch.equal(ra.neuron_spike_counts[k], rb.neuron_spike_counts[k])
               for k in ra.neuron_spike_counts)


def _same_state(a, b):
    sa, sb = a.state_dict(keep_vars=True), b.state_dict(keep_vars=True)
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
        assert isinstance(sa[k], nn.Parameter) == isinstance(sb[k], nn.Parameter), k


@pytest.mark.parametrize("maxpool,reset", [("count", "subtract"), ("gate", "zero")])
def test_converted_network_round_trips_exactly(tmp_path, maxpool, reset):
    torch.manual_seed(0)
    ann = ResNetlet().eval()
    x = torch.rand(48, 1, 8, 8)
    snn = convert(ann, x, normalization="channelwise", reset=reset, maxpool=maxpool, timesteps=8)
    types = {type(n.module).__name__ for n in snn.nodes}
    assert {"CalibratedIF", "SpikingMaxPool2d", "Add"} <= types  # the max pool is one layer
    path = snnedge.save_network(snn, tmp_path / "snn.pt", metadata={"note": ["kept", 1]})
    back, meta = snnedge.load_network(path, with_metadata=True)
    assert meta == {"note": ["kept", 1]}
    assert [(n.name, type(n.module), n.inputs) for n in back.nodes] == \
           [(n.name, type(n.module), n.inputs) for n in snn.nodes]
    assert repr(back) == repr(snn)
    assert back.input_shape == snn.input_shape and back.training == snn.training
    assert isinstance(back.conversion_, ConversionInfo) and back.conversion_ == snn.conversion_
    _same_state(snn, back)
    for engine in ("dense", "event"):
        _same_simulation(snn, back, x[:16], timesteps=8, engine=engine)
    _same_simulation(snn, back, x[:16], timesteps=8, dtype=torch.float64)
    assert [p.name for p in tmp_path.iterdir()] == ["snn.pt"]  # no temporary files left


def test_hand_built_network_round_trips_exactly(tmp_path):
    torch.manual_seed(1)
    branch = snnedge.SpikingNetwork([
        ("conv", nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)),
        ("scale", snnedge.Scale(torch.rand(3) + 0.5, torch.rand(3))),
        ("lif", snnedge.LIF(beta=[0.5, 0.7, 0.9], threshold=[0.5, 1.0, 1.5], learn_beta=True,
                            learn_threshold=True, surrogate="triangle", alpha=2.0, v_init=0.25),
         ("scale",)),
        ("pool", snnedge.SumPool2d(2), ("lif",)),
        ("unit", snnedge.Scale(2.0), ("lif",)),
        ("avg", nn.AvgPool2d(2, divisor_override=1), ("unit",)),
        ("cat", snnedge.Concat(1), ("pool", "avg")),
        ("adapt", nn.AdaptiveAvgPool2d((2, 2)), ("cat",)),
        ("drop", nn.Dropout(0.2), ("adapt",)),
        ("flat", nn.Flatten(), ("drop",)),
        ("if", snnedge.IF(threshold=0.3, reset="zero", detach_reset=True), ("flat",)),
        ("fc", nn.Linear(24, 5), ("if",)),
        ("id", nn.Identity(), ("fc",)),
    ], input_shape=(2, 8, 8)).double().eval()
    snnedge.save_network(branch, tmp_path / "net.pt")
    back = snnedge.load_network(tmp_path / "net.pt")
    assert not back.training and not back.layer("drop").training
    _same_state(branch, back)
    assert repr(back) == repr(branch)
    assert back.layer("lif").surrogate == branch.layer("lif").surrogate
    _same_simulation(branch, back, torch.rand(6, 2, 8, 8, dtype=torch.float64), timesteps=6,
                     encoding="poisson", seed=3)


def test_one_dimensional_layers_round_trip(tmp_path):
    net = snnedge.sequential(nn.Conv1d(1, 2, 3), snnedge.IF(), nn.AvgPool1d(2), nn.Flatten(),
                             nn.Unflatten(1, (2, 3)), nn.Flatten(), nn.Linear(6, 2),
                             input_shape=(1, 8))
    snnedge.save_network(net, tmp_path / "n.pt")
    _same_simulation(net, snnedge.load_network(tmp_path / "n.pt"), torch.rand(4, 1, 8) * 3,
                     timesteps=5)


def test_docstring_example_runs():
    result = doctest.testmod(snn_io, verbose=False)
    assert result.failed == 0 and result.attempted > 0


def test_unknown_module_type_is_refused_naming_the_layer(tmp_path):
    class Custom(snnedge.IF):
        pass

    net = snnedge.sequential(nn.Linear(2, 2), Custom(), nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"layer '1'.*Custom"):
        snnedge.save_network(net, tmp_path / "n.pt")
    assert not list(tmp_path.iterdir())


def test_metadata_must_be_plain_data(tmp_path):
    net = snnedge.sequential(nn.Linear(2, 2), snnedge.IF(), nn.Linear(2, 2))
    with pytest.raises(TypeError, match="plain data"):
        snnedge.save_network(net, tmp_path / "n.pt", metadata={"model": nn.Linear(1, 1)})


def test_load_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        snnedge.load_network(tmp_path / "missing.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="not a network saved by snnedge.save_network"):
        snnedge.load_network(tmp_path / "state.pt")
    torch.save({"format": snn_io.NETWORK_FORMAT, "module": nn.Linear(1, 1)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only=True refused it"):
        snnedge.load_network(tmp_path / "evil.pt")


def test_load_rebuilds_only_known_types(tmp_path):
    net = snnedge.sequential(nn.Linear(2, 2), snnedge.IF(), nn.Linear(2, 2))
    snnedge.save_network(net, tmp_path / "n.pt")
    payload = torch.load(tmp_path / "n.pt", weights_only=True)
    payload["nodes"][1]["type"] = "os.system"
    torch.save(payload, tmp_path / "n.pt")
    with pytest.raises(ValueError, match="'os.system'.*cannot rebuild"):
        snnedge.load_network(tmp_path / "n.pt")
