"""Reset by subtraction on Loihi as NxTF's two-compartment neuron (TwoCompartmentChipNeuron):
golden traces of the integer update worked out by hand, NxTF's recurrent weight, the
compartments the mapping counts, to_hardware's options, the engines, saving, and the errors.

NxTF (intel-nrc-ecosystem/models, nxsdk_modules_ncl/dnn/src/dnn_layers.py, dnn_mapper.py;
neither runs here) builds a neuron that resets by subtraction from a dendrite compartment that
takes the synapses and the bias and never resets, a soma that fires when the dendrite's
voltage crosses vth, and a synapse from the soma back to the dendrite of weight
-weightMantSR * 2^weightExpSR (<< 6), with

    weightExpSR  = clip(ceil(log2(vThMant / 256)), 0, 7)
    weightMantSR = clip(rint(vThMant / 2^weightExpSR), 0, 255)

A spike crosses a synapse in one step, so per step, in chip units:

    u = wrap(round(I) - theta_sr * z_prev, 24);  v = clamp(decay(v) + u + bias, +-(2^23 - 1))
    z = v > theta
"""
import pathlib
import sys

import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import (
    compare,
    estimate_energy,
    get_profile,
    map_network,
    to_hardware,
)
from neuromorphic_targets.hardware import DEFAULT_SOFT_RESET
from neuromorphic_targets.hardware_cuba import CubaChipNeuron
from neuromorphic_targets.hardware_soft import TwoCompartmentChipNeuron, reset_weight
from snnedge.chip_neuron import ChipNeuron

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from model_digest import state_hash  # noqa: E402

SHAPE = (1, 8, 8)
V_MAX = 2 ** 23 - 1


def dendrite(theta, bias=None, v_init=None, decay=None, v_max=V_MAX, current_bits=24):
    return ChipNeuron(theta, bias, v_init, "zero", decay=decay, v_min=-v_max, v_max=v_max,
                      current_bits=current_bits, strict=True, integer=True)


def run(neuron, drive):
    drive = torch.as_tensor(drive, dtype=torch.float64)
    state = neuron.initial_state(drive[0])
    return neuron.forward_block(drive, state, drive.shape[0])


def column(*values):
    return [[[float(v)]] for v in values]


def spiking_net(reset="subtract"):
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(reset=reset, v_init=0.5),
                              nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 16, 16),
                              snnedge.IF(reset=reset, v_init=0.5), nn.Linear(16, 8),
                              snnedge.IF(reset=reset), nn.Linear(8, 4), input_shape=SHAPE)


# -- the integer update, by hand -----------------------------------------------------------
def test_golden_trace_of_a_burst():
    # theta = theta_sr = 100; input 300 at t=0:
    #   t  u                  v (dendrite)   z (soma)
    #   0  300 - 0 = 300      300            1
    #   1  0 - 100 = -100     200            1
    #   2  -100               100            0   (Loihi fires when v > theta)
    #   3  0                  100            0
    # the float neuron that resets by subtraction: 300 -> 200 -> 100 -> 100 (spikes 1, 1, 0, 0)
    z, (v, last) = run(TwoCompartmentChipNeuron(dendrite(100.0), 100.0), column(300, 0, 0, 0))
    assert z.flatten().tolist() == [1, 1, 0, 0] and v.item() == 100 and last.item() == 0
    sub, _ = run(ChipNeuron(100.0, reset="subtract", strict=True, integer=True), column(300, 0, 0, 0))
    assert torch.equal(z, sub)


def test_golden_trace_when_the_recurrent_weight_is_not_the_threshold():
    # theta = 100, theta_sr = 96: 300, 204, 108 fire; 12 stays
    z, (v, _) = run(TwoCompartmentChipNeuron(dendrite(100.0), 96.0), column(300, 0, 0, 0, 0))
    assert z.flatten().tolist() == [1, 1, 1, 0, 0] and v.item() == 12


def test_golden_trace_with_bias_initial_membrane_and_leak():
    # d = 2048 (v halves, toward zero, before the step's current): v0 = 10, bias 5, theta 100
    #   t0: floor(10 / 2) + 200 + 5 = 210     z = 1
    #   t1: floor(210 / 2) - 100 + 5 = 10     z = 0   (the leak acts before the subtraction)
    #   t2: floor(10 / 2) + 0 + 5 = 10        z = 0
    n = TwoCompartmentChipNeuron(dendrite(100.0, bias=5.0, v_init=10.0, decay=2048.0), 100.0)
    z, (v, _) = run(n, column(200, 0, 0))
    assert z.flatten().tolist() == [1, 0, 0] and v.item() == 10


def test_the_membrane_saturates_and_the_current_wraps():
    # v saturates at 1000: 5000 -> 1000 (z = 1), then 1000 - 100 = 900 (z = 1), 800
    z, (v, _) = run(TwoCompartmentChipNeuron(dendrite(100.0, v_max=1000), 100.0), column(5000, 0, 0))
    assert z.flatten().tolist() == [1, 1, 1] and v.item() == 800
    # an 8-bit current (-128..127): t0 u = 120, v = 120 > 50; t1 u = -100 - 50 = -150, which
    # wraps to -150 + 256 = 106, v = 226
    z, (v, _) = run(TwoCompartmentChipNeuron(dendrite(50.0, current_bits=8), 50.0), column(120, -100))
    assert z.flatten().tolist() == [1, 1] and v.item() == 226


def test_matches_a_plain_int64_loop_and_the_subtracting_chip_neuron():
    gen = torch.Generator().manual_seed(3)
    drive = torch.randint(-300, 900, (25, 4, 6), generator=gen).to(torch.float64)
    bias = torch.randint(-20, 30, (6,), generator=gen).to(torch.float64)
    v0 = torch.randint(0, 200, (6,), generator=gen).to(torch.float64)
    theta, theta_sr = torch.full((6,), 320.0), torch.tensor([320.0, 300, 320, 256, 320, 384])
    z, (v, _) = run(TwoCompartmentChipNeuron(dendrite(theta, bias, v0), theta_sr), drive)
    vv, zz, spikes = v0.to(torch.int64).expand(4, 6).clone(), torch.zeros(4, 6, dtype=torch.int64), []
    for t in range(25):
        u = drive[t].to(torch.int64) - zz * theta_sr.to(torch.int64)
        u = (u + 2 ** 23) % 2 ** 24 - 2 ** 23
        vv = (vv + u + bias.to(torch.int64)).clamp(-V_MAX, V_MAX)
        zz = (vv > 320).to(torch.int64)
        spikes.append(zz)
    assert torch.equal(z.to(torch.int64), torch.stack(spikes)) and torch.equal(v.to(torch.int64), vv)
    # where theta_sr == theta: the same spikes as a ChipNeuron that resets by subtraction
    same = TwoCompartmentChipNeuron(dendrite(theta, bias, v0), theta)
    sub = ChipNeuron(theta, bias, v0, "subtract", v_min=-V_MAX, v_max=V_MAX, current_bits=24,
                     strict=True, integer=True)
    assert torch.equal(run(same, drive)[0], run(sub, drive)[0])


def test_nxtfs_recurrent_weight():
    # vThMant -> (weightExpSR, weightMantSR) -> mant * 2^exp:
    #   100 -> (0, 100) 100;  255 -> (0, 255) 255;  256 -> (0, 256 -> 255) 255
    #   257 -> (1, rint(128.5) = 128) 256;  300 -> (1, 150) 300;  512 -> (1, 256 -> 255) 510
    #   40000 -> (ceil(7.29) = 8 -> 7, rint(312.5) = 312 -> 255) 32640
    mants = torch.tensor([100.0, 255, 256, 257, 300, 512, 40000])
    assert (reset_weight(mants * 64) / 64).tolist() == [100, 255, 255, 256, 300, 510, 32640]
    assert reset_weight(torch.tensor(100.0), state_shift=0).item() == 100


# -- to_hardware ---------------------------------------------------------------------------
def test_loihi_runs_layers_that_reset_by_subtraction_on_two_compartments():
    net = spiking_net()
    before = state_hash(net), repr(net)
    hw = to_hardware(net, "loihi")
    assert (state_hash(net), repr(net)) == before and hw.names == net.names
    assert DEFAULT_SOFT_RESET == "two-compartment"
    for name in ("1", "5", "7"):
        m = hw.layer(name)
        assert isinstance(m, TwoCompartmentChipNeuron) and m.reset == "subtract"
        assert torch.equal(m.reset_weight, reset_weight(m.membrane.threshold))
    assert hw.hardware_.compartments == {"1": 2, "5": 2, "7": 2}
    assert hw.hardware_.current_decays == {}
    assert any("layer '5': reset by subtraction as NxTF's two-compartment neuron" in n
               for n in hw.hardware_.notes)
    # the current path stays selectable; a current_decay alone selects it (as before)
    for kwargs in ({"soft_reset": "current"}, {"current_decay": 0.5}):
        cur = to_hardware(net, "loihi", **kwargs)
        assert isinstance(cur.layer("5"), CubaChipNeuron) and cur.hardware_.compartments == {}
    plain = to_hardware(net, "loihi", current_decay=1.0)
    assert isinstance(plain.layer("5"), ChipNeuron) and plain.layer("5").reset == "zero"
    # a network that resets to zero needs no second compartment
    zero = to_hardware(spiking_net("zero"), "loihi")
    assert not any(isinstance(m, TwoCompartmentChipNeuron) for m in zero.modules())
    assert zero.hardware_.compartments == {}


def test_the_mapping_counts_two_compartments_per_neuron():
    # 1024 neurons: one core of 1024 compartments in the float network, two on the chip
    net = snnedge.sequential(nn.Flatten(), nn.Linear(64, 1024), snnedge.IF(), nn.Linear(1024, 4),
                             input_shape=SHAPE)
    hw = to_hardware(net, "loihi")
    before, after = map_network(net, "loihi"), map_network(hw, "loihi")
    row_b, row_a = before.per_layer[0], after.per_layer[0]
    assert (row_b.cores, row_a.cores) == (1, 2)
    assert (row_b.neuron_utilisation, row_a.neuron_utilisation) == (1.0, 1.0)
    assert row_a.fan_in == row_b.fan_in + 1  # the soma's synapse back to its dendrite
    assert hw.hardware_.cores == after.cores == before.cores + 1
    assert to_hardware(net, "loihi", soft_reset="current").hardware_.cores == before.cores


def test_dense_and_event_engines_agree_and_brian2_refuses():
    hw = to_hardware(spiking_net(), "loihi")
    x = torch.rand(6, *SHAPE)
    a = snnedge.simulate(hw, x, 12, engine="dense")
    b = snnedge.simulate(hw, x, 12, engine="event")
    assert torch.equal(a.output, b.output) and a.spike_counts == b.spike_counts
    assert a.synaptic_events == b.synaptic_events and sum(a.spike_counts.values()) > 0
    with pytest.raises(ValueError, match="Layer '1' is a TwoCompartmentChipNeuron, a temporal "
                                         "module that the brian2 engine cannot build"):
        snnedge.simulate(hw, x, 12, engine="brian2")


# -- the recurrent synapse's synaptic events -----------------------------------------------
def test_each_soma_spike_crosses_its_recurrent_synapse_counted_by_hand():
    # input [1, 1] every step (direct: analog MACs into fc1), theta = 100 (v > theta fires),
    # theta_sr = (100, 100, 0): neuron 2's recurrent weight rounds to 0, so it has no synapse
    #   neuron 0, 100 per step:  v = 100, 200, 200, 200     z = 0, 1, 1, 1   3 spikes
    #   neuron 1, 250 per step:  v = 250, 400, 550, 700     z = 1, 1, 1, 1   4 spikes
    #   neuron 2,  60 per step:  v = 60, 120, 180, 240      z = 0, 1, 1, 1   3 spikes
    # readout fc2 = [[1, 1, 0], [1, 0, 1]]: fan-out 2, 1, 1, so 3*2 + 4*1 + 3*1 = 13 events
    # into it; the recurrent synapses: 3 + 4 (+ 0 for neuron 2) = 7 events of the layer itself
    fc1, fc2 = nn.Linear(2, 3, bias=False).double(), nn.Linear(3, 2, bias=False).double()
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[100.0, 0], [250, 0], [0, 60]]))
        fc2.weight.copy_(torch.tensor([[1.0, 1, 0], [1, 0, 1]]))
    soma = TwoCompartmentChipNeuron(dendrite(torch.full((3,), 100.0)),
                                    torch.tensor([100.0, 100, 0]))
    net = snnedge.sequential(fc1, soma, fc2, input_shape=(2,))
    for engine in ("dense", "event"):
        res = snnedge.simulate(net, torch.ones(1, 2, dtype=torch.float64), 4, engine=engine)
        assert res.neuron_spike_counts["1"].tolist() == [3, 4, 3]
        assert res.synaptic_events == {"2": 13, "1": 7} and res.total_synaptic_events == 20
    assert soma.own_synapses((3,)).tolist() == [1, 1, 0]
    # a neuron of one compartment has none (the core's default)
    assert snnedge.IF().own_synapses((3,)) is None


def test_the_recurrent_events_are_counted_and_priced_on_loihi_only():
    # events with two compartments = feed-forward events + soma spikes of those layers
    net, x = spiking_net(), torch.rand(6, *SHAPE)
    hw = to_hardware(net, "loihi")
    res = snnedge.simulate(hw, x, 12)
    soft = [n for n in hw.neuron_layers if isinstance(hw.layer(n), TwoCompartmentChipNeuron)]
    assert soft == ["1", "5", "7"] and all(res.spike_counts[n] > 0 for n in soft)
    weighted = [n for n in hw.names if hw.kind(n) == "weighted"]
    forward = sum(res.synaptic_events.get(n, 0) for n in weighted)
    fan = {n: (hw.layer(n).weight != 0).sum(0).double() for n in ("4", "6", "8")}
    pooled = nn.functional.avg_pool2d(res.neuron_spike_counts["1"], 2, divisor_override=1)
    assert forward == int((pooled.reshape(-1) * fan["4"]).sum()
                          + (res.neuron_spike_counts["5"] * fan["6"]).sum()
                          + (res.neuron_spike_counts["7"] * fan["8"]).sum())
    assert {n: res.synaptic_events[n] for n in soft} == {n: res.spike_counts[n] for n in soft}
    assert res.total_synaptic_events == forward + sum(res.spike_counts[n] for n in soft)
    # priced: the energy of the chip network counts them
    e = estimate_energy(res, map_network(hw, "loihi"))
    per = res.total_synaptic_events / res.num_samples
    assert e.breakdown["synaptic_events"].count == per
    assert e.breakdown["synaptic_events"].joules == pytest.approx(
        per * get_profile("loihi").e_synop_j.value)
    # ... and so does compare(..., hardware_data=) on its Loihi row
    row = compare(snnedge.simulate(net, x, 12), snn=net, targets=["loihi"], baselines=[],
                  hardware_data=(x, None)).row("loihi", 12)
    assert row.synaptic_events == per
    # the other paths and chips: one entry per weighted layer, as before
    for other in (to_hardware(net, "loihi", soft_reset="current"), to_hardware(net, "dynap-cnn"),
                  to_hardware(spiking_net("zero"), "loihi")):
        assert set(snnedge.simulate(other, x, 12).synaptic_events) <= set(weighted)


def test_a_network_with_two_compartments_saves_and_loads(tmp_path):
    hw = to_hardware(spiking_net(), "loihi")
    back = snnedge.load_network(snnedge.save_network(hw, tmp_path / "hw.pt"))
    assert back.hardware_ == hw.hardware_ and state_hash(back) == state_hash(hw)
    assert isinstance(back.layer("5"), TwoCompartmentChipNeuron)
    assert torch.equal(back.layer("5").reset_weight, hw.layer("5").reset_weight)
    x = torch.rand(4, *SHAPE)
    assert torch.equal(snnedge.simulate(back, x, 8).output, snnedge.simulate(hw, x, 8).output)


def test_bad_arguments_are_clear_errors():
    net = spiking_net()
    with pytest.raises(ValueError, match="'soft_reset' parameter of to_hardware"):
        to_hardware(net, "loihi", soft_reset="half")
    with pytest.raises(ValueError, match="'current_decay' parameter of to_hardware applies to "
                                         "soft_reset='current'"):
        to_hardware(net, "loihi", soft_reset="two-compartment", current_decay=0.5)
    with pytest.raises(ValueError, match="'soft_reset' parameter of to_hardware applies to Loihi"):
        to_hardware(net, "truenorth", soft_reset="two-compartment")
    dynapse = snnedge.sequential(nn.Flatten(), nn.Linear(64, 8, bias=False), snnedge.IF(),
                                 nn.Linear(8, 2, bias=False), input_shape=SHAPE)
    with pytest.raises(ValueError, match="'dynap-se' is analog"):
        to_hardware(dynapse, "dynap-se", soft_reset="current")
    with pytest.raises(TypeError, match="'membrane' parameter of TwoCompartmentChipNeuron must be "
                                        "a ChipNeuron in integer mode"):
        TwoCompartmentChipNeuron(ChipNeuron(1.0, integer=False), 1.0)
    with pytest.raises(ValueError, match="'reset_weight' parameter of TwoCompartmentChipNeuron"):
        TwoCompartmentChipNeuron(dendrite(100.0), -3.0)
    with pytest.raises(ValueError, match="'reset_weight' parameter of TwoCompartmentChipNeuron"):
        TwoCompartmentChipNeuron(dendrite(100.0), 2.5)
    with pytest.raises(ValueError, match="computes exactly in float64"):
        n = TwoCompartmentChipNeuron(dendrite(100.0), 100.0)
        n.forward_block(torch.ones(2, 1, 1), n.initial_state(torch.zeros(1, 1)), 2)
