"""Split kernel calls on PyTorch's OpenMP threads and on Python threads
(:mod:`snnedge.kernel_threads`) give what one thread gives, bit for bit, for every compiled
kernel; ``parallel`` refuses bad calls before running anything; the mode can be chosen.

The splitting thresholds are lowered so that these small inputs are split, over 3 threads
(an odd count: uneven parts, and more threads than this machine may have cores)."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import converters.maxpool as mp
import snnedge
import snnedge.count_pool as cp
import snnedge.dense_paths as dp
import snnedge.events as ev
import snnedge.kernel_threads as kt
import snnedge.neurons as nm
import snnedge.training.neuron_grad as ng
from snnedge.geometry import module_axes

pytestmark = pytest.mark.skipif(os.environ.get("SNNEDGE_NATIVE") == "0" or ev.native_kernel() is None,
                                reason="the compiled kernels are off or not built")
OPENMP = kt.torch_libgomp() is not None
MODES = ["python", pytest.param("openmp", marks=pytest.mark.skipif(
    not OPENMP, reason="PyTorch does not run on a GNU OpenMP library here"))]


@pytest.fixture
def split(monkeypatch):
    """Runs a function on one thread, then split in the given mode; restores everything."""
    for module, name in [(ev, "NEURON_MIN_WORK"), (ev, "PARALLEL_MIN_WORK"), (ev, "OPENMP_MIN_WORK"),
                         (nm, "NEURON_MIN_WORK"),
                         (cp, "NEURON_MIN_WORK"), (ng, "BACKWARD_MIN_WORK"), (dp, "POOL_MIN_WORK")]:
        monkeypatch.setattr(module, name, 1)
    threads, previous = torch.get_num_threads(), kt.kernel_threads()
    parts_seen = []

    def counted(fn, parts):
        parts_seen.append(len(parts))
        return kt.run_split(fn, parts)
    for module in (ev, nm, cp, ng, dp):
        monkeypatch.setattr(module, "run_split", counted)

    def run(fn, mode):
        try:
            torch.set_num_threads(1)
            one = fn()
            torch.set_num_threads(3)
            kt.set_kernel_threads(mode)
            parts_seen.clear()
            many = fn()
            assert max(parts_seen, default=0) > 1, "the call was not split: the test tests nothing"
            return one, many
        finally:
            torch.set_num_threads(threads)
            kt.set_kernel_threads(previous)
    return run


def spikes(shape, dtype=torch.float32, seed=0, p=0.2):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).to(dtype)


def channels_last_ticks(x):
    x = torch.stack([t.contiguous(memory_format=torch.channels_last) for t in x])
    return x.as_strided(x.shape, (x[0].numel(), *x[0].stride()))


def same(a, b):
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_event_convolution(split, mode, dtype):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 40, 3, stride=2, padding=1).to(dtype)
    x = spikes((7, 6, 13, 12), dtype)
    with torch.no_grad():
        one, many = split(lambda: ev.event_conv2d(conv, x, backend="native"), mode)
    assert same(one, many) and one.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_event_linear_packed_in_chunks(split, mode, dtype, monkeypatch):
    # 11 rows over 3 threads, in groups of about two rows each (the weight packed by chunks)
    monkeypatch.setattr(ev, "LINEAR_GROUP_EVENTS", 100)
    monkeypatch.setattr(ev, "LINEAR_PACKED_ROWS", 11)
    packed = []
    run = ev._native_run
    monkeypatch.setattr(ev, "_native_run", lambda *a, **k: packed.append(k.get("packed", 0)) or run(*a, **k))
    torch.manual_seed(0)
    fc = nn.Linear(50, 130).to(dtype)
    x = spikes((11, 50), dtype)
    with torch.no_grad():
        one, many = split(lambda: ev.event_linear(fc, x, backend="native"), mode)
    assert same(one, many) and torch.allclose(one, fc(x), atol=1e-5) and all(packed)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("counting", [False, True])  # split by samples, or by neurons
def test_neuron_block(split, mode, counting):
    layer = snnedge.LIF(beta=[0.5, 0.9, 1.0], threshold=[0.4, 0.8, 1.1])
    current = channels_last_ticks(torch.rand(6, 5, 3, 9, 11) * 0.9 - 0.1)
    v0 = layer.initial_state(current[0])

    def run():
        counts = torch.zeros_like(v0[0]) if counting else None
        z, v = layer.forward_block(current, v0.clone(), 6, static=False, counts=counts)
        return (z, v) + ((counts,) if counting else ())
    with torch.no_grad():
        one, many = split(run, mode)
    assert same(one, many) and 0 < one[0].sum() < one[0].numel()


@pytest.mark.parametrize("mode", MODES)
def test_neurons_fused_with_their_pool(split, mode):
    layer = snnedge.IF(threshold=0.7)
    current = channels_last_ticks(torch.rand(4, 3, 5, 8, 12) * 0.9 - 0.1)
    v0 = layer.initial_state(current[0])

    def run():
        counts, v = torch.zeros_like(v0[0]), v0.clone()
        out, _ = layer.forward_block_pooled(current, v, 4, False, (2, 2), 4.0, counts=counts)
        return out, v, counts
    with torch.no_grad():
        one, many = split(run, mode)
    assert same(one, many) and one[0].sum() > 0


@pytest.mark.parametrize("mode", MODES)
def test_tiling_pool(split, mode):
    x = torch.randn(3, 5, 12, 24, generator=torch.Generator().manual_seed(6))
    pool = nn.AvgPool2d((2, 3))
    one, many = split(lambda: dp.pool_tiles(pool, x, (2, 3)), mode)
    assert same(one, many) and torch.equal(one, pool(x))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", [1, 4])  # one channels-last sample: split by channels
def test_count_max_pool(split, mode, batch):
    pool = mp.SpikingMaxPool2d(3, 2, 1)
    x = channels_last_ticks(spikes((3, batch, 48, 9, 11), seed=2, p=0.3))
    axes = module_axes(pool, x.shape[-2:])

    def run():
        state = pool.initial_state(x[0])
        return cp.native_count_max_pool(x, *state, axes)
    one, many = split(run, mode)
    assert same(one, many) and one[0].sum() > 0


@pytest.mark.parametrize("mode", MODES)
def test_training_backward(split, mode):
    layer = snnedge.LIF(beta=[0.8, 0.9, 0.95], threshold=[0.5, 0.6, 0.7]).double()
    current = torch.rand(7, 5, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    g = torch.randn(current.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def run():
        c = current.clone().requires_grad_(True)
        v0 = layer.initial_state(c[0]).requires_grad_(True)
        z, v = ng.NeuronBlock.apply(c, v0, layer.threshold_for(c[0]), layer.beta_for(c[0]),
                                    layer, 7, False, False)
        ((z * g).sum() + (v * g[0]).sum()).backward()
        return c.grad, v0.grad
    one, many = split(run, mode)
    assert same(one, many) and one[0].abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
def test_simulate_event_engine(split, mode):
    torch.manual_seed(5)
    net = snnedge.sequential(
        nn.Conv2d(1, 8, 3, padding=1), snnedge.IF(threshold=0.5), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), snnedge.LIF(beta=0.9, threshold=0.4), snnedge.SumPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 5))
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    one, many = split(lambda: snnedge.simulate(net, x, timesteps=10, engine="event", block_steps=4,
                                               progress=False), mode)
    assert torch.equal(one.output, many.output) and one.spike_counts == many.spike_counts


@pytest.mark.skipif(not OPENMP, reason="PyTorch does not run on a GNU OpenMP library here")
def test_parallel_runs_more_parts_than_threads_and_refuses_bad_calls():
    kernel = ev.native_kernel()
    x = torch.randn(10, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    out = torch.full((10, 4, 3, 3), float("nan"))
    parts = [(x.data_ptr(), out.data_ptr(), False, p, p + 1, 6, 6, 2, 2, 4.0) for p in range(40)]
    kernel.parallel("pool", parts, 3)  # 40 planes, one per part, on 3 threads
    assert torch.equal(out, nn.functional.avg_pool2d(x, 2))
    out.fill_(float("nan"))
    with pytest.raises(ValueError, match="unknown kernel"):
        kernel.parallel("conv3d", parts, 2)
    with pytest.raises(ValueError, match="pool: invalid sizes"):  # 7 does not tile 6
        kernel.parallel("pool", parts[:5] + [parts[5][:7] + (7, 7, 4.0)], 2)
    with pytest.raises(TypeError, match="part 1 is not a tuple"):
        kernel.parallel("pool", [parts[0], list(parts[1])], 2)
    assert torch.isnan(out).all(), "a refused call must not run any part"


def test_modes_are_checked_and_chosen_from_the_environment():
    with pytest.raises(ValueError, match="mode must be one of openmp, python"):
        kt.set_kernel_threads("pthreads")
    code = "import snnedge.kernel_threads as kt; print(kt.kernel_threads())"
    env = {**os.environ, "SNNEDGE_KERNEL_THREADS": "python"}
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert got.stdout.strip() == "python", got.stderr
    env["SNNEDGE_KERNEL_THREADS"] = "gpu"
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert got.returncode != 0 and "SNNEDGE_KERNEL_THREADS='gpu'" in got.stderr
    env.pop("SNNEDGE_KERNEL_THREADS")
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert got.stdout.strip() == ("openmp" if OPENMP else "python"), got.stderr
