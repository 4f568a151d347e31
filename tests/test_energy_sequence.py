"""Energy and mapping for sequence input: input events counted as each chip counts them
(TrueNorth's input axons, DYNAP-CNN's event input), per sequence and per second of input."""
import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import estimate_energy, map_network

SHAPE = (2, 8, 8)


def net():
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(2, 4, 3, padding=1), snnedge.IF(threshold=0.5), snnedge.SumPool2d(2),
                              nn.Conv2d(4, 4, 3, padding=1), snnedge.IF(threshold=0.5), nn.Flatten(),
                              nn.Linear(4 * 16, 3), input_shape=SHAPE)


NET = net()
FRAMES = (torch.rand(5, 12, *SHAPE, generator=torch.Generator().manual_seed(1)) < 0.15).float() * 2
RES = snnedge.simulate(NET, FRAMES, encoding="sequence")


def test_truenorth_counts_one_axon_delivery_per_input_event_and_core():
    m = map_network(NET, "truenorth")
    assert m.input_destinations.shape == SHAPE and int(m.input_destinations.min()) >= 1
    e = estimate_energy(RES, m)
    term = e.breakdown["input_events"]
    expected = float((RES.input_spike_counts * m.input_destinations.double()).sum()) / 5
    assert term.count == pytest.approx(expected) and term.count_unit == "axon deliveries"
    assert term.status == "included" and e.complete
    # the input's synaptic events are priced with the rest
    assert RES.synaptic_events["0"] > 0


def test_dynapcnn_counts_each_input_event_once_per_layer_it_feeds():
    m = map_network(NET, "dynap-cnn")
    assert torch.equal(m.input_destinations, torch.ones(SHAPE, dtype=torch.long))
    e = estimate_energy(RES, m)
    assert e.breakdown["input_events"].count == pytest.approx(float(FRAMES.sum()) / 5)
    assert e.breakdown["input_events"].status == "unknown" and "input_events" in e.missing


def test_loihi_and_dynapse_input_terms_have_their_counts():
    lo = estimate_energy(RES, map_network(NET, "loihi"))
    assert lo.breakdown["input_events"].status == "unknown" and lo.breakdown["input_events"].count > 0
    se = estimate_energy(RES, map_network(NET, "dynap-se"))
    assert se.breakdown["input_routing"].count > 0 and "input_events" not in se.breakdown


def test_analog_sequences_have_no_input_events():
    res = snnedge.simulate(NET, torch.rand(2, 4, *SHAPE), encoding="sequence")
    e = estimate_energy(res, map_network(NET, "truenorth"))
    assert "input_events" not in e.breakdown and "input" in e.missing


def test_energy_per_second_of_input():
    e = estimate_energy(RES, map_network(NET, "truenorth"))
    # 12 frames of 10 ms: 0.12 s of input per sequence
    assert e.per_second_of_input(10e-3) == pytest.approx(e.total_j / 0.12)
    with pytest.raises(ValueError, match="'step_s' parameter of per_second_of_input"):
        e.per_second_of_input(0.0)
    assert estimate_energy(RES, map_network(NET, "dynap-cnn")).per_second_of_input(1e-3) is None
