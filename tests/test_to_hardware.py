"""to_hardware: each chip's arithmetic on a copy of the network (the input is never changed),
integers within each format's ranges, DYNAP-SE's shared weights and seeded mismatch, and the
errors for what a chip cannot run."""
import pathlib
import sys

import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import (Figure, HardwareError, get_profile, map_network,
                                  number_format, to_hardware)
from neuromorphic_targets.profiles import Profile
from snnedge.chip_neuron import ChipNeuron
from snnedge.formats import get_format

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from model_digest import state_hash  # noqa: E402

SHAPE = (1, 8, 8)


def digital_net(reset="subtract", lif=False):
    torch.manual_seed(0)
    neuron = snnedge.LIF(beta=0.8, reset=reset) if lif else snnedge.IF(reset=reset, v_init=0.5)
    return snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), neuron, nn.AvgPool2d(2), nn.Flatten(),
                              nn.Linear(4 * 16, 16), snnedge.IF(reset=reset), nn.Linear(16, 4),
                              input_shape=SHAPE)


def dynapse_net():
    """Every fan-in within DYNAP-SE's 64 CAM entries (9, 36, 64) and no biases."""
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(1, 4, 3, stride=2, bias=False), snnedge.IF(), nn.Flatten(),
                              nn.Linear(36, 64, bias=False), snnedge.IF(),
                              nn.Linear(64, 3, bias=False), input_shape=SHAPE)


@pytest.mark.parametrize("target", ["dynap-cnn", "truenorth", "loihi", "dynap-se"])
def test_the_given_network_is_never_changed(target):
    net = dynapse_net() if target == "dynap-se" else digital_net()
    before = state_hash(net), repr(net)
    hw = to_hardware(net, target)
    assert hw is not net and (state_hash(net), repr(net)) == before
    assert hw.names == net.names or target == "dynap-se"
    assert hw.neuron_layers == net.neuron_layers  # results and mappings name the same layers
    assert hw.hardware_.profile == target


@pytest.mark.parametrize("target", ["dynap-cnn", "truenorth", "loihi"])
def test_digital_networks_hold_integers_in_the_formats_ranges(target):
    fmt = get_format(target)
    hw = to_hardware(digital_net("zero" if target == "loihi" else "subtract"), target)
    unit = 2 ** fmt.state_shift
    for name in hw.names:
        m = hw.layer(name)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach()
            assert w.dtype == torch.float64 and torch.equal(w, w.round()), name
            assert torch.equal(w / unit, (w / unit).round())
            assert fmt.weight_min <= float(w.min()) / unit and float(w.max()) / unit <= fmt.weight_max
            if fmt.weight_even:
                assert bool(((w / unit) % 2 == 0).all())
        if isinstance(m, ChipNeuron):
            lo, hi = fmt.state_range
            assert (m.v_min, m.v_max) == (lo, hi) and m.strict == fmt.strict_threshold
            for t in (m.threshold, m.bias, m.v_init):
                assert torch.equal(t, t.round())
            assert 1 <= float(m.threshold.min()) and float(m.threshold.max()) <= fmt.threshold_max * unit
            step = 2 ** (2 ** fmt.bias_exponent_bits - 1)  # signed: one more step below zero
            assert -fmt.bias_max - step <= float(m.bias.min()) and float(m.bias.max()) <= fmt.bias_max
    if target == "truenorth":  # 4 distinct weights per neuron (output channel / unit)
        for name in ("0", "4", "6"):
            rows = hw.layer(name).weight.detach().reshape(hw.layer(name).weight.shape[0], -1)
            assert all(r[r != 0].unique().numel() <= 4 for r in rows)
    assert not any(isinstance(m, nn.AvgPool2d) for m in hw.modules())  # chips sum pools


@pytest.mark.parametrize("target", ["dynap-cnn", "truenorth", "loihi"])
def test_each_formats_membrane_saturates_at_its_lowest_value(target):
    # DYNAP-CNN's 16-bit membrane stops at -2^15, TrueNorth's 20-bit one at -2^19, Loihi's
    # 24-bit v at -(2^23 - 1) (lava's bit-accurate LIF clips symmetrically): a drive of the
    # lowest value for three ticks would overflow each register, and saturates instead
    lo, hi = get_format(target).state_range
    assert (lo, hi) == {"dynap-cnn": (-2 ** 15, 2 ** 15 - 1), "truenorth": (-2 ** 19, 2 ** 19 - 1),
                        "loihi": (-(2 ** 23 - 1), 2 ** 23 - 1)}[target]
    neuron = to_hardware(digital_net("zero" if target == "loihi" else "subtract"), target).layer("1")
    drive = torch.full((3, 2, 4, 8, 8), float(lo), dtype=torch.float64)
    z, v = neuron.forward_block(drive, neuron.initial_state(drive[0]), 3)
    assert z.sum() == 0 and bool((v == lo).all())


def test_loihi_notes_the_reset_it_changes():
    hw = to_hardware(digital_net("subtract"), "loihi", soft_reset="current")
    assert all(hw.layer(n).reset == "zero" for n in hw.neuron_layers)
    assert any("reset 'subtract' runs as the chip's reset 'zero'" in n for n in hw.hardware_.notes)
    notes = to_hardware(digital_net("zero"), "loihi").hardware_.notes
    assert not any("reset" in n for n in notes)  # the chip has this reset: nothing to say
    lif = to_hardware(digital_net("zero", lif=True), "loihi").layer("1")
    assert lif.decay.item() == 4096 - round(0.2 * 4096)  # 12-bit dv = 819


def test_a_hardware_network_saves_and_loads_with_its_info(tmp_path):
    hw = to_hardware(digital_net(), "truenorth")
    back = snnedge.load_network(snnedge.save_network(hw, tmp_path / "hw.pt"))
    assert back.hardware_ == hw.hardware_ and state_hash(back) == state_hash(hw)
    x = torch.rand(4, *SHAPE)
    assert torch.equal(snnedge.simulate(back, x, 8).output, snnedge.simulate(hw, x, 8).output)


# -- DYNAP-SE: shared weights per core and frozen mismatch ------------------------------------
def test_dynapse_without_mismatch_is_deterministic_with_four_weights_per_core():
    net = dynapse_net()
    a, b = to_hardware(net, "dynap-se", mismatch=0.0), to_hardware(net, "dynap-se", mismatch=0.0, seed=5)
    assert state_hash(a) == state_hash(b)  # no draw at all
    m = map_network(net, "dynap-se")
    assert m.feasible
    w = a.layer("3").weight.detach()  # 64 neurons on one core: 2 excitatory + 2 inhibitory
    assert w[w > 0].unique().numel() <= 2 and w[w < 0].unique().numel() <= 2
    assert a.layer("1").reset == "zero" and not a.layer("1").integer


def test_dynapse_mismatch_is_seeded_and_sized_as_documented():
    net = dynapse_net()
    nominal = to_hardware(net, "dynap-se", mismatch=0.0)
    a, b = to_hardware(net, "dynap-se", seed=3), to_hardware(net, "dynap-se", seed=3)
    c = to_hardware(net, "dynap-se", seed=4)
    assert state_hash(a) == state_hash(b) and state_hash(a) != state_hash(c)
    assert a.hardware_.mismatch == pytest.approx(0.10) and a.hardware_.seed == 3  # the profile's default
    w0, w = nominal.layer("3").weight.detach(), a.layer("3").weight.detach()
    ratio = (w[w0 != 0] / w0[w0 != 0])
    assert torch.equal(w0 == 0, w == 0)  # mismatch moves weights, never makes synapses
    # per neuron and synapse type: sigma 10 % of the nominal value
    assert 0.07 < float(ratio.std()) < 0.13 and abs(float(ratio.mean()) - 1) < 0.03
    theta = a.layer("4").threshold
    assert theta.shape == (64,) and 0.07 < float(theta.std()) < 0.13
    stronger = to_hardware(net, "dynap-se", mismatch=0.3, seed=3).layer("4").threshold
    assert float(stronger.std()) > 2 * float(theta.std())


def test_dynapse_mismatch_reaches_time_constants_of_lif_layers():
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Linear(16, 32, bias=False), snnedge.LIF(beta=0.9),
                             nn.Linear(32, 3, bias=False), input_shape=(16,))
    beta = to_hardware(net, "dynap-se", seed=1).layer("1").beta
    tau = -1 / torch.log(beta)  # tau_j = tau * (1 + s e_j), tau = -1 / ln(0.9)
    assert 0.07 < float((tau / (-1 / torch.log(torch.tensor(0.9, dtype=torch.float64)))).std()) < 0.14


# -- bad input ---------------------------------------------------------------------------------
def test_a_profile_without_a_published_format_names_the_missing_figure():
    loihi = get_profile("loihi").replace(name="loihi-x", weight_bits=Figure(None, "bit", "unknown here"))
    with pytest.raises(ValueError, match="no published number format: weight_bits is unknown"):
        to_hardware(digital_net("zero"), loihi)
    with pytest.raises(ValueError, match="weight_bits"):
        number_format(loihi)
    with pytest.raises(ValueError, match="family '' \\) has no published number format|no published"):
        to_hardware(digital_net(), Profile(name="bare", description=""))


def test_a_network_that_does_not_map_is_refused_with_the_mappings_problems():
    torch.manual_seed(0)
    wide = snnedge.sequential(nn.Linear(300, 10), snnedge.IF(), nn.Linear(10, 2), input_shape=(300,))
    with pytest.raises(HardwareError, match="does not map onto 'truenorth'.*300 inputs.*axons_per_core"):
        to_hardware(wide, "truenorth")
    with pytest.raises(HardwareError, match="does not map onto 'dynap-se'.*cam_entries_per_neuron"):
        to_hardware(digital_net(), "dynap-se")


def test_bad_arguments_are_clear_errors():
    net = digital_net()
    with pytest.raises(ValueError, match="'mismatch' parameter of to_hardware must be a float in \\[0"):
        to_hardware(dynapse_net(), "dynap-se", mismatch=-0.1)
    with pytest.raises(ValueError, match="applies to analog chips; 'truenorth' is digital"):
        to_hardware(net, "truenorth", mismatch=0.1)
    assert to_hardware(net, "truenorth", mismatch=0.0).hardware_.mismatch is None
    with pytest.raises(TypeError, match="SpikingNetwork"):
        to_hardware(nn.Linear(2, 2), "truenorth")
    no_shape = snnedge.sequential(nn.Linear(4, 4), snnedge.IF(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="input_shape"):
        to_hardware(no_shape, "truenorth")
    assert to_hardware(no_shape, "truenorth", input_shape=(4,)).input_shape == (4,)


def test_what_a_chip_cannot_hold_names_the_layer():
    with pytest.raises(HardwareError, match="Layer '1' is a LIF neuron.*'truenorth'.*snnedge.IF"):
        to_hardware(digital_net(lif=True), "truenorth")
    torch.manual_seed(0)
    biased = snnedge.sequential(nn.Linear(16, 8), snnedge.IF(), nn.Linear(8, 2, bias=False),
                                input_shape=(16,))
    with pytest.raises(HardwareError, match="biases.*DYNAP-SE neurons have no bias.*bias=False"):
        to_hardware(biased, "dynap-se")
    scaled = snnedge.sequential(nn.Linear(16, 8), snnedge.Scale(2.0), snnedge.IF(), nn.Linear(8, 2),
                                input_shape=(16,))
    with pytest.raises(ValueError, match="Layer '1' is a Scale"):
        to_hardware(scaled, "loihi")


def test_docstring_examples_run():
    import doctest

    import neuromorphic_targets.hardware as module
    result = doctest.testmod(module, verbose=False)
    assert result.attempted > 0 and result.failed == 0
