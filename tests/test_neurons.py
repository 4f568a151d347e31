"""Golden traces and validation of the IF and LIF neurons."""
import os

import pytest
import torch

import snnedge
from snnedge.neurons import if_step, lif_step, step_into


def trace(neuron, currents):
    """Spikes and membrane after each step for a single neuron fed ``currents``."""
    x = torch.tensor(currents, dtype=torch.float64).view(-1, 1, 1)
    v = neuron.initial_state(x[0])
    zs, vs = [], []
    for t in range(x.shape[0]):
        z, v = neuron.forward_block(x[t:t + 1], v, 1)
        zs.append(float(z))
        vs.append(float(v))
    return zs, vs


def test_if_subtract_golden():
    # theta = 1, I = 3/8 (exact in binary): v = 3/8, 6/8, 9/8 -> spike -> 1/8, 4/8, 7/8,
    # 10/8 -> spike -> 2/8. Subtraction keeps the residue above threshold.
    zs, vs = trace(snnedge.IF(threshold=1.0, reset="subtract"), [0.375] * 6)
    assert zs == [0, 0, 1, 0, 0, 1]
    assert vs == [0.375, 0.75, 0.125, 0.5, 0.875, 0.25]


def test_if_zero_golden():
    # theta = 1, I = 0.7: v = 0.7, 1.4 -> spike -> 0, 0.7, 1.4 -> spike -> 0
    zs, vs = trace(snnedge.IF(threshold=1.0, reset="zero"), [0.7] * 4)
    assert zs == [0, 1, 0, 1]
    assert vs == pytest.approx([0.7, 0.0, 0.7, 0.0])


def test_lif_subtract_golden():
    # beta = 0.5, theta = 1, I = 0.8: v1 = 0.8; v2 = 0.4 + 0.8 = 1.2 -> spike -> 0.2;
    # v3 = 0.1 + 0.8 = 0.9; v4 = 0.45 + 0.8 = 1.25 -> spike -> 0.25
    zs, vs = trace(snnedge.LIF(beta=0.5, threshold=1.0, reset="subtract"), [0.8] * 4)
    assert zs == [0, 1, 0, 1]
    assert vs == pytest.approx([0.8, 0.2, 0.9, 0.25])


def test_lif_zero_golden():
    # beta = 0.5, theta = 1, I = 0.8: 0.8; 1.2 -> spike -> 0; 0.8; 1.2 -> spike -> 0
    zs, vs = trace(snnedge.LIF(beta=0.5, threshold=1.0, reset="zero"), [0.8] * 4)
    assert zs == [0, 1, 0, 1]
    assert vs == pytest.approx([0.8, 0.0, 0.8, 0.0])


def test_v_init_half_threshold():
    # theta = 2, v0 = 1 (theta/2), I = 0.5: v = 1.5, 2.0 -> spike -> 0, 0.5
    zs, vs = trace(snnedge.IF(threshold=2.0, v_init=0.5), [0.5] * 3)
    assert zs == [0, 1, 0]
    assert vs == pytest.approx([1.5, 0.0, 0.5])


def test_per_channel_threshold():
    neuron = snnedge.IF(threshold=[1.0, 2.0])
    x = torch.full((3, 1, 2, 1, 1), 1.0)  # (T, B, C, H, W)
    spikes = neuron(x)
    # channel 0 (theta 1) fires every step; channel 1 (theta 2) every second step
    assert spikes[:, 0, 0, 0, 0].tolist() == [1, 1, 1]
    assert spikes[:, 0, 1, 0, 0].tolist() == [0, 1, 0]


def test_inplace_and_autograd_paths_agree():
    torch.manual_seed(0)
    for neuron in (snnedge.IF(threshold=[0.5, 1.0, 1.5]), snnedge.LIF(beta=0.8, reset="zero")):
        x = torch.randn(10, 4, 3, 5, 5, dtype=torch.float64)
        fast = neuron(x)
        slow = neuron(x.clone().requires_grad_(True))
        assert torch.equal(fast, slow.detach())


def test_functional_steps_match_modules():
    v = torch.zeros(3)
    z, v = if_step(v, torch.tensor([0.5, 1.0, 1.5]), 1.0)
    assert z.tolist() == [0, 1, 1] and v.tolist() == [0.5, 0.0, 0.5]
    z, v = lif_step(torch.ones(2), torch.tensor([0.0, 0.6]), 0.5, 1.0, reset="zero")
    assert z.tolist() == [0, 1] and v.tolist() == [0.5, 0.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"reset": "hard"}, "The 'reset' parameter of IF must be one of 'subtract', 'zero'. Got 'hard' instead."),
    ({"threshold": -1.0}, "The 'threshold' parameter of IF must be positive and finite. Got -1.0."),
    ({"v_init": 2.0}, "The 'v_init' parameter of IF must be a float in [0, 1]. Got 2.0 instead."),
    ({"surrogate": "relu"}, "The 'surrogate' parameter of snnedge must be one of 'atan', 'sigmoid', "
                            "'fast_sigmoid', 'triangle'. Got 'relu' instead."),
])
def test_neuron_errors(kwargs, message):
    with pytest.raises(ValueError) as e:
        snnedge.IF(**kwargs)
    assert str(e.value) == message


def test_lif_beta_error_and_channel_mismatch():
    with pytest.raises(ValueError, match=r"'beta' parameter of LIF must be in \(0, 1\]"):
        snnedge.LIF(beta=1.5)
    with pytest.raises(ValueError, match="has 3 per-channel values but its input has channel size"):
        snnedge.IF(threshold=[1.0, 1.0, 1.0])(torch.ones(2, 1, 4))


def test_learnable_parameters():
    neuron = snnedge.LIF(beta=0.9, learn_beta=True, learn_threshold=True)
    names = {n for n, _ in neuron.named_parameters()}
    assert names == {"threshold", "beta_logit"}
    x = torch.rand(6, 2, 4, requires_grad=True)
    neuron(x).sum().backward()
    assert neuron.beta_logit.grad is not None and neuron.threshold.grad is not None


needs_native = pytest.mark.skipif(os.environ.get("SNNEDGE_NATIVE") == "0",
                                  reason="SNNEDGE_NATIVE=0 turns the compiled kernels off")


@needs_native
@pytest.mark.parametrize("neuron", [
    lambda: snnedge.IF(threshold=0.7), lambda: snnedge.IF(threshold=[0.5, 0.9, 1.3], reset="zero"),
    lambda: snnedge.LIF(beta=0.8, threshold=0.6, v_init=0.5),
    lambda: snnedge.LIF(beta=[0.5, 0.9, 1.0], threshold=[0.4, 0.8, 1.1], reset="zero")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "flat"])
@pytest.mark.parametrize("static", [False, True])
def test_compiled_neuron_block_equals_the_tensor_loop(monkeypatch, neuron, dtype, layout, static):
    import snnedge.events as ev
    import snnedge.neurons as nm
    assert ev.native_kernel() is not None
    torch.manual_seed(0)
    layer = neuron().to(dtype)
    shape = (5, 3) if layout == "flat" else (5, 3, 4, 6)
    if layout == "flat" and layer.threshold.numel() > 1:
        shape = (5, 3)
    current = torch.rand(7, *shape, dtype=dtype) * 0.9 - 0.1
    if layout == "channels_last":
        current = torch.stack([c.contiguous(memory_format=torch.channels_last) for c in current])
        current = current.as_strided(current.shape, (current[0].numel(), *current[0].stride()))
    if static:
        current = current[0]
    v0 = layer.initial_state(current if static else current[0])
    with torch.no_grad():
        calls = []
        monkeypatch.setattr(nm, "native_neuron_block", lambda *a: calls.append(1) or ev.native_neuron_block(*a))
        c_native, c_loop = torch.zeros_like(v0[0]), torch.zeros_like(v0[0])
        z_native, v_native = layer.forward_block(current, v0, 7, static=static, counts=c_native)
        monkeypatch.setattr(nm, "native_neuron_block", lambda *a: False)
        z_loop, v_loop = layer.forward_block(current, v0, 7, static=static, counts=c_loop)
    assert calls and torch.equal(z_native, z_loop) and torch.equal(v_native, v_loop)
    assert torch.equal(c_native, c_loop) and torch.equal(c_loop, z_loop.sum((0, 1)))
    assert 0 < z_loop.sum() < z_loop.numel()
    assert z_native.stride() == z_loop.stride()


@needs_native
@pytest.mark.parametrize("batch", [1, 6])
def test_compiled_neuron_block_split_over_threads(monkeypatch, batch):
    import snnedge.events as ev
    layer = snnedge.LIF(beta=0.9, threshold=[0.3, 0.5, 0.7, 0.9])
    current = torch.rand(9, batch, 4, 10, 13)
    v0 = layer.initial_state(current[0])
    with torch.no_grad():
        one, v_one = layer.forward_block(current, v0, 9)
        monkeypatch.setattr(ev, "NEURON_MIN_WORK", 1)
        threads = torch.get_num_threads()
        torch.set_num_threads(3)
        counts = torch.zeros_like(v0[0])
        try:
            split, v_split = layer.forward_block(current, v0, 9)
            counted, _ = layer.forward_block(current, v0, 9, counts=counts)
        finally:
            torch.set_num_threads(threads)
    assert torch.equal(one, split) and torch.equal(v_one, v_split) and torch.equal(one, counted)
    assert torch.equal(counts, one.sum((0, 1)))


# -- one reference for the update rule ---------------------------------------------------
def reference_block(layer, current, v, steps, static):
    """The layer's update by its reference, :func:`if_step` / :func:`lif_step` step by step."""
    template = current if static else current[0]
    theta, beta = layer.threshold_for(template), layer.beta_for(template)
    zs = []
    for t in range(steps):
        i_t = current if static else current[t]
        z, v = (if_step(v, i_t, theta, layer.reset) if beta is None
                else lif_step(v, i_t, beta, theta, layer.reset))
        zs.append(z)
    return torch.stack(zs), v


REFERENCE_NEURONS = [
    lambda: snnedge.IF(threshold=0.7), lambda: snnedge.IF(threshold=[0.5, 0.9, 1.3], reset="zero"),
    lambda: snnedge.LIF(beta=0.8, threshold=0.6, v_init=0.5),
    lambda: snnedge.LIF(beta=[0.5, 0.9, 1.0], threshold=[0.4, 0.8, 1.1], reset="zero"),
    lambda: snnedge.LIF(beta=0.7, threshold=[0.4, 0.8, 1.1], learn_beta=True)]


@pytest.mark.parametrize("neuron", REFERENCE_NEURONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("static", [False, True])
def test_every_block_path_is_the_reference_bit_for_bit(monkeypatch, neuron, dtype, static):
    # The in-place tensor loop, the compiled kernel, the autograd path and training's fused
    # block all run the rule of if_step/lif_step: the same spikes and membranes, bit for bit.
    import snnedge.events as ev
    import snnedge.neurons as nm
    from snnedge.training.neuron_grad import FusedNeuron
    torch.manual_seed(0)
    layer = neuron().to(dtype)
    current = torch.rand(9, 5, 3, 4, 6, dtype=dtype) * 0.9 - 0.1
    if static:
        current = current[0]
    v0 = layer.initial_state(current if static else current[0])
    with torch.no_grad():
        z_ref, v_ref = reference_block(layer, current, v0, 9, static)
        native = []
        monkeypatch.setattr(nm, "native_neuron_block",
                            lambda *a: native.append(ev.native_neuron_block(*a)) or native[-1])
        paths = {"kernel": layer.forward_block(current, v0, 9, static)}
        monkeypatch.setattr(nm, "native_neuron_block", lambda *a: False)
        paths["tensor loop"] = layer.forward_block(current, v0, 9, static)
    grad_in = current.clone().requires_grad_()
    paths["autograd"] = layer.forward_block(grad_in, v0, 9, static)
    paths["fused block"] = FusedNeuron(layer).forward_block(grad_in, v0, 9, static)
    assert 0 < z_ref.sum() < z_ref.numel()
    assert native == [ev.native_kernel() is not None]  # the kernel ran wherever it is built
    for name, (z, v) in paths.items():
        assert torch.equal(z.detach(), z_ref), name
        assert torch.equal(v.detach(), v_ref), name


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("theta", [0.7, torch.tensor([0.4, 0.8, 1.1]).view(3, 1)])
def test_step_into_is_lif_step(reset, theta):
    torch.manual_seed(1)
    v, current = torch.rand(4, 3, 5) * 1.2, torch.rand(4, 3, 5)
    for beta in (None, 0.9, torch.tensor([0.5, 0.9, 1.0]).view(3, 1)):
        z_ref, v_ref = (if_step(v, current, theta, reset) if beta is None
                        else lif_step(v, current, beta, theta, reset))
        # in place into v, and with the pre-reset membrane u kept apart (training's form)
        for keep_u in (False, True):
            v_io, z = v.clone(), torch.empty_like(v)
            u = torch.empty_like(v) if keep_u else None
            step_into(v_io, current, z, float(theta) if isinstance(theta, float) else theta,
                      beta, reset, u=u)
            assert torch.equal(z, z_ref) and torch.equal(v_io, v_ref)
            if keep_u:
                assert torch.equal(u, (v if beta is None else beta * v) + current)


def _fresh_membrane(neuron, template):
    """The initial membrane computed as the neurons did before keeping it."""
    m = getattr(neuron, "v_init_map", None)
    value = (m.to(template) if m is not None else neuron.v_init) * neuron.threshold_for(template)
    return torch.empty_like(template).copy_(value.expand_as(template))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kept_initial_membrane_follows_every_change(layout, dtype):
    """The initial membrane is made once per sample shape, layout and dtype and copied after:
    each call gets a tensor of its own, in the template's layout, and an in-place change of
    the threshold or the map, a new ``.data``, a new tensor or a new ``v_init`` is seen."""
    from converters.membrane import CalibratedIF
    torch.manual_seed(0)
    neurons = [snnedge.IF(threshold=[0.5, 1.0, 2.0], v_init=0.5),
               snnedge.LIF(beta=0.9, threshold=1.5, v_init=0.5),
               CalibratedIF(threshold=1.3, v_init_map=torch.rand(3, 4, 5))]
    for neuron in neurons:
        for batch in (1, 2, 1):
            t = torch.rand(batch, 3, 4, 5, dtype=dtype)
            if layout == "channels_last":
                t = t.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                v = neuron.initial_state(t)
                assert torch.equal(v, _fresh_membrane(neuron, t)) and v.stride() == t.stride()
                v.add_(1.0)  # the caller's own tensor: the kept one stays as it was
                assert torch.equal(neuron.initial_state(t), _fresh_membrane(neuron, t))
        # one sample whose sample dimension has a stride of its own (a tick of a block): the
        # membrane takes that stride too, on the first call and the kept copies after
        odd = t[:1].as_strided(t[:1].shape, (7, *t.stride()[1:]))
        for _ in range(2):
            with torch.no_grad():
                v = neuron.initial_state(odd)
            assert torch.equal(v, _fresh_membrane(neuron, odd)) and v.stride() == odd.stride()
        with torch.no_grad():
            neuron.threshold.mul_(1.25)
            assert torch.equal(neuron.initial_state(t), _fresh_membrane(neuron, t))
            neuron.threshold.data = neuron.threshold.data * 2
            assert torch.equal(neuron.initial_state(t), _fresh_membrane(neuron, t))
            neuron.threshold = neuron.threshold * 0.5
            assert torch.equal(neuron.initial_state(t), _fresh_membrane(neuron, t))
            neuron.v_init = 0.25
            assert torch.equal(neuron.initial_state(t), _fresh_membrane(neuron, t))
            if isinstance(neuron, CalibratedIF):
                neuron.v_init_map[0, 0, 0] = 0.75
                assert torch.equal(neuron.initial_state(t), _fresh_membrane(neuron, t))
    # a subclass with a threshold of its own is not kept: its value is read every call
    class Scaled(snnedge.IF):
        gain = 1.0

        def threshold_for(self, template):
            return super().threshold_for(template) * self.gain

    n = Scaled(threshold=1.0, v_init=0.5)
    t = torch.rand(1, 3, 4, 5, dtype=dtype)
    first = n.initial_state(t)
    n.gain = 3.0
    assert torch.equal(n.initial_state(t), 3 * first)


def test_block_methods_need_no_grad_context_of_their_own():
    """``advance_block`` runs without gradients inside or outside ``torch.no_grad``."""
    n = snnedge.IF(threshold=1.0)
    x = torch.rand(4, 2, 3, requires_grad=True)
    v = n.initial_state(x[0].detach())
    out = n.advance_block(x, v, 4)
    assert not out.requires_grad and torch.is_grad_enabled()
    with torch.no_grad():
        v2 = n.initial_state(x[0])
        assert torch.equal(n.advance_block(x.detach(), v2, 4), out) and torch.equal(v2, v)
