"""Loihi's synaptic current in to_hardware (CubaChipNeuron): golden traces of lava's integer
update, the layers it applies to, charge kept by the doubled threshold, the engines, saving,
and the errors."""
import pathlib
import sys

import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import to_hardware
from neuromorphic_targets.hardware import DEFAULT_CURRENT_DECAY
from neuromorphic_targets.hardware_cuba import CubaChipNeuron
from snnedge.chip_neuron import ChipNeuron

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from model_digest import state_hash  # noqa: E402

SHAPE = (1, 8, 8)
V_MAX = 2 ** 23 - 1


def membrane(theta, reset="zero", bias=None, v_init=None, current_bits=24):
    return ChipNeuron(theta, bias, v_init, reset, v_min=-V_MAX, v_max=V_MAX,
                      current_bits=current_bits, strict=True, integer=True)


def run(neuron, drive):
    drive = torch.as_tensor(drive, dtype=torch.float64)
    state = neuron.initial_state(drive[0])
    z, state = neuron.forward_block(drive, state, drive.shape[0])
    return z, state


def spiking_net(reset="subtract", lif=False):
    """A conv layer on the input (analog currents), then two layers fed by spikes."""
    torch.manual_seed(0)
    first = snnedge.LIF(beta=0.8, reset=reset) if lif else snnedge.IF(reset=reset, v_init=0.5)
    return snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), first, nn.AvgPool2d(2), nn.Flatten(),
                              nn.Linear(4 * 16, 16), snnedge.IF(reset=reset, v_init=0.5),
                              nn.Linear(16, 8), snnedge.IF(reset=reset), nn.Linear(8, 4),
                              input_shape=SHAPE)


# -- the integer update, by hand -----------------------------------------------------------
def test_golden_trace_of_a_current_that_halves_each_step():
    # d = 2048 (du = 2047): u <- sign(u) * floor(|u| * 2048 / 4096) + a_in; v <- v + u;
    # spike when v > 100, then v = 0. Input 300 at t=0, 7 at t=4:
    #   t  u                        v before reset  spike
    #   0  0 + 300 = 300            300             1
    #   1  floor(300 / 2) = 150     150             1
    #   2  75                       75              0
    #   3  floor(75 / 2) = 37       75 + 37 = 112   1
    #   4  floor(37 / 2) + 7 = 25   25              0
    #   5  floor(25 / 2) = 12       37              0
    neuron = CubaChipNeuron(membrane(100.0), 2048, 12, 24)
    z, (u, v) = run(neuron, [[[300.0]], [[0.0]], [[0.0]], [[0.0]], [[7.0]], [[0.0]]])
    assert z.flatten().tolist() == [1, 1, 0, 1, 0, 0]
    assert u.item() == 12 and v.item() == 37
    # toward zero for a negative current: -7, -3, -1, 0; v = -7, -10, -11, -11
    z, (u, v) = run(neuron, [[[-7.0]], [[0.0]], [[0.0]], [[0.0]]])
    assert z.sum() == 0 and u.item() == 0 and v.item() == -11


def test_the_current_register_wraps_around():
    # an 8-bit current: 100, then floor(100 * 4095 / 4096) + 100 = 99 + 100 = 199 -> 199 - 256
    neuron = CubaChipNeuron(membrane(1000.0), 4095, 12, 8)
    _, (u, v) = run(neuron, [[[100.0]], [[100.0]]])
    assert u.item() == 199 - 256 and v.item() == 100 - 57


def test_matches_a_plain_int64_loop_of_lavas_update():
    # lava's PyLifModelBitAcc (dv = 0, du as below), written out in int64:
    #   u = sign(u) * (|u| * (4096 - (du + 1)) >> 12) + a_in, wrapped to 24 bits
    #   v = clip(v + u + bias, -(2^23 - 1), 2^23 - 1); s = v > vth; v[s] = 0
    gen = torch.Generator().manual_seed(1)
    drive = torch.randint(-900, 1500, (20, 3, 5), generator=gen).to(torch.float64)
    bias = torch.randint(-40, 60, (5,), generator=gen).to(torch.float64)
    v0 = torch.randint(0, 300, (5,), generator=gen).to(torch.float64)
    for du in (0, 1000, 2047, 3500, 4095):
        d = 4096 - (du + 1)
        neuron = CubaChipNeuron(membrane(640.0, bias=bias, v_init=v0), d, 12, 24)
        z, (u, v) = run(neuron, drive)
        uu, vv = torch.zeros(3, 5, dtype=torch.int64), v0.to(torch.int64).expand(3, 5).clone()
        spikes = []
        for t in range(20):
            uu = torch.sign(uu) * ((uu.abs() * d) >> 12) + drive[t].to(torch.int64)
            uu = (uu + 2 ** 23) % 2 ** 24 - 2 ** 23
            vv = (vv + uu + bias.to(torch.int64)).clamp(-V_MAX, V_MAX)
            s = vv > 640
            vv[s] = 0
            spikes.append(s)
        assert torch.equal(z.bool(), torch.stack(spikes)), du
        assert torch.equal(u.to(torch.int64), uu) and torch.equal(v.to(torch.int64), vv), du


def test_a_burst_keeps_more_of_its_charge_behind_the_current():
    # three thresholds' worth in one step: reset by subtraction fires 3 times (theta = 100);
    # a plain reset to zero once; behind a current of gain 2 (theta 200) twice
    burst = [[[300.0]]] + [[[0.0]]] * 9
    plain, _ = run(membrane(100.0), burst)
    cuba, _ = run(CubaChipNeuron(membrane(200.0), 2048, 12, 24), burst)
    subtract, _ = run(ChipNeuron(100.0, reset="subtract", integer=True), burst)
    assert (plain.sum(), cuba.sum(), subtract.sum()) == (1, 2, 3)


# -- to_hardware ---------------------------------------------------------------------------
def test_loihi_runs_layers_fed_by_spikes_behind_the_current():
    net = spiking_net()
    before = state_hash(net), repr(net)
    hw = to_hardware(net, "loihi", soft_reset="current")
    assert (state_hash(net), repr(net)) == before and hw.names == net.names
    assert hw.neuron_layers == net.neuron_layers
    assert isinstance(hw.layer("1"), ChipNeuron)  # fed by the input's analog currents
    for name in ("5", "7"):
        m = hw.layer(name)
        assert isinstance(m, CubaChipNeuron) and m.reset == "zero"
        assert (m.current_decay, m.current_shift, m.current_bits) == (2048, 12, 24)
    assert DEFAULT_CURRENT_DECAY == 0.5
    assert hw.hardware_.current_decays == {"5": 0.5, "7": 0.5}
    assert any("layer '5': its input runs through the chip's synaptic current, decaying by 0.5 "
               "per step (du = 2047)" in n for n in hw.hardware_.notes)
    assert any("layer '5': reset 'subtract' runs as the chip's reset 'zero'" in n
               for n in hw.hardware_.notes)


def test_the_current_doubles_threshold_bias_and_initial_membrane():
    net = spiking_net()
    plain, cuba = (to_hardware(net, "loihi", current_decay=1.0),
                   to_hardware(net, "loihi", soft_reset="current"))
    assert not any(isinstance(m, CubaChipNeuron) for m in plain.modules())
    assert plain.hardware_.current_decays == {}
    for name in ("5", "7"):
        a, b = plain.layer(name), cuba.layer(name).membrane
        # the same power-of-two scale where the doubled values still fit (weights unchanged)
        k_a, k_b = plain.hardware_.exponents[name], cuba.hardware_.exponents[name]
        assert k_b in (k_a, k_a - 1)
        ratio = 2.0 * 2 ** (k_b - k_a)
        assert torch.equal(b.threshold, a.threshold * ratio)
        if k_b == k_a:
            assert torch.equal(cuba.layer(str(int(name) - 1)).weight,
                               plain.layer(str(int(name) - 1)).weight)
        assert torch.allclose(b.v_init, a.v_init * ratio, atol=64 * ratio)


@pytest.mark.parametrize("delta,du", [(0.25, 1023), (1 / 4096, 0), (0.5, 2047)])
def test_current_decay_is_rounded_to_loihis_12_bit_du(delta, du):
    hw = to_hardware(spiking_net(), "loihi", current_decay=delta)
    m = hw.layer("5")
    assert m.current_decay == 4096 - (du + 1)
    assert hw.hardware_.current_decays["5"] == (du + 1) / 4096


def test_no_current_where_the_chip_has_the_reset_or_the_layer_leaks():
    assert not any(isinstance(m, CubaChipNeuron) for m in to_hardware(
        spiking_net("zero"), "loihi", soft_reset="current").modules())
    lif = snnedge.sequential(nn.Flatten(), nn.Linear(64, 8), snnedge.IF(), nn.Linear(8, 8),
                             snnedge.LIF(beta=0.9), nn.Linear(8, 2), input_shape=SHAPE)
    hw = to_hardware(lif, "loihi", soft_reset="current")
    assert isinstance(hw.layer("4"), ChipNeuron) and hw.hardware_.current_decays == {}
    for target in ("truenorth", "dynap-cnn"):  # they reset by subtraction
        assert not any(isinstance(m, CubaChipNeuron) for m in to_hardware(spiking_net(), target)
                       .modules())


def test_dense_and_event_engines_agree_and_brian2_refuses():
    hw = to_hardware(spiking_net(), "loihi", soft_reset="current")
    x = torch.rand(6, *SHAPE)
    a = snnedge.simulate(hw, x, 12, engine="dense")
    b = snnedge.simulate(hw, x, 12, engine="event")
    assert torch.equal(a.output, b.output) and a.spike_counts == b.spike_counts
    assert a.synaptic_events == b.synaptic_events and sum(a.spike_counts.values()) > 0
    with pytest.raises(ValueError, match="Layer '5' is a CubaChipNeuron, a temporal module that "
                                         "the brian2 engine cannot build"):
        snnedge.simulate(hw, x, 12, engine="brian2")


def test_a_network_with_the_current_saves_and_loads(tmp_path):
    hw = to_hardware(spiking_net(), "loihi", soft_reset="current")
    back = snnedge.load_network(snnedge.save_network(hw, tmp_path / "hw.pt"))
    assert back.hardware_ == hw.hardware_ and state_hash(back) == state_hash(hw)
    assert isinstance(back.layer("5"), CubaChipNeuron) and back.layer("5").current_decay == 2048
    x = torch.rand(4, *SHAPE)
    assert torch.equal(snnedge.simulate(back, x, 8).output, snnedge.simulate(hw, x, 8).output)


def test_bad_arguments_are_clear_errors():
    net = spiking_net()
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"'current_decay' parameter of to_hardware must be a "
                                             r"float in \(0, 1\]"):
            to_hardware(net, "loihi", current_decay=bad)
    with pytest.raises(ValueError, match="'current_decay' parameter of to_hardware must be a finite"):
        to_hardware(net, "loihi", current_decay="half")
    with pytest.raises(ValueError, match="applies to chips with a synaptic current register "
                                         "\\(Loihi\\); 'truenorth' has none"):
        to_hardware(net, "truenorth", current_decay=0.5)
    dynapse = snnedge.sequential(nn.Flatten(), nn.Linear(64, 8, bias=False), snnedge.IF(),
                                 nn.Linear(8, 2, bias=False), input_shape=SHAPE)
    with pytest.raises(ValueError, match="'dynap-se' is analog"):
        to_hardware(dynapse, "dynap-se", current_decay=0.5)
    with pytest.raises(TypeError, match="'membrane' parameter of CubaChipNeuron must be a "
                                        "ChipNeuron in integer mode"):
        CubaChipNeuron(ChipNeuron(1.0, integer=False), 2048)
    with pytest.raises(ValueError, match=r"'current_decay' parameter of CubaChipNeuron must be "
                                         r"an integer in \[0, 4096\]"):
        CubaChipNeuron(membrane(100.0), 5000)
    with pytest.raises(ValueError, match="'current_bits' parameter of CubaChipNeuron"):
        CubaChipNeuron(membrane(100.0), 2048, 12, 1)
    with pytest.raises(ValueError, match="computes exactly in float64"):
        CubaChipNeuron(membrane(100.0), 2048).forward_block(
            torch.ones(2, 1, 1), (torch.zeros(1, 1), torch.zeros(1, 1)), 2)
