"""estimate_energy: static x latency + per-event costs; unknown figures stay unknown."""
import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import snnedge
from neuromorphic_targets import estimate_energy, get_profile, map_network

NET_SHAPE = (1, 8, 8)


def small_net():
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(threshold=0.5), nn.AvgPool2d(2),
                              nn.Conv2d(4, 4, 3, padding=1), snnedge.IF(threshold=0.5), nn.Flatten(),
                              nn.Linear(4 * 4 * 4, 3), input_shape=NET_SHAPE)


NET = small_net()
MAPS = {p: map_network(NET, p) for p in ("truenorth", "dynap-se", "dynap-cnn", "loihi")}
RES = snnedge.simulate(NET, torch.rand(5, *NET_SHAPE), timesteps=10, encoding="poisson", seed=1)


def test_truenorth_static_and_dynamic_by_hand():
    m, res = MAPS["truenorth"], RES
    e = estimate_energy(res, m)
    tn = get_profile("truenorth")
    # static = 42 mW x chips x T x 1 ms
    assert e.latency_s == pytest.approx(10 * 1e-3)
    assert e.static_j == pytest.approx(0.042 * m.chips * 10 * 1e-3)
    # dynamic = synaptic events per inference x 11.18 pJ (+ splitter copies at the same cost)
    syn = res.total_synaptic_events / res.num_samples
    assert e.breakdown["synaptic_events"].joules == pytest.approx(syn * tn.e_synop_j.value)
    copies = sum(float((res.neuron_spike_counts[k].double() * d * (d > 1)).sum())
                 for k, d in m.destinations.items()) / res.num_samples
    assert e.breakdown["splitters"].joules == pytest.approx(copies * tn.e_synop_j.value)
    assert e.dynamic_j == pytest.approx((syn + copies) * tn.e_synop_j.value)
    assert e.total_j == pytest.approx(e.static_j + e.dynamic_j)
    assert e.complete and not e.is_lower_bound and e.total == e.total_j
    for kind in ("spikes", "routing", "neuron_updates"):
        assert e.breakdown[kind].status == "included" and e.breakdown[kind].joules is None
    assert "Merolla" in e.breakdown["static"].source
    pro_rata = estimate_energy(res, m, static_scope="cores")
    assert pro_rata.static_j == pytest.approx(0.042 * m.cores / 4096 * 10e-3)


def test_unknown_figures_are_reported_not_zero():
    e = estimate_energy(RES, MAPS["dynap-cnn"])
    assert e.total_j is None and e.static_j is None and e.dynamic_j is None
    assert not e.complete and {"static", "spikes", "synaptic_events"} <= set(e.missing)
    assert all(t.joules is None for t in e.breakdown.values())
    d = estimate_energy(RES, MAPS["dynap-se"])
    assert d.static_j is None and "static" in d.missing and d.total_j > 0 and d.is_lower_bound
    assert "unverified" in d.breakdown["spikes"].source
    assert "lower bound" in d.table() and "unknown" in d.table()


def test_dynapse_deliveries_and_loihi_updates_by_hand():
    se, lo = get_profile("dynap-se"), get_profile("loihi")
    n = RES.num_samples
    deliveries = sum(float((RES.neuron_spike_counts[k].double() * d).sum())
                     for k, d in MAPS["dynap-se"].destinations.items()) / n
    d = estimate_energy(RES, MAPS["dynap-se"])
    assert d.breakdown["broadcast"].joules == pytest.approx(deliveries * 6.84e-9)
    assert d.breakdown["spikes"].joules == pytest.approx(RES.total_spikes / n * se.e_spike_j.value)
    e = estimate_energy(RES, MAPS["loihi"])
    neurons = 4 * 8 * 8 + 4 * 4 * 4 + 3
    assert e.breakdown["neuron_updates"].joules == pytest.approx(neurons * 10 * 52e-12)
    assert e.breakdown["synaptic_events"].joules == pytest.approx(
        RES.total_synaptic_events / n * lo.e_synop_j.value)
    assert e.breakdown["routing"].status == "unknown" and e.latency_s is None


def test_direct_encoding_input_is_unknown():
    res = snnedge.simulate(NET, torch.rand(3, *NET_SHAPE), timesteps=4, encoding="direct")
    e = estimate_energy(res, MAPS["truenorth"])
    assert "input" in e.missing and e.is_lower_bound
    assert e.breakdown["input"].count == pytest.approx(sum(res.input_macs.values()) / 3)


def test_mismatched_result_and_mapping():
    other = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(), nn.Linear(3, 2), input_shape=(4,))
    res = snnedge.simulate(other, torch.rand(2, 4), timesteps=3)
    with pytest.raises(ValueError, match="same network"):
        estimate_energy(res, MAPS["truenorth"])
    with pytest.raises(ValueError, match="'static_scope'"):
        estimate_energy(RES, MAPS["truenorth"], static_scope="board")
    with pytest.raises(TypeError):
        estimate_energy(RES, "truenorth")


def _scaled(res, spikes: dict, syn: dict, samples: int):
    """A SimulationResult with the given per-neuron spike counts and synaptic events."""
    return dataclasses.replace(
        res, neuron_spike_counts=spikes, spike_counts={k: int(v.sum()) for k, v in spikes.items()},
        synaptic_events=syn, input_macs={}, num_samples=samples)


counts = st.integers(min_value=0, max_value=50)


@given(seed=st.integers(0, 10_000), extra=counts, extra_syn=st.integers(0, 10_000),
       profile=st.sampled_from(["truenorth", "dynap-se", "loihi"]))
def test_energy_is_monotone_in_activity(seed, extra, extra_syn, profile):
    g = torch.Generator().manual_seed(seed)
    base = {k: torch.randint(0, 20, v.shape, generator=g) for k, v in RES.neuron_spike_counts.items()}
    more = {k: v + torch.randint(0, extra + 1, v.shape, generator=g) for k, v in base.items()}
    syn = {k: int(torch.randint(0, 10_000, (1,), generator=g)) for k in RES.synaptic_events}
    syn_more = {k: v + extra_syn for k, v in syn.items()}
    m = MAPS[profile]
    lo = estimate_energy(_scaled(RES, base, syn, 4), m)
    hi = estimate_energy(_scaled(RES, more, syn_more, 4), m)
    assert hi.total_j >= lo.total_j
    assert (hi.dynamic_j or 0) >= (lo.dynamic_j or 0)
    for kind, t in lo.breakdown.items():
        if t.joules is not None:
            assert hi.breakdown[kind].joules >= t.joules
    assert hi.static_j == lo.static_j  # static depends on time, not activity
