"""The compiled count max pool (snnedge/count_pool.py, ``count_max`` in _event_kernels.c)
against the tensor code of :class:`converters.maxpool.SpikingMaxPool2d`, bit for bit, on every
instruction set this CPU runs; the engines' in-place protocol (``forward_block_into``); the
cached parameter maps of scalar thresholds; and engine "auto" choosing again every block."""
import os

import pytest
import torch
from torch import nn

import converters.maxpool as mp
import snnedge
import snnedge.events as ev
from converters.maxpool import SpikingAdaptiveMaxPool2d, SpikingMaxPool2d
from snnedge.count_pool import native_count_max_pool
from snnedge.executor import DENSITY_SAMPLE, input_density
from snnedge.geometry import module_axes

native = pytest.mark.skipif(os.environ.get("SNNEDGE_NATIVE") == "0" or ev.native_kernel() is None,
                            reason="the compiled kernels are off or not built")

WINDOWS = [  # kernel, stride, padding, dilation, ceil_mode
    (2, 2, 0, 1, False), (3, 2, 0, 1, False), (3, 2, 1, 1, False), (3, 2, 0, 1, True),
    (3, 1, 1, 1, False), (2, 1, 0, 2, False), (3, 3, 1, 1, True), ((2, 3), (1, 2), (1, 0), 1, False)]


def tensor_path(pool, x, state, steps):
    """The module's tensor code (the kernel switched off)."""
    saved = mp.native_count_max_pool
    mp.native_count_max_pool = lambda *a, **k: None
    try:
        return pool.forward_block(x, state, steps)
    finally:
        mp.native_count_max_pool = saved


def inputs(dtype, layout, analog, shape=(5, 2, 7, 9, 11), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) if analog else \
        (torch.rand(shape, generator=g) < 0.3).to(dtype)
    if layout == "channels_last":
        x = torch.stack([t.contiguous(memory_format=torch.channels_last) for t in x])
    return x


@native
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("analog", [False, True])
def test_kernel_equals_the_tensor_code_bit_for_bit(isa, window, dtype, layout, analog):
    pool = SpikingMaxPool2d(*window)
    x = inputs(dtype, layout, analog)
    state = pool.initial_state(x[0])
    axes = module_axes(pool, x.shape[-2:])
    # two blocks, so that the second starts from a state the first left
    ref1, ref_state = tensor_path(pool, x[:3], state, 3)
    ref2, ref_state = tensor_path(pool, x[3:], ref_state, 2)
    got1 = native_count_max_pool(x[:3], *state, axes)
    assert got1 is not None, "the kernel should apply here"
    got2 = native_count_max_pool(x[3:], *got1[1:], axes)
    assert torch.equal(got1[0], ref1) and torch.equal(got2[0], ref2)
    assert torch.equal(got2[1], ref_state[0]) and torch.equal(got2[2], ref_state[1])
    assert got1[0].stride()[1:] == ref1.stride()[1:] or layout == "channels_last"
    # the module's own forward_block takes the kernel and gives the same
    out, _ = pool.forward_block(x[:3], state, 3)
    assert torch.equal(out, ref1)


@native
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels", [1, 13, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_maps_of_both_layouts_take_the_channels_last_loop(isa, batch, channels, dtype, monkeypatch):
    """A 1 x 1 map (or one channel) is contiguous and channels-last at once: the kernel then
    runs whole vectors of channels per sample (GoogLeNet's pools on 832 channels of 1 x 1),
    with the tensor code's values; maps of one layout keep theirs."""
    pool = SpikingMaxPool2d(3, 1, 1)
    size = 1 if channels > 1 else 5
    x = inputs(dtype, "nchw", False, shape=(4, batch, channels, size, size), seed=2)
    assert x[0].is_contiguous() and x[0].is_contiguous(memory_format=torch.channels_last)
    state = pool.initial_state(x[0])
    ref, ref_state = tensor_path(pool, x, state, 4)
    calls = []
    kernel = ev.native_kernel()
    monkeypatch.setattr(mp, "native_count_max_pool", native_count_max_pool)
    import snnedge.count_pool as cp
    monkeypatch.setattr(cp, "run_split", lambda fn, parts: [calls.append(p) or fn(*p) for p in parts])
    got = native_count_max_pool(x, *state, module_axes(pool, x.shape[-2:]))
    assert got is not None and torch.equal(got[0], ref)
    assert torch.equal(got[1], ref_state[0]) and torch.equal(got[2], ref_state[1])
    # each part: 5 pointers and flags, p0, p1, c0, c1, steps, x_step, out_step, h, w, c, ...
    assert calls and all(p[6] - p[5] <= batch and p[14] == channels for p in calls), calls
    assert kernel is ev.native_kernel()


@native
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("batch", [1, 3])
def test_kernel_split_over_threads_equals_one_thread(layout, batch):
    """Large maps run on two threads (samples, or channels of one channels-last sample)."""
    pool = SpikingMaxPool2d(3, 2, 1)
    x = inputs(torch.float32, layout, False, shape=(4, batch, 64, 56, 56), seed=1)
    state = pool.initial_state(x[0])
    axes = module_axes(pool, x.shape[-2:])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native_count_max_pool(x, *state, axes)
        torch.set_num_threads(2)
        two = native_count_max_pool(x, *state, axes)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    assert torch.equal(one[0], tensor_path(pool, x, state, 4)[0])


@native
def test_forward_block_leaves_the_given_state_and_into_updates_it_in_place():
    pool = SpikingMaxPool2d(2)
    x = inputs(torch.float32, "channels_last", False, shape=(3, 1, 8, 6, 6))
    acc, prev = pool.initial_state(x[0])
    acc.add_(1.0)
    before = (acc.clone(), prev.clone())
    out, (acc2, prev2) = pool.forward_block(x, (acc, prev), 3)
    assert torch.equal(acc, before[0]) and torch.equal(prev, before[1])  # untouched
    assert acc2.data_ptr() != acc.data_ptr()
    # the engines' protocol: their own state, updated in place; the last output overwritten
    out_into, (acc3, prev3) = pool.forward_block_into(x, (acc, prev), 3)
    assert acc3.data_ptr() == acc.data_ptr() and prev3.data_ptr() == prev.data_ptr()
    assert torch.equal(out_into, out) and torch.equal(acc3, acc2) and torch.equal(prev3, prev2)
    again, _ = pool.forward_block_into(x, (acc3, prev3), 3, out=out_into)
    assert again.data_ptr() == out_into.data_ptr()


def test_kernel_declines_what_it_does_not_run():
    pool = SpikingMaxPool2d(2)
    x = torch.rand(2, 1, 3, 4, 4)
    state = pool.initial_state(x[0])
    axes = module_axes(pool, x.shape[-2:])
    assert native_count_max_pool(x.to(torch.float16), *[s.half() for s in state], axes) is None
    assert native_count_max_pool(x.requires_grad_(), *state, axes) is None  # training: autograd
    adaptive = SpikingAdaptiveMaxPool2d(3)
    assert native_count_max_pool(x.detach(), *adaptive.initial_state(x[0]),
                                 module_axes(adaptive, x.shape[-2:])) is None
    # the module still pools (tensor code) where the kernel declines
    out = pool(torch.rand(2, 1, 3, 4, 4, dtype=torch.float16).float().requires_grad_())
    assert out.shape == (2, 1, 3, 2, 2) and out.requires_grad


def test_simulate_with_max_pools_equals_the_tensor_code():
    """A converted network with overlapping, padded max pools simulates the same with the
    kernel (in place, in the engine) as with the module's tensor code."""
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(1, 8, 3, padding=1), snnedge.IF(threshold=0.6),
                             SpikingMaxPool2d(3, 2, 1), nn.Conv2d(8, 8, 3), snnedge.IF(threshold=0.6),
                             SpikingMaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(8 * 2 * 2, 5))
    x = torch.rand(6, 1, 12, 12, dtype=torch.float64)
    net = net.double()
    got = snnedge.simulate(net, x, timesteps=12, block_steps=5, engine="dense")
    saved = mp.native_count_max_pool
    mp.native_count_max_pool = lambda *a, **k: None
    try:
        ref = snnedge.simulate(net, x, timesteps=12, block_steps=5, engine="dense")
    finally:
        mp.native_count_max_pool = saved
    assert got.spike_counts == ref.spike_counts and torch.equal(got.output, ref.output)
    assert sum(got.spike_counts.values()) > 0


def test_scalar_parameter_maps_are_kept_by_value_and_bounded(monkeypatch):
    monkeypatch.setattr(ev, "_SCALAR_MAPS", type(ev._SCALAR_MAPS)())
    v = torch.zeros(2, 3, 4)
    a = ev.parameter_maps(v, 1.5, None)
    assert a[1] is None and torch.equal(a[0], torch.full((1, 3, 4), 1.5))
    assert ev.parameter_maps(v, 1.5, None)[0] is a[0]  # kept
    b = ev.parameter_maps(v, 2.0, 0.5)  # other values: made again
    assert torch.equal(b[0], torch.full((1, 3, 4), 2.0)) and torch.equal(b[1], torch.full((1, 3, 4), 0.5))
    w = torch.zeros(5, 3, 4)  # another membrane of the same sample shape and layout: shared
    assert ev.parameter_maps(w, 2.0, 0.5)[0] is b[0]
    assert ev.parameter_maps(torch.zeros(2, 3, 4, dtype=torch.float64), 2.0, 0.5)[0].dtype == torch.float64
    cl = torch.zeros(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)  # another order
    m = ev.parameter_maps(cl, 2.0, None)[0]
    assert m.stride()[1:] == cl.stride()[1:] and torch.equal(m, torch.full((1, 3, 4, 5), 2.0))
    # at most SCALAR_MAP_BYTES: the least recently used go first
    monkeypatch.setattr(ev, "SCALAR_MAP_BYTES", 3 * 12 * 4)
    for t in (3.0, 4.0, 5.0, 6.0):
        ev.parameter_maps(v, t, None)
    assert [k[0] for k in ev._SCALAR_MAPS] == [4.0, 5.0, 6.0]
    big = torch.zeros(1, 100)  # one map over the limit is still kept, alone
    assert torch.equal(ev.parameter_maps(big, 7.0, None)[0], torch.full((1, 100), 7.0))
    assert list(ev._SCALAR_MAPS)[0][0] == 7.0 and len(ev._SCALAR_MAPS) == 1
    # tensor thresholds are not kept (they may change in place)
    theta = torch.tensor([1.0, 2.0, 3.0]).view(3, 1)
    m = ev.parameter_maps(v, theta, None)[0]
    assert torch.equal(m[0, :, 0], torch.tensor([1.0, 2.0, 3.0]))


def test_input_density_samples_large_inputs_and_counts_small_ones_exactly():
    g = torch.Generator().manual_seed(0)
    small = (torch.rand(4, 100, generator=g) < 0.2).float()
    assert input_density(small) == float(torch.count_nonzero(small)) / small.numel()
    big = (torch.rand(4, 64, 64, 64, generator=g) < 0.15).float()
    assert big.numel() >= 2 * DENSITY_SAMPLE
    exact = float(torch.count_nonzero(big)) / big.numel()
    assert input_density(big) == input_density(big)  # deterministic
    assert abs(input_density(big) - exact) < 0.005
    cl = big.contiguous(memory_format=torch.channels_last)
    assert abs(input_density(cl) - exact) < 0.005
    strided = big[:, :, ::2]  # neither layout: counted exactly
    assert input_density(strided) == float(torch.count_nonzero(strided)) / strided.numel()
    assert input_density(torch.zeros(0, 3)) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 70), (4, 64, 64, 64), (2, 7, 300, 300)])
def test_input_density_kernel_counts_as_torch_does(monkeypatch, dtype, shape):
    """The compiled count (``count_nonzero`` in _event_kernels.c) and torch.count_nonzero
    count the same values of the same sample, NaN as non-zero and -0.0 as zero."""
    if ev.native_kernel() is None:
        pytest.skip("no compiled kernels")
    g = torch.Generator().manual_seed(1)
    x = ((torch.rand(shape, generator=g) < 0.13) * torch.rand(shape, generator=g)).to(dtype)
    flat = x.view(-1)
    flat[5], flat[6] = float("nan"), -0.0
    compiled = input_density(x)
    monkeypatch.setenv("SNNEDGE_NATIVE", "0")
    assert input_density(x) == compiled
    if x.numel() < 2 * DENSITY_SAMPLE:
        assert compiled == float(torch.count_nonzero(x)) / x.numel()


def test_auto_chooses_again_every_block(monkeypatch, limit_policy):
    """Input spikes dense in the first block and sparse in the second: "auto" runs the layer
    dense, then on events; the choice it reports (and later batches keep) is the last
    block's. Results equal the dense engine's."""
    import snnedge.executor as ex
    from snnedge.events import event_density_limit
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Linear(64, 600), snnedge.IF(), nn.Linear(600, 3)).double()
    g = torch.Generator().manual_seed(0)
    x = torch.cat([(torch.rand(4, 8, 64, generator=g) < 0.9), (torch.rand(4, 8, 64, generator=g) < 0.01)],
                  dim=1).double()  # (N, T, features): steps 0-7 dense, 8-15 sparse
    paths = []
    real = ex.event_apply
    monkeypatch.setattr(ex, "event_apply", lambda m, x: paths.append(x.shape[0]) or real(m, x))
    res = snnedge.simulate(net, x, encoding="sequence", engine="auto", block_steps=8)
    limit = event_density_limit(net.layer("0"))
    assert res.extra["input_density"][0]["0"] < limit < 0.9
    assert res.extra["event_layers"] == [["0"]]
    assert paths == [8 * 4]  # the second block only (8 steps x 4 samples)
    monkeypatch.setattr(ex, "event_apply", real)
    ref = snnedge.simulate(net, x, encoding="sequence", engine="dense", block_steps=8)
    assert res.spike_counts == ref.spike_counts and torch.allclose(res.output, ref.output, atol=1e-10)


def test_spikes_over_the_current_only_where_nothing_else_reads_it(monkeypatch):
    """A neuron layer writes its spikes over its input current when that input is a fresh
    synaptic output read by nobody else; never over a view of a tensor another layer reads
    (an Identity of a convolution with two consumers), nor over a static or kept value. The
    results equal those of a run that never does it, bit for bit."""
    import snnedge.executor as ex
    from snnedge.network import Node, SpikingNetwork
    torch.manual_seed(0)
    net = SpikingNetwork([
        Node("conv", nn.Conv2d(1, 6, 3, padding=1)),
        Node("if0", snnedge.IF(threshold=0.6)),
        Node("conv1", nn.Conv2d(6, 6, 3, padding=1), ("if0",)),
        Node("view", nn.Identity(), ("conv1",)),             # a view of conv1's output ...
        Node("if1", snnedge.IF(threshold=0.5), ("view",)),
        Node("scale", snnedge.Scale(torch.linspace(0.5, 1.5, 6)), ("conv1",)),  # ... which this reads too
        Node("add", snnedge.Add(), ("if1", "scale")),
        Node("if2", snnedge.IF(threshold=0.7), ("add",)),   # a fresh Add output: donated
        Node("flat", nn.Flatten(), ("if2",)),
        Node("fc", nn.Linear(6 * 8 * 8, 4), ("flat",)),
    ]).double()
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    seen = {}
    real = ex.Executor._donated

    def spy(self, name, keep):
        seen[name] = real(self, name, keep)
        return seen[name]

    monkeypatch.setattr(ex.Executor, "_donated", spy)
    got = snnedge.simulate(net, x, timesteps=10, block_steps=3, engine="dense")
    assert seen == {"if0": False, "if1": False, "if2": True}  # if0: static input (direct encoding)
    monkeypatch.setattr(ex.Executor, "_donated", lambda self, name, keep: False)
    ref = snnedge.simulate(net, x, timesteps=10, block_steps=3, engine="dense")
    assert got.spike_counts == ref.spike_counts and torch.equal(got.output, ref.output)
    assert sum(got.spike_counts.values()) > 0


def test_auto_leaves_layers_with_large_weights_dense(monkeypatch):
    """The event path keeps a second copy of a layer's weights: above EVENT_WEIGHT_BYTES
    "auto" picks it only where the caller accepts the copy (``large``, see the next test;
    engine="event" always does, as asked)."""
    layer = nn.Linear(300, 200)
    rule = ev.event_density_limit(layer)
    assert rule > 0
    monkeypatch.setattr(ev, "EVENT_WEIGHT_BYTES", 300 * 200 * 4 - 1)
    assert ev.event_density_limit(layer) == 0.0
    monkeypatch.setattr(ev, "EVENT_WEIGHT_BYTES", 300 * 200 * 4)
    assert ev.event_density_limit(layer) > 0
    assert ev.event_density_limit(layer, large=True) > 0 and ev.event_path_exists(layer, large=True)
    monkeypatch.setattr(ev, "EVENT_WEIGHT_BYTES", 300 * 200 * 4 - 1)
    assert ev.event_density_limit(layer, large=True) == rule  # unless the caller accepts the copy


@pytest.mark.parametrize("share, taken", [(0.5, False), (0.1, True)])
def test_auto_copies_large_weights_only_where_they_carry_much_of_the_work(monkeypatch, limit_policy,
                                                                          share, taken):
    """A layer above EVENT_WEIGHT_BYTES takes the event path under "auto" only where it does at
    least LARGE_COPY_SHARE of the network's multiply-accumulates per sample: the 60 -> 1000
    layer does 60,000 of 640 * 144 + 38,400 + 60,000 + 4,000 = 194,560 (31 %). Results equal
    the dense engine's either way."""
    import snnedge.executor as ex
    import snnedge.path_choice as pc
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(16, 10, 3), snnedge.IF(), nn.Flatten(), nn.Linear(640, 60),
                             snnedge.IF(), nn.Linear(60, 1000), snnedge.IF(), nn.Linear(1000, 4)).double()
    big = net.layer("5")
    assert pc.large_layers(net, (16, 10, 10)) == frozenset()  # nothing above the cap
    monkeypatch.setattr(ev, "EVENT_WEIGHT_BYTES", 60 * 1000 * 8 - 1)  # float64: only layer "5"
    monkeypatch.setattr(pc, "LARGE_COPY_SHARE", share)
    assert pc.large_layers(net, (16, 10, 10)) == (frozenset({big}) if taken else frozenset())
    x = (torch.rand(3, 16, 10, 10) < 0.3).double() * 4
    paths = []
    real = ex.event_apply
    monkeypatch.setattr(ex, "event_apply", lambda m, x: paths.append(m) or real(m, x))
    res = snnedge.simulate(net, x, timesteps=8, engine="auto")
    assert (big in paths) == taken
    assert ("5" in res.extra["input_density"][0]) == taken  # measured only where it may be taken
    monkeypatch.setattr(ex, "event_apply", real)
    ref = snnedge.simulate(net, x, timesteps=8, engine="dense")
    assert res.spike_counts == ref.spike_counts and torch.allclose(res.output, ref.output, atol=1e-10)
