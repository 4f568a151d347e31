"""The tiler is exact: closed-form counts equal the autograd structural map on every core and
every neuron, and the chosen tiling equals a brute-force enumeration of all candidate tilings
(issue 17). Reference comparisons over random layers (Hypothesis): convolution shapes,
strides, dilations, padding (numbers, "same", reflect/replicate/circular), groups and
depthwise, sparse kernels, pools before, residual joins, Linear after Flatten."""
import pathlib
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import snnedge
from neuromorphic_targets import map_network
from neuromorphic_targets.graph import NetworkGraph
from neuromorphic_targets.receptive import population_terms
from neuromorphic_targets.tile_counts import ClosedFormTiles
from neuromorphic_targets.tiling import (AutogradTiles, candidate_tilings, choose_tiling, evaluate,
                                         representative_neuron, representative_tile, tile_counter)
from snnedge import Node, SpikingNetwork

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from mapping_nets import PINNED, grouped_issue17  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
examples = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same_report(a, b) -> bool:
    return (a.tiling == b.tiling and torch.equal(a.axons, b.axons) and set(a.destinations) == set(b.destinations)
            and all(torch.equal(a.destinations[s], b.destinations[s]) for s in a.destinations))


def brute_force(graph, pop, cap, max_axons=None, max_fanout=None):
    """Every candidate checked on every core by autograd; the rule of choose_tiling applied to
    the full reports (fewest cores among those within the limits; ties: destinations of the
    representative neuron, axons of the representative core, the box)."""
    reports = [evaluate(graph, pop, c) for c in candidate_tilings(pop.shape, cap)]

    def fits(r):
        return ((max_axons is None or int(r.axons.max()) <= max_axons)
                and (max_fanout is None or r.max_destinations <= max_fanout))

    def key(r):
        fan = max(int(d[representative_neuron(tuple(d.shape))]) for d in r.destinations.values())
        axons = int(r.axons[representative_tile(r.tiling)]) if max_axons is not None else 0
        out = (max_axons is not None and axons > max_axons) or (max_fanout is not None and fan > max_fanout)
        return out, r.tiling.n_tiles, fan, axons, r.tiling.tile

    ok = [r for r in reports if fits(r)]
    if ok:
        fewest = min(r.tiling.n_tiles for r in ok)
        return min((r for r in ok if r.tiling.n_tiles == fewest), key=key)
    return min(reports, key=key)


# -- the pinned networks: every population in closed form, every candidate exact ----------------
@pytest.mark.parametrize("net_name", sorted(PINNED))
def test_closed_form_equals_autograd_on_candidates(net_name):
    net = PINNED[net_name]()
    graph = NetworkGraph(net, net.input_shape)
    for pop in graph.populations:
        counter = tile_counter(graph, pop)
        assert isinstance(counter, ClosedFormTiles), (net_name, pop.name)
        cands = [c for c in candidate_tilings(pop.shape, 256) if c.n_tiles <= 200]  # autograd cost
        for c in cands[::max(1, len(cands) // 8)]:
            ref = evaluate(graph, pop, c)
            assert same_report(counter.report(c), ref), (net_name, pop.name, c.tile)
            assert counter.max_axons(c) == int(ref.axons.max())
            assert counter.max_destinations(c) == ref.max_destinations


# -- random layers against brute force ----------------------------------------------------------
@st.composite
def conv_layers(draw):
    c_in = draw(st.integers(1, 4))
    groups = draw(st.sampled_from([1, 1, 2, c_in])) if c_in > 1 else 1
    c_in = c_in if c_in % groups == 0 else groups
    c_out = groups * draw(st.integers(1, 3))
    h, w = draw(st.integers(3, 8)), draw(st.integers(3, 8))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = draw(st.sampled_from([1, 1, 2]))
    padding = draw(st.sampled_from([0, 1, 2, "same", "valid"]))
    stride = 1 if padding == "same" else draw(st.sampled_from([1, 2, 3]))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    if mode != "zeros" and (padding in ("valid", 0) or (isinstance(padding, int) and padding >= min(h, w))):
        mode = "zeros"
    pool = draw(st.sampled_from([None, None, (2, 2, 0), (3, 2, 1), (2, 1, 0)]))
    sparsity = draw(st.sampled_from([0.0, 0.0, 0.5]))
    skip = draw(st.booleans())
    return dict(c_in=c_in, c_out=c_out, h=h, w=w, k=k, stride=stride, padding=padding,
                dilation=dilation, groups=groups, mode=mode, pool=pool, sparsity=sparsity, skip=skip,
                seed=draw(st.integers(0, 3)))


def build(p):
    """input -> conv -> IF (source) -> [pool] -> conv under test [+ 1x1 skip of the source] -> IF."""
    torch.manual_seed(p["seed"])
    nodes = [Node("stem", nn.Conv2d(1, p["c_in"], 1)), Node("src", snnedge.IF())]
    prev = "src"
    if p["pool"]:
        k, s, pad = p["pool"]
        nodes.append(Node("pool", nn.AvgPool2d(k, s, pad), (prev,)))
        prev = "pool"
    conv = nn.Conv2d(p["c_in"], p["c_out"], p["k"], stride=p["stride"], padding=p["padding"],
                     dilation=p["dilation"], groups=p["groups"], padding_mode=p["mode"])
    if p["sparsity"]:
        with torch.no_grad():
            g = torch.Generator().manual_seed(p["seed"])
            conv.weight.mul_((torch.rand(conv.weight.shape, generator=g) > p["sparsity"]).float())
    nodes.append(Node("conv", conv, (prev,)))
    out = "conv"
    net = SpikingNetwork(nodes + [Node("if", snnedge.IF(), (out,))], input_shape=(1, p["h"], p["w"]))
    if p["skip"]:
        shape = net.shapes((1, p["h"], p["w"]))["conv"]
        if shape[1:] == (p["h"], p["w"]):
            nodes += [Node("proj", nn.Conv2d(p["c_in"], p["c_out"], 1), ("src",)),
                      Node("add", snnedge.Add(), ("conv", "proj"))]
            out = "add"
    return SpikingNetwork(nodes + [Node("if", snnedge.IF(), (out,))], input_shape=(1, p["h"], p["w"]))


@examples
@given(conv_layers(), st.sampled_from([4, 8, 16, 40]), st.sampled_from([None, 6, 12, 30]),
       st.sampled_from([None, 1, 2, 4]))
def test_choice_equals_brute_force_on_random_conv_layers(p, cap, max_axons, max_fanout):
    try:
        net = build(p)
        graph = NetworkGraph(net, net.input_shape)
    except ValueError:  # the window does not fit the input
        return
    pop = graph.population("if")
    counter = tile_counter(graph, pop)
    assert isinstance(counter, ClosedFormTiles)
    got = choose_tiling(graph, pop, cap, max_axons=max_axons, max_fanout=max_fanout)
    want = brute_force(graph, pop, cap, max_axons=max_axons, max_fanout=max_fanout)
    assert same_report(got, want), (got.tiling.tile, want.tiling.tile)
    for c in candidate_tilings(pop.shape, cap)[::3]:
        assert same_report(counter.report(c), evaluate(graph, pop, c)), c.tile


@examples
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 12),
       st.sampled_from([None, (2, 2), (3, 1)]), st.sampled_from([0.0, 0.7]), st.integers(0, 3),
       st.sampled_from([3, 8]), st.sampled_from([None, 20]), st.sampled_from([None, 2]))
def test_linear_after_flatten_equals_brute_force(c, h, w, n, pool, sparsity, seed, cap, max_axons,
                                                 max_fanout):
    torch.manual_seed(seed)
    mods = [nn.Conv2d(1, c, 1), snnedge.IF()]
    if pool and pool[0] <= min(h, w):
        mods.append(nn.AvgPool2d(*pool))
    mods.append(nn.Flatten())
    net0 = snnedge.sequential(*mods, input_shape=(1, h, w))
    flat = net0.shapes((1, h, w))[net0.output_name][0]
    linear = nn.Linear(flat, n)
    with torch.no_grad():
        linear.weight.mul_((torch.rand(linear.weight.shape) > sparsity).float())
    net = snnedge.sequential(*mods, linear, snnedge.IF(), input_shape=(1, h, w))
    graph = NetworkGraph(net, (1, h, w))
    pop = graph.populations[-1]
    assert isinstance(tile_counter(graph, pop), ClosedFormTiles)
    got = choose_tiling(graph, pop, cap, max_axons=max_axons, max_fanout=max_fanout)
    assert same_report(got, brute_force(graph, pop, cap, max_axons=max_axons, max_fanout=max_fanout))


# -- issue 17's grouped CNN, and the autograd fallback -------------------------------------------
def test_grouped_cnn_maps_feasibly_on_truenorth():
    net = grouped_issue17()
    m = map_network(net, "truenorth")
    assert m.feasible, m.problems
    # Layer '2': 32 channels of 5x5 positions, groups of 16 output channels reading 8 input
    # channels x 25 taps = 200 <= 256 axons: one position of one group per core, 2 x 25 cores.
    row = m.row("2")
    assert (row.fan_in, row.tile, row.cores, row.max_axons) == (200, (16, 1, 1), 50, 200)
    graph = NetworkGraph(net, net.input_shape)
    pop = graph.population("3")
    want = brute_force(graph, pop, 256, max_axons=256)
    assert want.tiling.tile == (16, 1, 1) and int(want.axons.max()) <= 256


def test_layers_outside_the_closed_form_fall_back_to_autograd_exactly():
    torch.manual_seed(0)
    net = SpikingNetwork([
        Node("fc", nn.Linear(6, 2 * 4 * 4)), Node("fc_if", snnedge.IF()),
        Node("unflat", nn.Unflatten(1, (2, 4, 4))),
        Node("conv", nn.Conv2d(2, 3, 3, padding=1)), Node("if", snnedge.IF()),
    ], input_shape=(6,))
    graph = NetworkGraph(net, (6,))
    pop = graph.population("if")
    assert population_terms(graph, pop) is None
    counter = tile_counter(graph, pop)
    assert isinstance(counter, AutogradTiles)
    for max_axons in (None, 20):
        got = choose_tiling(graph, pop, 8, max_axons=max_axons, counter=counter)
        assert same_report(got, brute_force(graph, pop, 8, max_axons=max_axons))
    assert map_network(net, "truenorth").row("conv").fan_in == 18


# -- layers added with issue 15: spiking max pools, Narrow, ChannelShuffle ----------------------
def routing_nets():
    from converters.maxpool import SpikingAdaptiveMaxPool2d, SpikingMaxPool2d
    torch.manual_seed(0)
    pools = [SpikingMaxPool2d(3, 2, 1), SpikingMaxPool2d(3, 1, 1), SpikingMaxPool2d(2, keep_shape=True),
             SpikingMaxPool2d(2, ceil_mode=True), SpikingAdaptiveMaxPool2d(3)]
    for pool in pools:
        yield repr(pool), snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(), pool,
                                             nn.Conv2d(4, 6, 3, padding=1, groups=2), snnedge.IF(),
                                             input_shape=(1, 7, 7))
    yield "narrow+shuffle", SpikingNetwork([
        Node("stem", nn.Conv2d(1, 6, 3, padding=1)), Node("stem_if", snnedge.IF()),
        Node("shuffle", nn.ChannelShuffle(3), ("stem_if",)),
        Node("left", snnedge.Narrow(1, 0, 2), ("shuffle",)),
        Node("rows", snnedge.Narrow(2, 1, 4), ("left",)),
        Node("conv", nn.Conv2d(2, 4, 3, padding=1), ("rows",)), Node("if", snnedge.IF()),
    ], input_shape=(1, 6, 5))


def test_routing_and_channel_layers_in_closed_form():
    for label, net in routing_nets():
        graph = NetworkGraph(net, net.input_shape)
        pop = graph.populations[-1]
        counter = tile_counter(graph, pop)
        assert isinstance(counter, ClosedFormTiles), label
        for c in candidate_tilings(pop.shape, 24)[::2]:
            assert same_report(counter.report(c), evaluate(graph, pop, c)), (label, c.tile)
        for limits in ({"max_axons": 20}, {"max_fanout": 2}):
            got = choose_tiling(graph, pop, 24, counter=counter, **limits)
            assert same_report(got, brute_force(graph, pop, 24, **limits)), (label, limits)


class OwnRouting(snnedge.TemporalModule):
    """A shape-keeping router whose events go to the mirrored position: no window explains it,
    so the closed form must refuse it (and the autograd map reads its structural model)."""

    emits_spikes = False

    def initial_state(self, template):
        return None

    def forward_block(self, current, state, steps, static=False):
        return current.flip(-1), state

    def structural(self, x):
        return x.flip(-1)


def test_a_routing_module_no_window_explains_falls_back():
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(1, 2, 3, padding=1), snnedge.IF(), OwnRouting(),
                             nn.Conv2d(2, 2, (1, 2)), snnedge.IF(), input_shape=(1, 4, 5))
    graph = NetworkGraph(net, net.input_shape)
    pop = graph.populations[-1]
    assert population_terms(graph, pop) is None
    got = choose_tiling(graph, pop, 4, max_axons=6)
    assert same_report(got, brute_force(graph, pop, 4, max_axons=6))
