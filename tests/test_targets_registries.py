"""One conformance suite over every registered hardware profile and conventional baseline
(STYLE.md habit 5): the registry contract they share, and the pricing contract their energy
estimates keep (every term is count x a cited figure, or says why it is not priced).

The figures of each family are checked in test_targets_profiles.py and test_baselines.py."""
import doctest
import json

import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import (estimate_baseline, estimate_energy, get_baseline, get_profile,
                                  map_network, register_baseline, register_profile)
from neuromorphic_targets import pricing, registry
from neuromorphic_targets.baselines import BASELINE_REGISTRY
from neuromorphic_targets.pricing import INCLUDED, PRICED, UNKNOWN, figure_source
from neuromorphic_targets.profiles import PROFILE_REGISTRY

SHAPE = (1, 8, 8)
REGISTRIES = {"profile": (PROFILE_REGISTRY, get_profile, register_profile),
              "baseline": (BASELINE_REGISTRY, get_baseline, register_baseline)}
ENTRIES = [(kind, name) for kind, (reg, _, _) in REGISTRIES.items() for name in reg.names()]


def _layers(spiking: bool) -> list[nn.Module]:
    torch.manual_seed(0)
    act = (lambda: snnedge.IF(threshold=0.5)) if spiking else nn.ReLU
    return [nn.Conv2d(1, 4, 3, padding=1), act(), nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
            act(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)]


NET = snnedge.sequential(*_layers(spiking=True), input_shape=SHAPE)
ANN = nn.Sequential(*_layers(spiking=False))
RES = snnedge.simulate(NET, torch.rand(3, *SHAPE), timesteps=6, encoding="poisson", seed=0)


def estimate(kind: str, name: str):
    if kind == "profile":
        return estimate_energy(RES, map_network(NET, name))
    return estimate_baseline(ANN, name, input_shape=SHAPE)


@pytest.mark.parametrize("kind,name", ENTRIES)
def test_registry_contract(kind, name):
    reg, get, register = REGISTRIES[kind]
    entry = get(name)
    assert entry.name == name and reg.entries[name] is entry and get(entry) is entry
    with pytest.raises(ValueError, match=f"A {kind} named '{name}' is already registered"):
        register(entry)
    assert register(entry, overwrite=True) is entry and get(name) is entry
    with pytest.raises(TypeError, match=f"register_{kind} expects a {reg.entry_type.__name__}"):
        register(name)
    with pytest.raises(ValueError) as err:
        get(name + "-not-registered")
    assert all(repr(other) in str(err.value) for other in reg.names())


@pytest.mark.parametrize("kind,name", ENTRIES)
def test_pricing_contract(kind, name):
    entry, est = REGISTRIES[kind][1](name), estimate(kind, name)
    assert est.profile == name and est.breakdown
    for key, t in est.breakdown.items():
        assert t.kind == key and t.status in (PRICED, UNKNOWN, INCLUDED), key
        if t.status == PRICED:
            fig = getattr(entry, t.cost_name)
            assert fig.known and t.cost == fig.value and t.joules == t.count * fig.value, key
            assert t.source == figure_source(fig) and t.source.strip(), key
        else:
            assert t.joules is None and t.cost is None and t.note, key
        if t.status == UNKNOWN and t.cost_name != "-":
            assert t.count is None or not getattr(entry, t.cost_name).known, key
    priced = [t.joules for t in est.breakdown.values() if t.status == PRICED]
    assert est.total_j == (sum(priced) if priced else None)
    assert est.missing == [k for k, t in est.breakdown.items() if t.status == UNKNOWN]
    assert est.complete == (not est.missing) == (not est.is_lower_bound)
    assert est.sources() == list(dict.fromkeys(t.source for t in est.breakdown.values()
                                               if t.status == PRICED))
    table = est.table()
    assert str(est) == table and name in table and ("lower bound" in table) == est.is_lower_bound
    assert all(k in table for k in est.breakdown)
    assert json.loads(json.dumps(est.to_dict()))["breakdown"].keys() == est.breakdown.keys()


@pytest.mark.parametrize("module", [registry, pricing])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted and not result.failed
