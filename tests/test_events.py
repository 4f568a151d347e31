"""Event-driven kernels against the dense torch layers they replace."""
import os

import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st

import snnedge
from snnedge.dense_paths import pool_tiles, tiling_pool
import snnedge.events as ev
from snnedge.events import event_apply, event_conv2d, event_linear

# The compiled kernels are required unless turned off on purpose (SNNEDGE_NATIVE=0 runs the
# suite on the fallback paths).
needs_native = pytest.mark.skipif(os.environ.get("SNNEDGE_NATIVE") == "0",
                                  reason="SNNEDGE_NATIVE=0 turns the compiled kernels off")
BACKENDS = [pytest.param("native", marks=needs_native), "scipy", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
@given(seed=st.integers(0, 10_000), stride=st.integers(1, 3), padding=st.integers(0, 2),
       dilation=st.integers(1, 2), kernel=st.sampled_from([1, 2, 3, (3, 2)]), bias=st.booleans())
def test_event_conv_equals_the_dense_convolution(backend, seed, stride, padding, dilation, kernel, bias):
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(3, 5, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias).double()
    # binary spikes and non-binary sparse values (a sum pool of spikes)
    x = (torch.rand(4, 3, 9, 8, generator=g, dtype=torch.float64) < 0.2).double()
    x[1] *= 0.25
    with torch.no_grad():
        assert torch.allclose(event_conv2d(conv, x, backend=backend), conv(x), atol=1e-12)
        # a channels-last input is read in place and the output comes out channels-last
        got = event_conv2d(conv, x.contiguous(memory_format=torch.channels_last), backend=backend)
        assert torch.allclose(got, conv(x), atol=1e-12)
        assert got.is_contiguous(memory_format=torch.channels_last)


def test_event_conv_of_no_spikes_is_the_bias():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.zeros(2, 2, 5, 5)
    with torch.no_grad():
        assert torch.equal(event_conv2d(conv, x), conv.bias.view(1, -1, 1, 1).expand(2, 3, 5, 5))


def test_event_conv_follows_weight_updates():
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    x = (torch.rand(1, 1, 6, 6) < 0.3).float()
    with torch.no_grad():
        event_conv2d(conv, x)
        conv.weight.mul_(2)  # in place: the cached kernel matrix must be rebuilt
        assert torch.allclose(event_conv2d(conv, x), conv(x), atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [2, 40])  # a linear layer's whole rows, then its packed form
def test_event_layers_follow_a_bias_changed_alone(backend, rows):
    """Only the bias moves (as when only biases are trained): the weight's version stays, and
    a copy kept from before must not be used."""
    torch.manual_seed(0)
    conv, lin = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(6, 200)
    x = (torch.rand(2, 3, 5, 5) < 0.3).float()
    xl = (torch.rand(rows, 6) < 0.5).float()
    with torch.no_grad():
        event_conv2d(conv, x, backend=backend), event_linear(lin, xl, backend=backend)
        for change in (lambda b: b.add_(1.0), lambda b: setattr(b, "data", b.data * 3)):
            change(conv.bias), change(lin.bias)
            assert torch.allclose(event_conv2d(conv, x, backend=backend), conv(x), atol=1e-5)
            assert torch.allclose(event_linear(lin, xl, backend=backend), lin(xl), atol=1e-5)
        conv.bias, lin.bias = None, None  # and a bias that goes away
        assert torch.allclose(event_conv2d(conv, x, backend=backend), conv(x), atol=1e-5)
        assert torch.allclose(event_linear(lin, xl, backend=backend), lin(xl), atol=1e-5)


def test_grouped_conv_falls_back_to_dense():
    conv = nn.Conv2d(4, 4, 3, groups=2)
    x = (torch.rand(2, 4, 6, 6) < 0.3).float()
    with torch.no_grad():
        assert torch.equal(event_apply(conv, x), conv(x))


@pytest.mark.parametrize("module", [nn.AvgPool2d(2), nn.AvgPool2d((2, 3)), snnedge.SumPool2d(2),
                                    nn.AvgPool2d(3, stride=3)])
def test_tiling_pool_matches_torch_pooling(module):
    x = torch.randn(3, 2, 6, 12, dtype=torch.float64)
    kernel = tiling_pool(module, x.shape)
    assert kernel is not None
    assert torch.equal(pool_tiles(module, x, kernel), module(x))


@pytest.mark.parametrize("module, shape", [(nn.AvgPool2d(2, stride=1), (1, 1, 4, 4)),
                                           (nn.AvgPool2d(2, padding=1), (1, 1, 4, 4)),
                                           (nn.AvgPool2d(2), (1, 1, 5, 4)),
                                           (nn.AvgPool2d(2, divisor_override=3), (1, 1, 4, 4)),
                                           (nn.MaxPool2d(2), (1, 1, 4, 4))])
def test_pools_that_do_not_tile_keep_the_torch_path(module, shape):
    assert tiling_pool(module, shape) is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
def test_event_linear_equals_the_dense_layer(backend, bias):
    g = torch.Generator().manual_seed(1)
    fc = nn.Linear(30, 7, bias=bias).double()
    x = (torch.rand(5, 30, generator=g, dtype=torch.float64) < 0.1).double() * 0.5
    x[2] = 0  # a row with no spikes
    with torch.no_grad():
        assert torch.allclose(event_linear(fc, x, backend=backend), fc(x), atol=1e-12)


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="The 'backend' parameter must be one of 'native', 'scipy', 'torch'"):
        event_linear(nn.Linear(3, 2), torch.ones(1, 3), backend="mkl")


def test_scipy_kernel_and_its_public_fallback_agree(monkeypatch):
    import snnedge.events as ev
    import snnedge.sparse_product as sparse_product
    fc = nn.Linear(20, 4).double()
    x = (torch.rand(6, 20, dtype=torch.float64) < 0.2).double()
    with torch.no_grad():
        fast = ev.event_linear(fc, x, backend="scipy")
        monkeypatch.setattr(sparse_product, "_coo_kernel", lambda: None)
        slow = ev.event_linear(fc, x, backend="scipy")
        assert torch.equal(fast, slow) and torch.allclose(fast, fc(x), atol=1e-12)


def test_scipy_product_split_over_threads_gives_the_same_bits(monkeypatch):
    """The scipy product split at sample boundaries over the Python pool (snnedge.
    sparse_product) gives what one call gives."""
    import snnedge.events as ev
    import snnedge.sparse_product as sparse_product
    conv = nn.Conv2d(6, 8, 3, padding=1).double()
    x = (torch.rand(9, 6, 7, 7, dtype=torch.float64) < 0.2).double()
    threads = torch.get_num_threads()
    with torch.no_grad():
        one = ev.event_conv2d(conv, x, backend="scipy")
        monkeypatch.setattr(sparse_product, "PARALLEL_MIN_WORK", 1)
        jobs = []
        submit = sparse_product.submit
        monkeypatch.setattr(sparse_product, "submit", lambda *a: jobs.append(1) or submit(*a))
        torch.set_num_threads(3)
        try:
            split = ev.event_conv2d(conv, x, backend="scipy")
        finally:
            torch.set_num_threads(threads)
    assert jobs and torch.equal(one, split)


def test_event_engine_with_pools_matches_dense():
    torch.manual_seed(2)
    net = snnedge.sequential(
        nn.Conv2d(1, 6, 3, padding=1), snnedge.IF(threshold=0.5), nn.AvgPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), snnedge.IF(threshold=0.5), snnedge.SumPool2d(2),
        nn.Conv2d(8, 8, 3), snnedge.IF(threshold=0.5), nn.Flatten(), nn.Linear(8, 3)).double()
    x = torch.rand(3, 1, 12, 12, dtype=torch.float64)
    dense = snnedge.simulate(net, x, timesteps=12, engine="dense", progress=False, block_steps=5)
    event = snnedge.simulate(net, x, timesteps=12, engine="event", progress=False, block_steps=5)
    assert dense.spike_counts == event.spike_counts and dense.synaptic_events == event.synaptic_events
    assert all(torch.equal(dense.neuron_spike_counts[k], event.neuron_spike_counts[k]) for k in dense.spike_counts)
    assert torch.allclose(dense.output, event.output, atol=1e-9)
    assert sum(dense.spike_counts.values()) > 0


def test_threaded_split_gives_the_same_result(monkeypatch):
    import snnedge.events as ev
    conv = nn.Conv2d(8, 16, 3, padding=1).double()
    x = (torch.rand(12, 8, 10, 10, dtype=torch.float64) < 0.1).double()
    with torch.no_grad():
        single = ev.event_conv2d(conv, x)
        monkeypatch.setattr(ev, "PARALLEL_MIN_WORK", 1)
        monkeypatch.setattr(ev, "OPENMP_MIN_WORK", 1)
        threads = torch.get_num_threads()
        torch.set_num_threads(3)
        try:
            split = ev.event_conv2d(conv, x)
        finally:
            torch.set_num_threads(threads)
    assert torch.equal(single, split)
    assert torch.allclose(split, conv(x), atol=1e-12)


def test_event_density_limit_grows_with_the_work_per_event():
    from snnedge.events import EVENT_DENSITY_CAP, event_density_limit
    small, big = nn.Conv2d(32, 64, 3), nn.Conv2d(64, 128, 3)
    assert 0 < event_density_limit(small) < event_density_limit(big) <= EVENT_DENSITY_CAP
    assert event_density_limit(nn.Conv2d(8, 64, 3, stride=2)) < event_density_limit(nn.Conv2d(8, 64, 3))
    assert event_density_limit(nn.Linear(100, 4)) < event_density_limit(nn.Linear(100, 400))
    assert event_density_limit(nn.Conv2d(4, 4, 3, groups=2)) == 0.0  # no event path
    assert event_density_limit(nn.AvgPool2d(2)) == 0.0
    assert event_density_limit(big, "cuda") == 0.0  # GPUs: the event path never broke even
    # few input channels: the break-even falls with (in / 32)^2 (issue 18's event-frame nets)
    assert event_density_limit(nn.Conv2d(16, 64, 3)) == pytest.approx(576 / 3000 / 4)
    assert event_density_limit(nn.Conv2d(2, 64, 3)) == pytest.approx(576 / 3000 / 256)


@needs_native
def test_one_by_one_limits_grow_with_the_input_channels():
    import snnedge.events as ev
    # work per event (output channels) x (in / 128)^2, at most x 4, over 3000; capped at 0.2
    assert ev.event_density_limit(nn.Conv2d(1024, 128, 1)) == pytest.approx(128 * 4 / 3000)
    assert ev.event_density_limit(nn.Conv2d(32, 128, 1)) == pytest.approx(128 / 16 / 3000)
    assert ev.event_density_limit(nn.Conv2d(256, 64, 1, stride=2)) == pytest.approx(16 * 4 / 3000)
    assert ev.event_density_limit(nn.Conv2d(4096, 4096, 1)) == ev.EVENT_DENSITY_CAP
    assert ev.event_density_limit(nn.Conv2d(64, 64, 1)) < ev.event_density_limit(nn.Conv2d(256, 64, 1))


@needs_native
def test_event_density_limit_follows_the_kernel_in_use(monkeypatch):
    import snnedge.events as ev
    conv = nn.Conv2d(32, 64, 3)  # 576 units of work per input event
    assert ev.event_density_limit(conv) == pytest.approx(576 / 3000)
    monkeypatch.setattr(ev, "native_kernel", lambda: None)  # scipy's kernel breaks even lower
    assert ev.event_density_limit(conv) == pytest.approx(576 / 12000)


def test_fast_paths_match_plain_torch_modules():
    """Channels-last convolutions, tiling pools as strided sums and the counting in memory
    order (no-gradient simulation) give what the plain modules give (the differentiable run)."""
    torch.manual_seed(4)
    net = snnedge.sequential(
        nn.Conv2d(1, 6, 3, padding=1), snnedge.IF(threshold=0.4), nn.AvgPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), snnedge.IF(threshold=0.4, v_init=0.5), snnedge.SumPool2d(2),
        nn.Conv2d(8, 8, 3), snnedge.IF(threshold=0.4), nn.Flatten(), nn.Linear(8, 3)).double()
    x = torch.rand(5, 1, 12, 12, dtype=torch.float64)
    res = snnedge.simulate(net, x, timesteps=10, engine="dense", progress=False, block_steps=4)
    with torch.enable_grad():
        plain = net(x.unsqueeze(0).expand(10, *x.shape))  # (T, B, 3), no fast paths
    assert torch.allclose(res.output, plain.sum(0).detach(), atol=1e-10)
    assert torch.equal(res.step_predictions, plain.detach().cumsum(0).argmax(-1))
    assert sum(res.spike_counts.values()) > 0


@needs_native
def test_the_native_kernel_is_built_and_named_in_the_fallback_message(monkeypatch):
    import snnedge.events as ev
    assert ev.native_kernel() is not None, "snnedge/_event_kernels.c was not compiled at install"
    assert ev.native_kernel().isa() in ("avx512", "avx2+fma", "baseline")
    monkeypatch.setattr(ev, "native_kernel", lambda: None)
    conv = nn.Conv2d(2, 3, 3).double()
    x = (torch.rand(2, 2, 6, 6, dtype=torch.float64) < 0.3).double()
    with torch.no_grad():
        assert torch.allclose(ev.event_conv2d(conv, x), conv(x), atol=1e-12)  # scipy instead
        with pytest.raises(ValueError, match="'native' event backend is not built"):
            ev.event_conv2d(conv, x, backend="native")


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c_out, kernel, padding", [(70, 3, 1), (64, 1, 0), (33, (9, 9), 4), (5, (2, 3), 0)])
def test_native_kernel_chunks_tails_and_large_kernels(dtype, c_out, kernel, padding):
    # 64 float32 / 32 float64 output channels accumulate at a time (70 and 33 leave tails);
    # a 9x9 kernel has more taps (81) than the kernel collects in one part (64)
    torch.manual_seed(c_out)
    conv = nn.Conv2d(6, c_out, kernel, padding=padding).to(dtype)
    x = (torch.rand(3, 6, 11, 10, dtype=dtype) < 0.15).to(dtype) * torch.rand(3, 6, 11, 10, dtype=dtype)
    with torch.no_grad():
        got = event_conv2d(conv, x, backend="native")
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        assert torch.allclose(got, conv(x), atol=tol)
        fc = nn.Linear(66, c_out).to(dtype)
        v = (torch.rand(4, 66, dtype=dtype) < 0.1).to(dtype)
        assert torch.allclose(event_linear(fc, v, backend="native"), fc(v), atol=tol)


def test_a_linear_layer_keeps_one_copy_of_its_weight_on_the_native_path():
    # whole rows for a few rows, the packed form from LINEAR_PACKED_ROWS on; once packed, a
    # few rows take the packed form too, and a changed weight is laid out again
    if ev.native_kernel() is None:
        pytest.skip("the compiled kernels are off or not built")
    fc = nn.Linear(40, 100).double()
    gen = torch.Generator().manual_seed(0)
    few, many = [(torch.rand(n, 40, generator=gen) < 0.2).double() for n in (3, ev.LINEAR_PACKED_ROWS)]

    def forms():
        return [key[0] for key in ev._CACHE[fc] if key[0] != "bias_rows"]
    with torch.no_grad():
        for x, expected in [(few, ["w_rows"]), (many, ["w_chunks"]), (few, ["w_chunks"])]:
            assert torch.allclose(event_linear(fc, x, backend="native"), fc(x), atol=1e-12)
            assert forms() == expected
        fc.weight.mul_(2)  # the packed form is stale: a few rows lay out whole rows
        assert torch.allclose(event_linear(fc, few, backend="native"), fc(few), atol=1e-12)
        assert forms() == ["w_rows"]

