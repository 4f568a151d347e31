"""The neuron types of the core (snnedge.NEURON_MODELS) and the Delay layer: golden traces
derived by hand, one conformance suite over the registry (reference step vs module, blocks
vs one run, static vs repeated input, no-gradient vs autograd, save/load, surrogate
gradients), and their parameter errors."""
import pytest
import torch
from torch import nn

import snnedge
from snnedge import NEURON_MODELS, CubaLIF, Delay, Integrator, LI, Threshold
from snnedge.neuron_models import cuba_lif_step, li_step, threshold_step
from snnedge.neurons import if_step, lif_step

# One instance per registered type with parameters away from their defaults; the input has
# 3 channels at dimension 2 of (T, B, C, ...) so per-channel values apply.
EXAMPLES = {
    "IF": lambda: snnedge.IF(threshold=[0.5, 0.9, 1.3], reset="zero"),
    "LIF": lambda: snnedge.LIF(beta=[0.6, 0.8, 1.0], threshold=0.7, v_init=0.5),
    "CubaLIF": lambda: CubaLIF(beta=[0.7, 0.9, 1.0], beta_syn=[0.0, 0.5, 0.8], threshold=0.6,
                               v_init=0.25),
    "LI": lambda: LI(beta=[0.5, 0.8, 1.0], gain=[1.0, 2.0, 0.5], v_init=0.1),
    "Integrator": lambda: Integrator(gain=[1.0, 0.5, 2.0], v_init=-0.2),
    "Threshold": lambda: Threshold(threshold=[0.2, 0.4, 0.6]),
}


def reference(layer, current, steps):
    """The layer's output by its reference step function, step by step (float64)."""
    template = current[0]
    outs = []
    if isinstance(layer, CubaLIF):
        theta = layer.membrane.threshold_for(template)
        beta = layer.membrane.beta_for(template)
        b_syn = layer.beta_syn.to(template).view(-1, 1)
        i, v = layer.initial_state(template)
        for t in range(steps):
            z, i, v = cuba_lif_step(i, v, current[t], b_syn, beta, theta, layer.reset)
            outs.append(z)
    elif isinstance(layer, LI):
        v = layer.initial_state(template)
        beta = None if isinstance(layer, Integrator) else layer.beta.to(template).view(-1, 1)
        for t in range(steps):
            v = li_step(v, current[t], beta, layer.gain.to(template).view(-1, 1))
            outs.append(v)
    elif isinstance(layer, Threshold):
        for t in range(steps):
            outs.append(threshold_step(current[t], layer.threshold.to(template).view(-1, 1)))
    else:
        v = layer.initial_state(template)
        theta, beta = layer.threshold_for(template), layer.beta_for(template)
        for t in range(steps):
            z, v = (if_step(v, current[t], theta, layer.reset) if beta is None
                    else lif_step(v, current[t], beta, theta, layer.reset))
            outs.append(z)
    return torch.stack(outs)


def test_every_registered_neuron_has_an_example():
    assert set(NEURON_MODELS) == set(EXAMPLES)
    assert snnedge.NEURON_MODELS["CubaLIF"] is CubaLIF


@pytest.mark.parametrize("name", sorted(NEURON_MODELS))
def test_module_runs_its_reference_step_bit_for_bit(name):
    torch.manual_seed(0)
    layer = EXAMPLES[name]().double()
    current = torch.rand(11, 4, 3, 5, dtype=torch.float64) * 1.2 - 0.1
    ref = reference(layer, current, 11)
    with torch.no_grad():
        out = layer(current)
    assert torch.equal(out, ref)
    if layer.emits_spikes:
        assert set(out.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("name", sorted(NEURON_MODELS))
def test_blocks_carry_the_state(name):
    # Four blocks of 3, 1, 5 and 2 steps from the carried state equal one run of 11 steps.
    torch.manual_seed(1)
    layer = EXAMPLES[name]().double()
    current = torch.rand(11, 4, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        whole, _ = layer.forward_block(current, layer.initial_state(current[0]), 11)
        state, parts, t0 = layer.initial_state(current[0]), [], 0
        for steps in (3, 1, 5, 2):
            out, state = layer.forward_block(current[t0:t0 + steps], state, steps)
            parts.append(out)
            t0 += steps
    assert torch.equal(torch.cat(parts), whole)


@pytest.mark.parametrize("name", sorted(NEURON_MODELS))
def test_static_input_is_the_input_repeated(name):
    layer = EXAMPLES[name]().double()
    x = torch.rand(4, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        static, _ = layer.forward_block(x, layer.initial_state(x), 7, static=True)
        repeated, _ = layer.forward_block(x.expand(7, *x.shape), layer.initial_state(x), 7)
    assert torch.equal(static, repeated)


@pytest.mark.parametrize("name", sorted(NEURON_MODELS))
def test_autograd_path_is_the_no_gradient_path_and_has_gradients(name):
    torch.manual_seed(3)
    layer = EXAMPLES[name]().double()
    current = torch.rand(9, 4, 3, 5, dtype=torch.float64) * 1.5
    with torch.no_grad():
        plain = layer(current)
    x = current.clone().requires_grad_()
    out = layer(x)
    assert torch.equal(out.detach(), plain)
    (out * torch.linspace(0.1, 1.0, 5, dtype=torch.float64)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(NEURON_MODELS))
def test_save_and_load_in_a_network(tmp_path, name):
    torch.manual_seed(4)
    net = snnedge.sequential(nn.Linear(6, 3), EXAMPLES[name](), nn.Linear(3, 2), input_shape=(6,))
    back = snnedge.load_network(snnedge.save_network(net, tmp_path / "n.pt"))
    x = torch.rand(5, 6)
    a = snnedge.simulate(net, x, timesteps=12, dtype=torch.float64)
    b = snnedge.simulate(back, x, timesteps=12, dtype=torch.float64)
    assert torch.equal(a.output, b.output) and a.spike_counts == b.spike_counts


def test_cubalif_golden_trace():
    # beta_syn = beta = 0.5, theta = 1, reset by subtraction, input 1, 1, 0, 0:
    #   i: 1, 1.5, 0.75, 0.375
    #   u = 0.5 v + i: 1 -> z=1, v=0 | 0 + 1.5 -> z=1, v=0.5 | 0.25 + 0.75 = 1 -> z=1, v=0 | 0.375 -> z=0
    layer = CubaLIF(beta=0.5, beta_syn=0.5, threshold=1.0).double()
    current = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64).view(4, 1, 1)
    z, (i, v) = layer.forward_block(current, layer.initial_state(current[0]), 4)
    assert z.flatten().tolist() == [1.0, 1.0, 1.0, 0.0]
    assert i.item() == 0.375 and v.item() == 0.375
    # reset to zero: t=1 u = 1.5 -> v = 0; t=2 u = 0.75 -> no spike, v = 0.75; t=3 u = 0.375 + 0.375
    zero = CubaLIF(beta=0.5, beta_syn=0.5, threshold=1.0, reset="zero").double()
    z, _ = zero.forward_block(current, zero.initial_state(current[0]), 4)
    assert z.flatten().tolist() == [1.0, 1.0, 0.0, 0.0]


def test_li_integrator_and_threshold_golden_traces():
    x = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64).view(3, 1, 1)
    # LI beta 0.5 gain 2: v = 2, 1, 0.5 + 4 = 4.5
    assert LI(beta=0.5, gain=2.0).double()(x).flatten().tolist() == [2.0, 1.0, 4.5]
    # Integrator gain 0.5: 0.5, 0.5, 1.5
    assert Integrator(gain=0.5).double()(x).flatten().tolist() == [0.5, 0.5, 1.5]
    # Threshold 1.0: H(x - 1) with H(0) = 1
    assert Threshold(1.0).double()(x).flatten().tolist() == [1.0, 0.0, 1.0]


def test_delay_shifts_by_whole_steps_across_blocks():
    x = torch.arange(1.0, 9.0).view(8, 1, 1).expand(8, 2, 3).clone()
    d = Delay(torch.tensor([0, 2, 5]))
    out = d(x)
    assert out[:, 0, 0].tolist() == x[:, 0, 0].tolist()
    assert out[:, 0, 1].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]
    assert out[:, 0, 2].tolist() == [0, 0, 0, 0, 0, 1, 2, 3]
    state, parts = d.initial_state(x[0]), []
    for t0, t1 in ((0, 3), (3, 4), (4, 8)):
        y, state = d.forward_block(x[t0:t1], state, t1 - t0)
        parts.append(y)
    assert torch.equal(torch.cat(parts), out)
    assert torch.equal(Delay(3)(x)[3:], x[:5]) and torch.equal(Delay(0)(x), x)


def test_delay_in_a_network_passes_its_inputs_kind_on():
    # Spikes through a delay still count as events into the next layer: a spike of the last
    # step is delayed past the end and never delivered.
    torch.manual_seed(5)
    net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(threshold=0.5), Delay(1), nn.Linear(3, 2),
                             input_shape=(4,))
    res = snnedge.simulate(net, torch.rand(6, 4), timesteps=10, dtype=torch.float64)
    per_step = snnedge.simulate(net, torch.rand(6, 4), timesteps=1)
    assert per_step.synaptic_events.get("3", 0) == 0  # nothing arrives within one step
    assert res.synaptic_events["3"] > 0 and "3" not in res.input_macs


@pytest.mark.parametrize("make, message", [
    (lambda: CubaLIF(beta_syn=1.5), r"'beta_syn' parameter of CubaLIF must be finite in \[0.0, 1.0\]"),
    (lambda: CubaLIF(beta=0.0), r"'beta' parameter of LIF must be in \(0, 1\]"),
    (lambda: LI(beta=0.0), r"'beta' parameter of LI must be finite in \(0.0, 1.0\]"),
    (lambda: Integrator(gain=float("nan")), r"'gain' parameter of Integrator must be finite"),
    (lambda: Threshold([[1.0]]), r"'threshold' parameter of Threshold must be finite"),
    (lambda: Delay(1.5), r"'delay' parameter of Delay must be whole steps"),
    (lambda: Delay(-1), r"'delay' parameter of Delay must be integers >= 0"),
])
def test_parameter_errors_name_the_parameter(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_per_channel_mismatch_is_named():
    layer = LI(beta=[0.5, 0.6])
    with pytest.raises(ValueError, match=r"LI beta has 2 per-channel values but its input has channel size \(3,\)"):
        layer(torch.rand(2, 4, 3))


def test_docstring_examples_run():
    import doctest

    import snnedge.delay
    import snnedge.event_streams
    import snnedge.network
    for module in (snnedge.delay, snnedge.event_streams, snnedge.network):
        result = doctest.testmod(module, verbose=False)
        assert result.failed == 0 and result.attempted > 0, module.__name__
