"""Every instruction-set copy of the compiled kernels (generic, AVX2, AVX-512: those this CPU
runs) against tensor references, bit for bit.

The convolution reference adds, for every output position, the bias and then the products
of the inputs with the weight rows in the kernel's order (tap by tap, channel by channel).
On spikes (and spikes scaled by a power of two, as a sum or average pool of spikes gives)
every product is exact, so a fused multiply-add rounds as the separate product and sum do
and each path must give exactly these sums. The neuron reference is the tensor loop of
:func:`snnedge.neurons.step_into`.
"""
import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnedge
import snnedge.dense_paths as dp
import snnedge.events as ev
import snnedge.neurons as nm

pytestmark = pytest.mark.skipif(os.environ.get("SNNEDGE_NATIVE") == "0" or ev.native_kernel() is None,
                                reason="the compiled kernels are off or not built")
ISAS = ev.native_isas() if ev.native_kernel() is not None else ()


def ordered_conv_reference(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` channels-last ``(N, OH, OW, C_out)``, summed in the kernel's order."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    n, c_in, h, w = x.shape
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = F.pad(x, (pw, pw, ph, ph))
    acc = torch.zeros(n, oh, ow, conv.out_channels, dtype=x.dtype)
    if conv.bias is not None:
        acc += conv.bias.detach()
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky * dh: ky * dh + sh * (oh - 1) + 1: sh, kx * dw: kx * dw + sw * (ow - 1) + 1: sw]
            for c in range(c_in):
                acc += patch[:, c, :, :, None] * conv.weight.detach()[:, c, ky, kx]
    return acc


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c_out, kernel, stride, padding, dilation, bias", [
    (64, 3, 1, 1, 1, True), (70, 3, 2, 1, 1, False), (10, (2, 3), 1, 0, 2, True),
    (200, 1, 1, 0, 1, True), (16, 5, 1, 2, 1, True), (33, 3, 3, 2, 1, True)])
def test_conv_kernel_equals_the_ordered_reference_bit_for_bit(isa, dtype, c_out, kernel, stride,
                                                              padding, dilation, bias):
    torch.manual_seed(c_out)
    conv = nn.Conv2d(7, c_out, kernel, stride=stride, padding=padding, dilation=dilation,
                     bias=bias).to(dtype)
    x = (torch.rand(3, 7, 11, 10, dtype=dtype) < 0.2).to(dtype)
    x[1] *= 0.25  # an average pool of spikes
    with torch.no_grad():
        got = ev.event_conv2d(conv, x, backend="native").permute(0, 2, 3, 1)
        assert torch.equal(got, ordered_conv_reference(conv, x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c_out, kernel, stride, padding, dilation", [
    (1, 3, 1, 1, 1), (8, 3, 1, 1, 1), (13, 3, 2, 1, 1), (16, (1, 2), 1, 0, 1), (24, (2, 3), 1, 0, 2),
    (32, 5, 1, 2, 1), (17, 3, 3, 2, 1)])
def test_conv_scatter_and_gather_forms_both_give_the_reference_bits(isa, dtype, c_out, kernel,
                                                                      stride, padding, dilation):
    """Narrow outputs take the scatter form on samples with few events, the gather form
    otherwise (per sample); both, forced, and the mix give the reference's sums exactly."""
    torch.manual_seed(c_out + 100)
    native = ev.native_kernel()
    conv = nn.Conv2d(12, c_out, kernel, stride=stride, padding=padding, dilation=dilation).to(dtype)
    density = torch.tensor([0.0, 0.02, 0.1, 0.5, 1.0]).view(-1, 1, 1, 1)  # a sample each
    x = (torch.rand(5, 12, 13, 11, dtype=dtype) < density).to(dtype)
    x[2] *= 0.5
    ref = ordered_conv_reference(conv, x)
    previous = native.set_conv_scatter(0)
    try:
        for limit in (0, 128, 1 << 20):  # gather only, the default limit, scatter for any row
            native.set_conv_scatter(limit)
            with torch.no_grad():
                got = ev.event_conv2d(conv, x, backend="native").permute(0, 2, 3, 1)
            assert torch.equal(got, ref), limit
    finally:
        native.set_conv_scatter(previous)


def test_conv_scatter_limit_rejects_a_negative_size():
    with pytest.raises(ValueError, match="bytes >= 0"):
        ev.native_kernel().set_conv_scatter(-1)


@pytest.mark.parametrize("value, expected", [("0", "limit 0"), ("64", "limit 64"),
                                             ("many", "expected a number of bytes")])
def test_snnedge_conv_scatter_sets_the_scatter_limit_or_says_what_it_expects(value, expected):
    out = _kernel_in_fresh_process("print('limit', ev.native_kernel().set_conv_scatter(0))",
                                   SNNEDGE_CONV_SCATTER=value)
    assert expected in out


def _kernel_in_fresh_process(statement: str, **environment: str) -> str:
    """What a new Python process prints for ``statement`` (snnedge.events imported as ev, a
    ValueError printed), with ``environment`` added: the variables are read at first use."""
    code = f"import snnedge.events as ev\ntry:\n    {statement}\nexcept ValueError as err:\n    print(err)\n"
    env = {**os.environ, **environment, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("features", [10, 128, 300])
def test_linear_kernel_equals_the_ordered_reference_bit_for_bit(isa, dtype, features):
    torch.manual_seed(features)
    fc = nn.Linear(90, features).to(dtype)
    x = (torch.rand(5, 90, dtype=dtype) < 0.1).to(dtype)
    ref = fc.bias.detach().expand(5, features).clone()
    for c in range(90):
        ref += x[:, c, None] * fc.weight.detach()[:, c]
    with torch.no_grad():
        assert torch.equal(ev.event_linear(fc, x, backend="native"), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("group_events", [90, 200, 1 << 18])  # one row, a few, all at once
def test_packed_linear_equals_the_row_kernel_bit_for_bit(isa, monkeypatch, dtype, group_events):
    # the weight packed chunk by chunk (150 outputs: two chunks of 64 float32 values and a
    # tail, five of 32 float64 ones) over groups of rows, against whole weight rows one row at
    # a time (another copy of the layer: this one keeps its packed form); any values, silent
    # rows among them
    torch.manual_seed(3)
    fc = nn.Linear(90, 150).to(dtype)
    x = (torch.rand(40, 90, dtype=dtype) < 0.1).to(dtype) * torch.randn(40, 90, dtype=dtype)
    x[[0, 5, 6, 39]] = 0
    monkeypatch.setattr(ev, "LINEAR_GROUP_EVENTS", group_events)
    packed_calls = []
    run = ev._native_run
    monkeypatch.setattr(ev, "_native_run", lambda *a, **k: packed_calls.append(k.get("packed", 0)) or run(*a, **k))
    twin = copy.deepcopy(fc)
    with torch.no_grad():
        packed = ev.event_linear(fc, x, backend="native")
        rows = torch.cat([ev.event_linear(twin, x[i:i + 1], backend="native") for i in range(40)])
    assert packed_calls[0] == 256 // x.element_size() and not any(packed_calls[1:])
    assert torch.equal(packed, rows)


def test_the_kernel_refuses_a_packed_weight_outside_a_linear_layer():
    x, w, out = torch.zeros(1, 3, 3, 4), torch.zeros(3, 3, 4, 16), torch.zeros(1, 1, 1, 16)
    ptrs = (x.data_ptr(), w.data_ptr(), 0, out.data_ptr(), False, 0, 1, 1)
    with pytest.raises(ValueError, match="packed weight"):
        ev.native_kernel().conv(*ptrs, 3, 3, 4, 1, 1, 16, 3, 3, 1, 1, 0, 0, 1, 1, 16, 64, 64)
    with pytest.raises(ValueError, match="events >= c_in"):  # a group must hold a whole row
        ev.native_kernel().conv(*ptrs, 1, 1, 4, 1, 1, 16, 1, 1, 1, 1, 0, 0, 1, 1, 16, 64, 3)


@pytest.mark.parametrize("neuron", [
    lambda: snnedge.IF(threshold=[0.5, 0.9, 1.3], reset="zero"),
    lambda: snnedge.LIF(beta=0.8, threshold=0.6, v_init=0.5),
    lambda: snnedge.LIF(beta=[0.5, 0.9, 1.0], threshold=[0.4, 0.8, 1.1])])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("static", [False, True])
def test_neuron_kernel_equals_the_tensor_loop_bit_for_bit(isa, monkeypatch, neuron, dtype, static):
    torch.manual_seed(1)
    layer = neuron().to(dtype)
    current = torch.rand(9, 4, 3, 7, 37, dtype=dtype) * 0.9 - 0.1  # 777 values: vector tails
    current = torch.stack([c.contiguous(memory_format=torch.channels_last) for c in current])
    current = current.as_strided(current.shape, (current[0].numel(), *current[0].stride()))
    if static:
        current = current[0]
    v0 = layer.initial_state(current if static else current[0])
    with torch.no_grad():
        c_native, c_loop = torch.zeros_like(v0[0]), torch.zeros_like(v0[0])
        z_native, v_native = layer.forward_block(current, v0, 9, static=static, counts=c_native)
        monkeypatch.setattr(nm, "native_neuron_block", lambda *a: False)
        z_loop, v_loop = layer.forward_block(current, v0, 9, static=static, counts=c_loop)
    assert torch.equal(z_native, z_loop) and torch.equal(v_native, v_loop)
    assert torch.equal(c_native, c_loop) and 0 < z_loop.sum() < z_loop.numel()


def test_the_best_isa_is_the_default_and_unknown_ones_are_refused():
    assert ISAS[0] == "generic" and set(ISAS) <= set(ev.NATIVE_ISAS)
    label = {"generic": "baseline", "avx2": "avx2+fma", "avx512": "avx512"}
    if not os.environ.get("SNNEDGE_ISA"):
        assert ev.native_kernel().isa() == label[ISAS[-1]]
    with pytest.raises(ValueError, match="'name' parameter of set_native_isa must be one of"):
        ev.set_native_isa("sse9")
    missing = [i for i in ev.NATIVE_ISAS if i not in ISAS]
    if missing:
        with pytest.raises(ValueError, match=f"cannot run the {missing[0]} kernels"):
            ev.set_native_isa(missing[0])


@pytest.mark.parametrize("value, expected", [("generic", "baseline"), ("avx-9", "SNNEDGE_ISA='avx-9'")])
def test_snnedge_isa_environment_variable(value, expected):
    assert expected in _kernel_in_fresh_process("print(ev.native_kernel().isa())", SNNEDGE_ISA=value)


@pytest.mark.parametrize("neuron", [
    lambda: snnedge.IF(threshold=0.7),
    lambda: snnedge.LIF(beta=[0.5, 0.9, 1.0, 0.7, 0.8], threshold=[0.4, 0.8, 1.1, 0.5, 0.6], reset="zero")])
@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AvgPool2d((2, 3)), snnedge.SumPool2d(2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("static", [False, True])
def test_neurons_fused_with_their_pool_equal_the_two_layers(isa, neuron, pool, dtype, static):
    torch.manual_seed(2)
    layer = neuron().to(dtype)
    current = torch.rand(6, 3, 5, 8, 12, dtype=dtype) * 0.9 - 0.1
    current = torch.stack([c.contiguous(memory_format=torch.channels_last) for c in current])
    current = current.as_strided(current.shape, (current[0].numel(), *current[0].stride()))
    if static:
        current = current[0]
    v0 = layer.initial_state(current if static else current[0])
    window = dp.tiling_pool(pool, v0.shape)
    divisor = 1.0 if isinstance(pool, snnedge.SumPool2d) else float(window[0] * window[1])
    with torch.no_grad():
        counts, fused_counts = torch.zeros_like(v0[0]), torch.zeros_like(v0[0])
        z, v = layer.forward_block(current, v0, 6, static=static, counts=counts)
        v_fused = v0.clone()
        got, v_after = layer.forward_block_pooled(current, v_fused, 6, static, window, divisor,
                                                  counts=fused_counts)
    expected = pool(z.flatten(0, 1)).view(got.shape)
    assert v_after is v_fused and torch.equal(v_fused, v)
    assert torch.equal(got, expected) and torch.equal(fused_counts, counts)
    assert got.is_contiguous(memory_format=torch.channels_last) or got[0].is_contiguous(
        memory_format=torch.channels_last)
    assert 0 < z.sum() < z.numel()


def test_simulate_with_fused_pools_equals_simulate_without(monkeypatch):
    import snnedge.executor as ex
    torch.manual_seed(5)
    net = snnedge.sequential(
        nn.Conv2d(1, 8, 3, padding=1), snnedge.IF(threshold=0.5), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), snnedge.LIF(beta=0.9, threshold=0.4), snnedge.SumPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 5)).double()
    x = torch.rand(6, 1, 16, 16, dtype=torch.float64)
    runs = []
    for fuse in (True, False):
        if not fuse:
            monkeypatch.setattr(ex.Executor, "_temporal_pooled", lambda *a: None)
        for engine in ("dense", "event"):
            runs.append(snnedge.simulate(net, x, timesteps=12, engine=engine, block_steps=5, progress=False))
    for res in runs[1:]:
        assert torch.equal(res.output, runs[0].output)
        assert res.spike_counts == runs[0].spike_counts and res.synaptic_events == runs[0].synaptic_events
        for k in res.neuron_spike_counts:
            assert torch.equal(res.neuron_spike_counts[k], runs[0].neuron_spike_counts[k])
    assert all(v > 0 for v in runs[0].spike_counts.values())


@pytest.mark.parametrize("surrogate", ["atan", "fast_sigmoid", "triangle"])
@pytest.mark.parametrize("reset, detach", [("subtract", False), ("zero", False), ("subtract", True),
                                           ("zero", True)])
@pytest.mark.parametrize("static, final_grad", [(False, False), (True, True), (False, True)])
def test_training_backward_kernel_equals_the_tensor_loop(isa, monkeypatch, surrogate, reset, detach,
                                                          static, final_grad):
    import snnedge.training.neuron_grad as ng
    torch.manual_seed(3)
    layer = snnedge.LIF(beta=[0.8, 0.9, 0.95], threshold=[0.5, 0.6, 0.7], reset=reset,
                        surrogate=surrogate, detach_reset=detach).double()
    shape = (5, 3, 4, 5) if static else (7, 5, 3, 4, 5)
    current = (torch.rand(shape, dtype=torch.float64) * 0.8).requires_grad_(True)
    grads = []
    for native in (True, False):
        if not native:
            monkeypatch.setattr(ng, "native_backward", lambda *a: None)
        current.grad = None
        v0 = layer.initial_state(current if static else current[0]).requires_grad_(True)
        template = current if static else current[0]
        z, v = ng.NeuronBlock.apply(current, v0, layer.threshold_for(template),
                                    layer.beta_for(template), layer, 7, static, False)
        g = torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        loss = (z * g).sum() + ((v * g[0]).sum() if final_grad else 0)
        loss.backward()
        grads.append((current.grad.clone(), v0.grad.clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert grads[0][0].abs().sum() > 0


@pytest.mark.parametrize("module", [nn.AvgPool2d(2), nn.AvgPool2d((2, 3)), nn.AvgPool2d(3),
                                    snnedge.SumPool2d(2), nn.AvgPool2d((1, 4))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tiling_pool_kernel_equals_torch_pooling_bit_for_bit(isa, module, dtype):
    torch.manual_seed(6)
    x = torch.randn(3, 5, 12, 24, dtype=dtype)
    window = dp.tiling_pool(module, x.shape)
    assert torch.equal(dp.pool_tiles(module, x, window), module(x))
