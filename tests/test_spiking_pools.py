"""Shape-changing temporal layers: the spiking max pool with overlapping, padded, ceil_mode
and adaptive windows, through shape inference, both engines, event counting, mapping,
save/load and the interop layers that refuse it."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import snnedge
from converters import SpikingAdaptiveMaxPool2d, SpikingMaxPool2d, convert
from neuromorphic_targets.graph import NetworkGraph
from snnedge import geometry as geo

# Spike trains of six inputs (columns) over six steps (rows), one row of a 1 x 6 map.
TRAINS = torch.tensor([
    # i0 i1 i2 i3 i4 i5
    [1, 1, 0, 0, 1, 0],
    [1, 0, 1, 0, 1, 1],
    [1, 1, 0, 0, 0, 1],
    [1, 0, 1, 1, 0, 1],
    [1, 1, 0, 1, 0, 1],
    [1, 0, 1, 1, 0, 0]], dtype=torch.float64)


def test_overlapping_padded_ceil_mode_pool_golden_counts():
    # kernel (1, 3), stride (1, 2), padding (0, 1), ceil_mode on a width of 6: floor mode gives
    # floor((6 + 2 - 3) / 2) + 1 = 3 windows, ceil mode 4 (the last starts at 5 < 6 + 1). The
    # windows read inputs {-1, 0, 1}, {1, 2, 3}, {3, 4, 5}, {5, 6, 7}: padding never wins, so
    # they pool {0, 1}, {1, 2, 3}, {3, 4, 5}, {5}; inputs 1, 3 and 5 are in two windows each.
    # Accumulated counts c_i[t]:
    #   i0: 1 2 3 4 5 6   i1: 1 1 2 2 3 3   i2: 0 1 1 2 2 3
    #   i3: 0 0 0 1 2 3   i4: 1 2 2 2 2 2   i5: 0 1 2 3 4 4
    # Window maxima and their steps (the output spikes, o[t] = max c[t] - max c[t-1]):
    #   {0, 1}:    1 2 3 4 5 6 -> 1 1 1 1 1 1
    #   {1, 2, 3}: 1 1 2 2 3 3 -> 1 0 1 0 1 0
    #   {3, 4, 5}: 1 2 2 3 4 4 -> 1 1 0 1 1 0
    #   {5}:       0 1 2 3 4 4 -> 0 1 1 1 1 0
    expected = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1], [1, 1, 0, 1],
                             [1, 0, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.float64)
    pool = SpikingMaxPool2d((1, 3), stride=(1, 2), padding=(0, 1), ceil_mode=True)
    assert pool.output_shape((1, 1, 6)) == (1, 1, 4)
    out = pool(TRAINS.view(6, 1, 1, 1, 6))
    assert torch.equal(out.view(6, 4), expected)
    # the same windows in a network, fed by IF neurons (threshold 1, v_init 0) with constant
    # currents a: they fire floor(8 a) times in 8 steps, 4 2 6 0 8 4; the windows' maxima are
    # 4, 6, 8, 4, and the Linear's weights give the pooled positions fan-outs 2, 1, 2, 0.
    fc = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0, 2.0, 0.0], [1.0, 1.0, 1.0, 0.0]]))
    net = snnedge.SpikingNetwork([("n", snnedge.IF(threshold=1.0, v_init=0.0), ("input",)),
                                  ("pool", pool, ("n",)), ("flat", nn.Flatten(), ("pool",)),
                                  ("fc", fc, ("flat",))])
    assert net.shapes((1, 1, 6)) == {"n": (1, 1, 6), "pool": (1, 1, 4), "flat": (4,), "fc": (2,)}
    a = torch.tensor([0.5, 0.25, 0.75, 0.0, 1.0, 0.5], dtype=torch.float64).view(1, 1, 1, 6)
    for engine in ("dense", "event"):
        res = snnedge.simulate(net, a, timesteps=8, engine=engine, dtype=torch.float64)
        assert res.spike_counts == {"n": 4 + 2 + 6 + 0 + 8 + 4}
        assert res.synaptic_events == {"fc": 4 * 2 + 6 * 1 + 8 * 2 + 4 * 0}
        assert res.output.tolist() == [[4.0 + 2 * 8.0, 4.0 + 6.0 + 8.0]]


def test_resnet_stem_pool_counts_equal_the_max_of_accumulated_counts():
    # MaxPool2d(3, 2, 1) (ResNet's stem): at every step the pooled count so far equals
    # max_pool2d of the inputs' counts so far.
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(20, 2, 3, 9, 9, generator=g) < torch.rand(1, 2, 3, 9, 9, generator=g)).double()
    out = SpikingMaxPool2d(3, 2, 1)(x)
    assert out.shape == (20, 2, 3, 5, 5) and ((out == 0) | (out == 1)).all()
    cum = x.cumsum(0).flatten(0, 1)
    assert torch.equal(out.cumsum(0).flatten(0, 1), F.max_pool2d(cum, 3, 2, 1))


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), d=st.integers(1, 2), ceil=st.booleans(), seed=st.integers(0, 99))
def test_any_max_pool_window_gives_exact_counts(h, w, k, s, p, d, ceil, seed):
    try:
        ref = F.max_pool2d(torch.zeros(1, 1, h, w), k, s, p, d, ceil)
    except RuntimeError:
        ref = None
    if ref is None or torch.isinf(ref).any():  # torch refuses, or a window holds only padding
        with pytest.raises(ValueError):
            SpikingMaxPool2d(k, s, p, d, ceil).output_shape((1, h, w))
        return
    pool = SpikingMaxPool2d(k, s, p, d, ceil)
    assert pool.output_shape((1, h, w)) == tuple(ref.shape[1:])
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(7, 2, 1, h, w, generator=g) < 0.5).double()
    out = pool(x)
    assert torch.equal(out.cumsum(0).flatten(0, 1), F.max_pool2d(x.cumsum(0).flatten(0, 1), k, s, p, d, ceil))


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 8), w=st.integers(1, 8), oh=st.integers(1, 10), ow=st.integers(1, 10),
       seed=st.integers(0, 99))
def test_adaptive_max_pool_counts_any_output_size(h, w, oh, ow, seed):
    pool = SpikingAdaptiveMaxPool2d((oh, ow))
    assert pool.output_shape((2, h, w)) == (2, oh, ow)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(6, 1, 2, h, w, generator=g) < 0.5).double()
    out = pool(x)
    assert ((out == 0) | (out == 1)).all()
    assert torch.equal(out.cumsum(0).flatten(0, 1),
                       F.adaptive_max_pool2d(x.cumsum(0).flatten(0, 1), (oh, ow)))


def test_adaptive_windows_golden():
    # n = 3 inputs to 7 outputs (replication): output o pools [floor(3 o / 7), ceil(3 (o + 1) / 7)):
    # o = 0: [0, 1), 1: [0, 1), 2: [0, 2), 3: [1, 2), 4: [1, 3), 5: [2, 3), 6: [2, 3).
    (up,) = geo.adaptive_axes((3,), 7)
    assert up.starts().tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert up.ends().tolist() == [1, 1, 2, 2, 3, 3, 3]
    # n = 5 inputs to 3 outputs: [0, 2), [1, 4), [3, 5) (windows overlap at 1 and 3)
    (down,) = geo.adaptive_axes((5,), 3)
    assert up.matrix().sum(1).tolist() == [1, 1, 2, 1, 2, 1, 1]
    assert down.matrix().tolist() == [[1, 1, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 1, 1]]
    x = torch.arange(5.0).view(1, 1, 1, 5)
    assert F.adaptive_avg_pool2d(x, (1, 3)).flatten().tolist() == [0.5, 2.0, 3.5]
    # the spiking max pool uses the same windows: the max rate of [0, 2) is input 1's
    rates = torch.tensor([0.2, 0.6, 0.4, 0.1, 0.3], dtype=torch.float64)
    t = torch.arange(1, 41, dtype=torch.float64).view(-1, 1)
    trains = torch.diff(torch.floor(t * rates), dim=0, prepend=torch.zeros(1, 5, dtype=torch.float64))
    out = SpikingAdaptiveMaxPool2d((1, 3))(trains.view(40, 1, 1, 1, 5))
    assert out.sum(0).flatten().tolist() == [24.0, 24.0, 12.0]   # 40 * 0.6, 40 * 0.6, 40 * 0.3


def test_structural_model_routes_an_event_to_every_window_holding_it():
    pool = SpikingMaxPool2d(3, 2, 1)
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = 1.0  # the centre lies in the windows of outputs (1, 1) only
    assert pool.structural(x)[0, 0].nonzero().tolist() == [[1, 1]]
    x[0, 0, 2, 2], x[0, 0, 1, 2] = 0.0, 1.0  # row 1 is in windows 0 and 1
    assert pool.structural(x)[0, 0].nonzero().tolist() == [[0, 1], [1, 1]]
    # keep_shape (earlier saved networks): the sum pool after it does the routing
    assert torch.equal(SpikingMaxPool2d(2, keep_shape=True).structural(x), x)


def test_shape_inference_names_a_pool_that_cannot_take_its_input():
    net = snnedge.sequential(nn.Conv2d(1, 2, 3), snnedge.IF(), SpikingMaxPool2d(3, 2))
    assert net.shapes((1, 7, 7))["2"] == (2, 2, 2)
    with pytest.raises(ValueError, match=r"Layer '2' \(SpikingMaxPool2d\) cannot take an input of "
                                         r"shape \(2, 1, 1\)"):
        net.shapes((1, 3, 3))


def _alexnet_like():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                         nn.Conv2d(6, 8, 3, padding=1, groups=2), nn.ReLU(),
                         nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 5)).eval()


X13 = torch.rand(32, 1, 13, 13, generator=torch.Generator().manual_seed(0))


def test_converted_overlapping_pools_are_single_layers_and_engines_agree():
    ann = _alexnet_like()
    snn = convert(ann, X13, calibrate_membrane=False)
    assert [type(snn.layer(n)).__name__ for n in ("2", "5")] == ["SpikingMaxPool2d"] * 2
    assert snn.shapes((1, 13, 13))["2"] == (6, 6, 6) and snn.shapes((1, 13, 13))["5"] == (8, 4, 4)
    dense = snnedge.simulate(snn, X13[:6], timesteps=40, engine="dense", dtype=torch.float64)
    event = snnedge.simulate(snn, X13[:6], timesteps=40, engine="event", dtype=torch.float64)
    assert dense.spike_counts == event.spike_counts
    assert dense.synaptic_events == event.synaptic_events
    assert torch.allclose(dense.output, event.output)
    with torch.no_grad():
        y = ann(X13[:6]).double()
    big = snnedge.simulate(snn, X13[:6], timesteps=400, dtype=torch.float64)
    assert float((big.output / 400 - y).abs().max() / y.abs().max()) < 0.05


def test_mapping_reads_the_pool_windows():
    snn = convert(_alexnet_like(), X13, calibrate_membrane=False)
    graph = NetworkGraph(snn, (1, 13, 13))
    pop = graph.population("4")  # neurons after conv '3', fed by the pool '2' of neurons '1'
    assert pop.sources == ("1",) and pop.nodes == ("2", "3")
    # one spike of neuron (0, 4, 4) of '1' enters pool windows (1..2) x (1..2) (windows of
    # kernel 3, stride 2 start at 0, 2, 4, ...), and conv '3' (3x3, padding 1, 3 input
    # channels per group) spreads each to its group's 4 output channels around them
    hit = graph.targets(pop, "1", (0, 4, 4))
    assert hit.shape == (8, 6, 6)
    assert hit[4:].sum() == 0 and hit[:4].any(0).nonzero().min(0).values.tolist() == [0, 0]
    assert hit[:4].any(0).nonzero().max(0).values.tolist() == [3, 3]


def test_save_and_load_round_trip_a_network_with_the_new_layers(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.dw = nn.Conv2d(2, 2, 3, padding=1, groups=2)
            self.fc = nn.Linear(4 * 2 * 2, 3)

        def forward(self, x):
            x = F.relu6(self.conv(x))
            a, b = x.chunk(2, dim=1)
            x = torch.cat([a, F.relu(self.dw(b))], 1)
            x = x.view(x.size(0), 2, 2, 13, 13).transpose(1, 2).reshape(x.size(0), 4, 13, 13)
            x = F.max_pool2d(x, 3, 2, 1)
            x = F.adaptive_max_pool2d(x, (2, 2))
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(0)
    snn = convert(Net().eval(), X13, calibrate_membrane=False)
    kinds = {type(snn.layer(n)).__name__ for n in snn.names}
    assert {"Narrow", "ChannelShuffle", "SpikingMaxPool2d", "SpikingAdaptiveMaxPool2d"} <= kinds
    back = snnedge.load_network(snnedge.save_network(snn, tmp_path / "net.pt"))
    a = snnedge.simulate(snn, X13[:4], timesteps=16, dtype=torch.float64)
    b = snnedge.simulate(back, X13[:4], timesteps=16, dtype=torch.float64)
    assert torch.equal(a.output, b.output) and a.synaptic_events == b.synaptic_events


def test_brian2_and_nir_refuse_the_max_pool_by_name():
    snn = convert(_alexnet_like(), X13, calibrate_membrane=False)
    with pytest.raises(ValueError, match=r"Layer '2' is a SpikingMaxPool2d.*engine='dense'"):
        snnedge.simulate(snn, X13[:1], timesteps=2, engine="brian2")
    nir = pytest.importorskip("nir")
    assert nir is not None
    with pytest.raises(ValueError, match=r"Layer '2' \(SpikingMaxPool2d\) cannot be written as NIR: "
                                         r"NIR has no max-pooling node"):
        snnedge.to_nir(snn)


def test_slices_and_channel_shuffles_have_exact_synapse_lists():
    from snnedge.interop.sparse_maps import module_matrix
    x = torch.rand(1, 6, 2, 3, dtype=torch.float64)
    for module in (snnedge.Narrow(1, 2, 3), snnedge.Narrow(3, 1, 2), nn.ChannelShuffle(3)):
        y = module(x)
        m = module_matrix(module, x.shape[1:], y.shape[1:])
        assert torch.equal(torch.from_numpy(m @ x.reshape(-1).numpy()), y.reshape(-1))


@pytest.mark.cuda
def test_overlapping_pools_on_cuda_equal_the_cpu():
    snn = convert(_alexnet_like(), X13, calibrate_membrane=False)
    cpu = snnedge.simulate(snn, X13[:6], timesteps=20, dtype=torch.float64)
    for engine in ("dense", "event"):
        gpu = snnedge.simulate(snn, X13[:6], timesteps=20, engine=engine, dtype=torch.float64,
                               device="cuda")
        assert gpu.spike_counts == cpu.spike_counts and gpu.synaptic_events == cpu.synaptic_events
        assert torch.allclose(gpu.output.cpu(), cpu.output)


def test_docstring_examples_run():
    import doctest

    import converters.maxpool
    import snnedge.layers
    for module in (converters.maxpool, snnedge.layers):
        result = doctest.testmod(module, verbose=False)
        assert result.failed == 0 and result.attempted > 0, module.__name__
