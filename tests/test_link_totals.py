"""connectivity.link_totals: every link's events from one product per source, as the
products one link at a time."""
import torch
from torch import nn

import snnedge
from snnedge.connectivity import SourceLink, link_totals, source_links
from snnedge.layers import INPUT


def _branchy() -> snnedge.SpikingNetwork:
    """Concatenated branches (weights broadcast over channels), a pool, a linear layer (a
    source without channels) and two targets of one source."""
    N = snnedge.Node
    return snnedge.SpikingNetwork([
        N("c1", nn.Conv2d(2, 4, 3, padding=1), (INPUT,)), N("n1", snnedge.IF(), ("c1",)),
        N("a", nn.Conv2d(4, 3, 1), ("n1",)), N("na", snnedge.IF(), ("a",)),
        N("b", nn.Conv2d(4, 5, 3, padding=1), ("n1",)), N("nb", snnedge.IF(), ("b",)),
        N("cat", snnedge.Concat(), ("na", "nb")),
        N("pool", nn.AvgPool2d(2), ("cat",)),
        N("flat", nn.Flatten(), ("pool",)),
        N("fc", nn.Linear(8 * 3 * 3, 6), ("flat",)), N("nf", snnedge.IF(), ("fc",)),
        N("out", nn.Linear(6, 3), ("nf",)),
    ], input_shape=(2, 6, 6))


def test_grouped_sums_equal_each_link_product():
    torch.manual_seed(0)
    net = _branchy()
    links = source_links(net, (2, 6, 6))
    shapes = {**net.shapes((2, 6, 6)), INPUT: (2, 6, 6)}
    counts = {s: torch.randint(0, 40, shapes[s]).to(torch.float64) for s in {l.source for l in links}}
    counts["n1"] = counts["n1"].permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels last
    assert any(l.weight.stride(0) == 0 for l in links if l.weight.dim() >= 2)  # both kinds met
    assert any(l.weight.dim() == 1 for l in links)
    assert sum(l.source == "n1" for l in links) == 2  # one source, two targets
    # a link made on the call (as own_links' are) takes its own product
    extra = SourceLink("nf", "nf", torch.full((6,), 2.0, dtype=torch.float64))
    for _ in range(2):  # grouped on the first call, reused on the second
        carried, totals = link_totals([*links, extra], counts)
        for l in [*links, extra]:
            assert carried[(l.source, l.target)] == float((counts[l.source] * l.weight).sum())
        for s, c in counts.items():
            assert totals[s] == float(c.sum())


def test_simulate_counts_events_link_by_link():
    torch.manual_seed(1)
    net = _branchy()
    x = torch.rand(3, 2, 6, 6)
    res = snnedge.simulate(net, x, timesteps=6, engine="dense")
    links = source_links(net, (2, 6, 6))
    counts = {**res.neuron_spike_counts}
    for target in {l.target for l in links}:
        want = sum(int(round(float((counts[l.source] * l.weight).sum())))
                   for l in links if l.target == target and l.source in counts)
        if any(l.source == INPUT for l in links if l.target == target):
            continue  # analog input: its MACs, not events
        assert res.synaptic_events[target] == want
    for k, c in counts.items():
        assert res.spike_counts[k] == int(c.sum())
