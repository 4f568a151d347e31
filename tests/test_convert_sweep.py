"""One-sweep membrane calibration (issue 17): the same initial membranes as one simulation per
layer, at a cost that does not grow with the square of the depth."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import converters.assemble as assemble
from converters import convert, replace_relu_with_qcfs
from converters.membrane import calibrate_membrane, calibrate_membrane_per_layer, calibrated_layers
from converters.sweep import Sweep, pack, unpack
from test_convert import X12, rescat, vgg_tiny


def both_methods(ann, x, monkeypatch, **options):
    """The network converted with the one-sweep calibration and with the per-layer one."""
    out = []
    for method in (calibrate_membrane, calibrate_membrane_per_layer):
        monkeypatch.setattr(assemble, "calibrate_membrane", method)
        out.append(convert(ann, x, **options))
    return out


def assert_same_membranes(sweep, per_layer):
    layers = calibrated_layers(sweep)
    assert layers and layers == calibrated_layers(per_layer)
    for name in layers:
        a, b = sweep.layer(name).v_init_map, per_layer.layer(name).v_init_map
        assert torch.allclose(a, b, atol=1e-5), (name, float((a - b).abs().max()))
    assert sweep.conversion_.membrane_excess == pytest.approx(per_layer.conversion_.membrane_excess,
                                                              abs=1e-6)


@pytest.mark.parametrize("build, options", [
    (rescat, {"timesteps": 8}),                                   # additions, concatenation
    (rescat, {"normalization": "channelwise"}),
    (vgg_tiny, {}),                                               # spiking max pools
    (lambda: vgg_tiny(nn.AvgPool2d), {"reset": "zero"}),
    # (QCFS networks calibrate their biases by default; the per-layer method has no bias
    # calibration, so the comparison is of the membranes alone)
    (lambda: replace_relu_with_qcfs(vgg_tiny(nn.AvgPool2d), levels=4).eval(), {"calibrate_bias": False}),
])
def test_one_sweep_gives_the_per_layer_membranes(build, options, monkeypatch):
    sweep, per_layer = both_methods(build(), X12, monkeypatch, **options)
    assert_same_membranes(sweep, per_layer)


def test_the_sweep_chunks_give_the_same_membranes(monkeypatch):
    """Chunks of a few samples (a small memory budget) change nothing."""
    import converters.sweep as sweep_module
    ann = rescat()
    whole = convert(ann, X12, timesteps=8)
    monkeypatch.setattr(sweep_module, "SWEEP_BYTES", 3 * 8 * 6 * 12 * 12 * 4 * 5)  # 5 samples
    assert Sweep(whole, X12, 8).chunk == 5
    chunked = convert(ann, X12, timesteps=8)
    assert_same_membranes(chunked, whole)


def chain(depth: int) -> nn.Sequential:
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * 12 * 12, 3)).eval()


@pytest.mark.parametrize("depth", [3, 12])
def test_each_layer_runs_once_per_pass_whatever_the_depth(depth):
    """The sweep runs each convolution once on T x N samples (the first, fed by the static
    input, once on N); the per-layer method ran the k-th layer once per neuron layer after
    it, a cost quadratic in the depth."""
    snn = convert(chain(depth), X12, calibrate_membrane=False)
    sweep = Sweep(snn, X12, timesteps=8)
    runs = {}
    for name in snn.names:
        if isinstance(snn.layer(name), nn.Conv2d):
            snn.layer(name).register_forward_pre_hook(
                lambda m, args, name=name: runs.__setitem__(name, runs.get(name, 0) + args[0].shape[0]))
    for name in sweep.temporal:
        kept = sweep.currents(name)
        sweep.counts(name, kept)
        sweep.store(name, kept)
    convs = [n for n in snn.names if isinstance(snn.layer(n), nn.Conv2d)]
    assert len(convs) == depth
    assert runs[convs[0]] == X12.shape[0]
    assert all(runs[n] == 8 * X12.shape[0] for n in convs[1:]), runs


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 20), shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_packed_spike_trains_round_trip(steps, shape, seed):
    g = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(steps, 2, *shape, generator=g) < 0.3).float()
    assert torch.equal(unpack(pack(spikes, binary=True)), spikes)
    analog = torch.rand(steps, 2, *shape, generator=g)
    assert unpack(pack(analog, binary=False)) is analog
