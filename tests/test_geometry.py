"""snnedge.geometry against torch.nn.functional, and padding="same" from end to end.

Every window rule is checked two ways: the output size against torch's own operator on
random kernels, strides, paddings (``"same"`` included), dilations, ``ceil_mode`` and input
sizes (torch refusing exactly when the geometry does), and the windows themselves by
rebuilding torch's output from the listed taps. Fan-in and fan-out are checked against a
brute-force count: a convolution of ones and a transposed convolution of ones (as sinabs
counts synaptic operations).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import snnedge
from snnedge import geometry as geo
from snnedge.connectivity import fanout, window_sum
from snnedge.events import event_conv2d

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
many = settings(max_examples=200, deadline=None)
paddings = st.one_of(st.integers(0, 4), st.sampled_from(["same", "valid"]))


def _torch_or_none(fn):
    """torch's output, or None where torch refuses the arguments."""
    try:
        return fn()
    except (RuntimeError, ValueError):
        return None


def _reference_sum(axis: geo.Window, x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``sum over the taps of output o of weights[tap] * x[input]``, one axis."""
    o, j, i = axis.taps()
    out = np.zeros(axis.size_out)
    np.add.at(out, o, x[i] * (1.0 if weights is None else weights[j]))
    return out


# -- convolutions ----------------------------------------------------------------------------

@many
@given(n=st.integers(1, 24), k=st.integers(1, 6), s=st.integers(1, 4), d=st.integers(1, 3),
       padding=paddings, seed=st.integers(0, 1000))
def test_conv1d_windows_rebuild_torchs_output(n, k, s, d, padding, seed):
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(1, 1, n, generator=g, dtype=torch.float64), torch.randn(1, 1, k, generator=g,
                                                                              dtype=torch.float64)
    y = _torch_or_none(lambda: F.conv1d(x, w, stride=s, padding=padding, dilation=d))
    if y is None:
        with pytest.raises(ValueError):
            geo.conv_axes((n,), k, s, padding, d)
        return
    (axis,) = geo.conv_axes((n,), k, s, padding, d)
    assert axis.size_out == y.shape[-1] == geo.conv_output_size(n, k, s, (axis.pad_lo, axis.pad_hi), d)
    np.testing.assert_allclose(_reference_sum(axis, x[0, 0].numpy(), w[0, 0].numpy()),
                               y[0, 0].numpy(), rtol=1e-12, atol=1e-12)


@many
@given(h=st.integers(1, 14), w=st.integers(1, 14), kh=st.integers(1, 5), kw=st.integers(1, 5),
       sh=st.integers(1, 3), sw=st.integers(1, 3), dh=st.integers(1, 3), dw=st.integers(1, 2),
       padding=st.one_of(paddings, st.tuples(st.integers(0, 3), st.integers(0, 3))))
def test_conv2d_output_shape_matches_torch(h, w, kh, kw, sh, sw, dh, dw, padding):
    conv = nn.Conv2d(1, 1, (kh, kw), (sh, sw), 0, (dh, dw))
    y = _torch_or_none(lambda: F.conv2d(torch.zeros(1, 1, h, w), conv.weight, None, (sh, sw),
                                        padding, (dh, dw)))
    if y is None:
        with pytest.raises(ValueError):
            geo.conv_axes((h, w), (kh, kw), (sh, sw), padding, (dh, dw))
        return
    assert geo.output_spatial(conv if padding == 0 else _with_padding(conv, padding), (h, w)) \
        == tuple(y.shape[2:])


def _with_padding(conv: nn.Conv2d, padding) -> nn.Conv2d:
    if isinstance(padding, str):
        return nn.Conv2d(1, 1, conv.kernel_size, conv.stride, padding, conv.dilation)
    conv.padding = padding if isinstance(padding, tuple) else (padding, padding)
    return conv


@pytest.mark.parametrize("k, d, expected", [(3, 1, (1, 1)), (4, 1, (1, 2)), (4, 2, (3, 3)),
                                            (4, 3, (4, 5)), (1, 5, (0, 0))])
def test_same_padding_puts_the_odd_zero_after_the_input(k, d, expected):
    # torch's rule: total = d (k - 1), floor(total / 2) before; checked against F.pad + conv
    assert geo.same_padding(k, d) == expected
    x, w = torch.randn(1, 1, 9, dtype=torch.float64), torch.randn(1, 1, k, dtype=torch.float64)
    torch.testing.assert_close(F.conv1d(F.pad(x, expected), w, dilation=d),
                               F.conv1d(x, w, padding="same", dilation=d), rtol=0, atol=1e-12)


# -- pools -----------------------------------------------------------------------------------

@many
@given(n=st.integers(1, 20), k=st.integers(1, 5), s=st.one_of(st.none(), st.integers(1, 4)),
       p=st.integers(0, 3), d=st.integers(1, 3), ceil=st.booleans(), seed=st.integers(0, 1000))
def test_max_pool1d_windows_rebuild_torchs_output(n, k, s, p, d, ceil, seed):
    x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = _torch_or_none(lambda: F.max_pool1d(x, k, s, p, d, ceil))
    if y is None:
        with pytest.raises(ValueError):
            geo.pool_axes((n,), k, s, p, d, ceil)
        return
    (axis,) = geo.pool_axes((n,), k, s, p, d, ceil)
    assert axis.size_out == y.shape[-1]
    o, _, i = axis.taps()
    ref = np.full(axis.size_out, -np.inf)
    np.maximum.at(ref, o, x[0, 0].numpy()[i])
    np.testing.assert_array_equal(ref, y[0, 0].numpy())


@many
@given(n=st.integers(1, 20), k=st.integers(1, 5), s=st.one_of(st.none(), st.integers(1, 4)),
       p=st.integers(0, 3), ceil=st.booleans(), include_pad=st.booleans(), seed=st.integers(0, 1000))
def test_avg_pool1d_windows_and_divisors_rebuild_torchs_output(n, k, s, p, ceil, include_pad, seed):
    x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = _torch_or_none(lambda: F.avg_pool1d(x, k, s, p, ceil, include_pad))
    if y is None:
        with pytest.raises(ValueError):
            geo.pool_axes((n,), k, s, p, 1, ceil)
        return
    (axis,) = geo.pool_axes((n,), k, s, p, 1, ceil)
    assert axis.size_out == y.shape[-1]
    divisor = axis.padded_sizes() if include_pad else np.maximum(axis.fan_in(), 1)
    np.testing.assert_allclose(_reference_sum(axis, x[0, 0].numpy()) / divisor, y[0, 0].numpy(),
                               rtol=1e-12, atol=1e-12)


@many
@given(h=st.integers(1, 12), w=st.integers(1, 12), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)), p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)), ceil=st.booleans(), include_pad=st.booleans())
def test_pool2d_shapes_and_separable_divisors_match_torch(h, w, k, s, p, d, ceil, include_pad):
    x = torch.randn(1, 1, h, w, generator=torch.Generator().manual_seed(h * 31 + w), dtype=torch.float64)
    for module in (nn.MaxPool2d(k, s, p, d, ceil_mode=ceil),
                   nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include_pad)):
        y = _torch_or_none(lambda: module(x))
        if y is None:
            with pytest.raises(ValueError):
                geo.module_axes(module, (h, w))
            continue
        ay, ax = geo.module_axes(module, (h, w))
        assert (ay.size_out, ax.size_out) == tuple(y.shape[2:])
        if isinstance(module, nn.AvgPool2d):  # torch's divisor is a product of one per axis
            div = [a.padded_sizes() if include_pad else np.maximum(a.fan_in(), 1) for a in (ay, ax)]
            ref = (ay.matrix() / div[0][:, None]) @ x[0, 0].numpy() @ (ax.matrix() / div[1][:, None]).T
            np.testing.assert_allclose(ref, y[0, 0].numpy(), rtol=1e-12, atol=1e-12)


@many
@given(n=st.integers(1, 16), out=st.integers(1, 20), seed=st.integers(0, 1000))
def test_adaptive_windows_rebuild_torchs_output_also_when_growing(n, out, seed):
    x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (axis,) = geo.adaptive_axes((n,), out)
    assert axis.size_out == out
    assert np.all(axis.fan_in() >= 1) and np.all(axis.padded_sizes() == axis.fan_in())
    mean = _reference_sum(axis, x[0, 0].numpy()) / axis.fan_in()
    np.testing.assert_allclose(mean, F.adaptive_avg_pool1d(x, out)[0, 0].numpy(), rtol=1e-12, atol=1e-12)
    o, _, i = axis.taps()
    top = np.full(out, -np.inf)
    np.maximum.at(top, o, x[0, 0].numpy()[i])
    np.testing.assert_array_equal(top, F.adaptive_max_pool1d(x, out)[0, 0].numpy())


def test_adaptive_golden_windows():
    # n = 5 to 3: [floor(0), ceil(5/3)) = [0, 2), [floor(5/3), ceil(10/3)) = [1, 4), [3, 5)
    (axis,) = geo.adaptive_axes((5,), 3)
    assert axis.starts().tolist() == [0, 1, 3] and axis.ends().tolist() == [2, 4, 5]
    # n = 2 to 5 (growing): [floor(2 o / 5), ceil(2 (o + 1) / 5)); the middle window holds both
    (axis,) = geo.adaptive_axes((2,), 5)
    assert axis.starts().tolist() == [0, 0, 0, 1, 1] and axis.ends().tolist() == [1, 1, 2, 2, 2]
    # None keeps the input's size
    assert geo.output_spatial(nn.AdaptiveAvgPool2d((None, 2)), (7, 5)) == (7, 2)


@pytest.mark.parametrize("n, k, s, p, expected", [
    # ceil(5 / 2) + 1 = 4 windows would start at -1, 1, 3, 5; the last starts at 5 = n, in the
    # right padding, so it is dropped
    (5, 2, 2, 1, 3),
    # ceil(3 / 2) + 1 = 3 windows start at 0, 2, 4: the last starts inside, kept (floor: 2)
    (5, 2, 2, 0, 3),
    # ceil(4 / 3) + 1 = 3 windows start at -1, 2, 5: 5 >= n, dropped
    (4, 2, 3, 1, 2),
])
def test_ceil_mode_golden_last_window_must_start_inside(n, k, s, p, expected):
    assert geo.pool_output_size(n, k, s, p, ceil_mode=True) == expected
    assert F.max_pool1d(torch.zeros(1, 1, n), k, s, p, ceil_mode=True).shape[-1] == expected


# -- fan-in and fan-out against brute force --------------------------------------------------

@many
@given(n=st.integers(1, 16), k=st.integers(1, 5), s=st.integers(1, 3), d=st.integers(1, 3),
       padding=paddings)
def test_axis_fan_in_and_fan_out_equal_convolutions_of_ones(n, k, s, d, padding):
    try:
        (axis,) = geo.conv_axes((n,), k, s, padding, d)
    except ValueError:
        return
    ones_k = torch.ones(1, 1, k, dtype=torch.float64)
    padded = F.pad(torch.ones(1, 1, n, dtype=torch.float64), (axis.pad_lo, axis.pad_hi))
    fan_in = F.conv1d(padded, ones_k, stride=s, dilation=d)[0, 0]
    # transposed convolution of ones over the padded input, cut back to the input (sinabs)
    spread = F.conv_transpose1d(torch.ones(1, 1, axis.size_out, dtype=torch.float64), ones_k,
                                stride=s, dilation=d)[0, 0]
    spread = F.pad(spread, (0, n + axis.pad_lo + axis.pad_hi - spread.numel()))
    fan_out = spread[axis.pad_lo:axis.pad_lo + n]
    assert axis.fan_in().tolist() == fan_in.long().tolist()
    assert axis.fan_out().tolist() == fan_out.long().tolist()
    assert np.array_equal(axis.fan_out(), (axis.reach() >= 0).sum(1))
    r = axis.reach()
    o, j, i = axis.taps()
    assert np.array_equal(r[i, j], o) and (r >= 0).sum() == o.size


@many
@given(h=st.integers(3, 10), w=st.integers(3, 10), k=st.sampled_from([1, 2, 3, 4, (2, 3), (4, 1)]),
       stride=st.integers(1, 2), dilation=st.integers(1, 2), groups=st.sampled_from([1, 2]),
       padding=st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"])),
       conv1d=st.booleans(), seed=st.integers(0, 1000))
def test_fanout_equals_a_transposed_convolution_of_the_weight_mask(h, w, k, stride, dilation, groups,
                                                                   padding, conv1d, seed):
    if padding == "same":
        stride = 1
    torch.manual_seed(seed)
    if conv1d:
        conv = nn.Conv1d(4, 6, k if isinstance(k, int) else k[0], stride, padding, dilation, groups)
        shape = (4, h)
    else:
        conv = nn.Conv2d(4, 6, k, stride, padding, dilation, groups)
        shape = (4, h, w)
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) < 0.6).float())  # some synapses absent
    x = torch.ones(1, *shape, dtype=torch.float64, requires_grad=True)
    mask = (conv.weight != 0).double()
    op = F.conv1d if conv1d else F.conv2d
    y = _torch_or_none(lambda: op(x, mask, None, conv.stride, conv.padding, conv.dilation, groups))
    if y is None:
        return
    (brute,) = torch.autograd.grad(y.sum(), x)  # d(sum of outputs)/d(input) = transposed conv of ones
    assert torch.equal(fanout(conv, shape, tuple(y.shape[1:])), brute[0])


def test_window_sum_counts_every_pool_window_exactly():
    x = torch.rand(2, 3, 7, 6, dtype=torch.float64)
    pool = nn.AvgPool2d(3, 2, 1, ceil_mode=True)
    torch.testing.assert_close(window_sum(x, geo.module_axes(pool, (7, 6))),
                               F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, divisor_override=1),
                               rtol=1e-12, atol=1e-12)
    grow = geo.adaptive_axes((7, 6), (9, 4))
    sizes = [a.fan_in() for a in grow]
    torch.testing.assert_close(window_sum(x, grow) / torch.from_numpy(np.outer(*sizes)),
                               F.adaptive_avg_pool2d(x, (9, 4)), rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), ceil=st.booleans(), include_pad=st.booleans(),
       grow=st.tuples(st.integers(1, 12), st.integers(1, 12)))
def test_synapse_matrices_of_pools_equal_torch(h, w, k, s, p, ceil, include_pad, grow):
    from snnedge.interop.sparse_maps import module_matrix
    x = torch.rand(2, h, w, dtype=torch.float64)
    for module in (nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include_pad),
                   nn.AvgPool1d(k, s, p, ceil_mode=ceil, count_include_pad=include_pad),
                   nn.AdaptiveAvgPool2d(grow), nn.AdaptiveAvgPool1d(grow[0])):
        inp = x[:, 0] if isinstance(module, (nn.AvgPool1d, nn.AdaptiveAvgPool1d)) else x
        y = _torch_or_none(lambda: module(inp[None])[0])
        if y is None:
            continue
        m = module_matrix(module, tuple(inp.shape), tuple(y.shape), "pool")
        torch.testing.assert_close(torch.from_numpy(m @ inp.reshape(-1).numpy()), y.reshape(-1),
                                   rtol=1e-12, atol=1e-12)


def test_docstring_examples_run():
    import doctest
    result = doctest.testmod(geo, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# -- errors ----------------------------------------------------------------------------------

def test_errors_name_the_layer_and_the_fix():
    with pytest.raises(ValueError, match=r"layer 'conv' \(Conv2d\) has padding='same' with stride "
                                         r"\(2, 2\); PyTorch defines 'same' for stride 1 only"):
        conv = nn.Conv2d(1, 1, 3, padding=1, stride=2)
        conv.padding = "same"
        geo.module_axes(conv, (8, 8), "conv")
    with pytest.raises(ValueError, match=r"layer 'p' \(MaxPool2d\) pads 2 on axis 0 with kernel 3; "
                                         r"PyTorch allows at most half the kernel \(1\)"):
        geo.module_axes(nn.MaxPool2d(3, padding=2), (8, 8), "p")
    with pytest.raises(ValueError, match=r"spans 5 but spatial axis 1 of the input has 4"):
        geo.conv_axes((8, 4), 5)
    with pytest.raises(ValueError, match=r"The 'padding' of .* must be an int, a tuple of ints, "
                                         r"'valid' or 'same'. Got 'full' instead"):
        geo.conv_axes((8,), 3, padding="full")
    with pytest.raises(ValueError, match=r"The 'stride' of .* must be an int >= 1"):
        geo.pool_axes((8,), 3, 0)
    with pytest.raises(TypeError, match="has no windows"):
        geo.module_axes(nn.ReLU(), (8,))


# -- padding="same" from end to end -------------------------------------------------------------

def _same_net() -> snnedge.SpikingNetwork:
    torch.manual_seed(0)
    return snnedge.sequential(
        nn.Conv2d(1, 4, 3, padding="same"), snnedge.IF(threshold=0.5),
        nn.Conv2d(4, 6, 4, padding="same", dilation=1), snnedge.IF(threshold=0.5),
        nn.Conv2d(6, 6, 2, padding="same", dilation=3), snnedge.IF(threshold=0.5),
        nn.AvgPool2d(3, 2, 1, ceil_mode=True), nn.Flatten(), nn.Linear(6 * 5 * 5, 10)).double()


@pytest.mark.parametrize("backend", ["native", "scipy", "torch"])
def test_event_conv_with_same_padding_equals_the_dense_convolution(backend):
    if backend == "native" and snnedge.events.native_kernel() is None:
        pytest.skip("the compiled kernel is not built")
    for k, d in [(3, 1), (4, 1), (4, 3), ((2, 5), (2, 1))]:
        conv = nn.Conv2d(3, 5, k, padding="same", dilation=d).double()
        x = (torch.rand(2, 3, 9, 8, dtype=torch.float64) < 0.3).double()
        with torch.no_grad():
            torch.testing.assert_close(event_conv2d(conv, x, backend=backend), conv(x),
                                       rtol=0, atol=1e-12)


def test_simulate_same_padding_dense_event_auto_agree_exactly_in_float64():
    net = _same_net()
    x = torch.rand(6, 1, 9, 9, dtype=torch.float64)
    runs = {e: snnedge.simulate(net, x, timesteps=8, engine=e, dtype=torch.float64)
            for e in ("dense", "event", "auto")}
    ref = runs["dense"]
    assert sum(ref.spike_counts.values()) > 0
    for r in runs.values():
        assert r.spike_counts == ref.spike_counts
        assert r.synaptic_events == ref.synaptic_events
        for k in ref.neuron_spike_counts:
            assert torch.equal(r.neuron_spike_counts[k], ref.neuron_spike_counts[k])
        assert torch.allclose(r.output, ref.output, atol=1e-9)  # sums in another order
    assert runs["event"].engine == "event"
    # synaptic events of layer '2' = spikes of '1' x fan-out; a spiking input at the border
    # of a "same" convolution reaches fewer outputs than one in the middle
    f = fanout(net.layer("2"), (4, 9, 9), (6, 9, 9))
    assert f[0, 0, 0] < f[0, 4, 4]


def test_synaptic_events_of_same_padding_equal_spikes_times_fanout():
    torch.manual_seed(1)
    net = snnedge.sequential(nn.Conv2d(1, 2, 4, padding="same"), snnedge.IF(threshold=0.3),
                             nn.Conv2d(2, 3, 4, padding="same"), snnedge.IF()).double()
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    res = snnedge.simulate(net, x, timesteps=1, engine="dense", dtype=torch.float64)
    with torch.no_grad():
        spikes = (net.layer("0")(x) >= 0.3).double()[0]  # one step, v = I: spike where I >= theta
    assert res.spike_counts["1"] == int(spikes.sum())
    brute = x.new_zeros(2, 6, 6, requires_grad=True)
    with torch.enable_grad():
        y = F.conv2d(brute + 1, (net.layer("2").weight != 0).double(), padding="same")
        (f,) = torch.autograd.grad(y.sum(), brute)
    assert res.synaptic_events["2"] == pytest.approx(float((spikes * f).sum()), abs=1e-9)


def test_mapping_reads_same_padding_exactly():
    from neuromorphic_targets import get_profile, map_network
    from neuromorphic_targets.graph import NetworkGraph
    net = _same_net()
    graph = NetworkGraph(net, (1, 9, 9))
    pop = graph.population("3")  # fed by the 4x4 "same" convolution of 4 channels
    with torch.no_grad():
        brute = F.conv2d(torch.ones(1, 4, 9, 9), (net.layer("2").weight != 0).float(), padding="same")
    assert torch.equal(graph.fan_in(pop), brute[0].round().long())
    for profile in ("truenorth", "dynap-cnn"):
        m = map_network(net, get_profile(profile), input_shape=(1, 9, 9))
        assert m.cores > 0


def test_converted_cnn_with_same_padding_simulates():
    from converters import convert
    torch.manual_seed(2)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding="same"), nn.ReLU(),
                        nn.Conv2d(4, 4, 4, padding="same"), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 10)).eval()
    x = torch.rand(8, 1, 8, 8)
    for model in (ann, torch.export.export(ann, (x[:1],))):
        snn = convert(model, calibration=x)
        dense = snnedge.simulate(snn, x, timesteps=16, engine="dense", dtype=torch.float64)
        event = snnedge.simulate(snn, x, timesteps=16, engine="event", dtype=torch.float64)
        assert dense.spike_counts == event.spike_counts and sum(dense.spike_counts.values()) > 0
        assert dense.synaptic_events == event.synaptic_events


def test_nir_round_trip_keeps_same_padding(tmp_path):
    pytest.importorskip("nir")
    torch.manual_seed(3)
    net = snnedge.sequential(nn.Conv2d(1, 4, 3, padding="same"), snnedge.IF(threshold=0.5),
                             nn.Conv2d(4, 6, 4, padding="same", dilation=3), snnedge.IF(threshold=0.5),
                             nn.Flatten(), nn.Linear(6 * 9 * 9, 10)).double()
    x = torch.rand(3, 1, 9, 9, dtype=torch.float64)
    snnedge.to_nir(net, tmp_path / "same.nir", input_shape=(1, 9, 9))
    back = snnedge.from_nir(tmp_path / "same.nir", reset="subtract")
    a = snnedge.simulate(net, x, timesteps=6, dtype=torch.float64)
    b = snnedge.simulate(back.double(), x, timesteps=6, dtype=torch.float64)
    assert a.spike_counts == b.spike_counts and torch.equal(a.output, b.output)
