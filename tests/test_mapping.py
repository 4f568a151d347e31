"""map_network on TrueNorth, DYNAP-SE and Loihi: limits, hand-derived golden layouts, purity."""
import hashlib
import math
import pathlib
import sys

import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import Figure, estimate_energy, get_profile, map_network

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from mapping_nets import residual as residual_net, truenorth_designed, vgg_mnist  # noqa: E402


def state_hash(net):
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# -- acceptance: VGG-like infeasible, TrueNorth-designed feasible ---------------------------------
def test_vgg_infeasible_on_truenorth_naming_each_layer_and_limit():
    m = map_network(vgg_mnist(), "truenorth")
    assert not m.feasible
    text = "\n".join(m.problems)
    # conv '2': 32 channels x 3 x 3 = 288 inputs; conv '5' after a 2x2 pool: 32 x 9 x 4 = 1152;
    # readout '9' after a 2x2 pool: 64 x 7 x 7 x 4 = 12544. Conv '0' (fan-in 9) is fine.
    for layer, fan_in in (("'2'", 288), ("'5'", 1152), ("'9'", 12544)):
        line = next(p for p in m.problems if p.startswith(f"layer {layer}") or f"layer {layer}" in p)
        assert f"fan-in {fan_in}" in line and "256 axons" in line
    assert "'0'" not in text
    assert m.row("2").fan_in == 288 and m.row("0").fan_in == 9


def test_vgg_infeasible_on_dynapse_naming_each_layer_and_limit():
    m = map_network(vgg_mnist(), "dynap-se")
    assert not m.feasible
    for layer, fan_in in (("'2'", 288), ("'5'", 1152), ("'9'", 12544)):
        line = next(p for p in m.problems if f"layer {layer}" in p)
        assert f"fan-in {fan_in}" in line and "64 CAM entries" in line
    # 25088 + 25088 + 12544 neurons in cores of 256, plus the readout: 98 + 98 + 49 + 1 cores,
    # 4 cores per chip, 4 chips per board.
    assert m.cores_lower_bound == 246
    assert m.chips == math.ceil(m.cores / 4) and m.boards == math.ceil(m.chips / 4)


def test_truenorth_designed_network_is_feasible_and_above_the_lower_bound():
    net = truenorth_designed()
    m = map_network(net, "truenorth")
    assert m.feasible, m.problems
    # Lower bound: 12544/256 + 6272/256 + 1568/256 + 256/256 + 1 (readout) = 49+25+7+1+1 = 83.
    assert m.cores_lower_bound == 83
    assert m.cores >= m.cores_lower_bound
    for row in m.per_layer:
        assert row.cores >= math.ceil(row.neurons / 256)
        assert row.max_axons <= 256 and row.fan_in <= 256
        assert 0 < row.neuron_utilisation <= 1
    assert [r.fan_in for r in m.per_layer] == [9, 72, 72, 144, 256]
    assert m.cores == sum(r.cores + r.splitter_cores for r in m.per_layer)
    assert m.chips == 1 and m.boards is None
    assert "lower bound 83" in m.summary()


# -- hand-derived golden layouts -----------------------------------------------------------------
def test_truenorth_golden_splitters_and_receptive_field_tiling():
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Linear(50, 100), snnedge.IF(), nn.Linear(100, 600), snnedge.IF(),
                             nn.Linear(600, 10), input_shape=(50,))
    with torch.no_grad():  # readout output j reads inputs 60j..60j+59 only: fan-in 60
        w = torch.zeros(10, 600)
        for j in range(10):
            w[j, 60 * j:60 * (j + 1)] = torch.randn(60)
        net.layer("4").weight.copy_(w)
    m = map_network(net, "truenorth")
    assert m.feasible, m.problems
    a, b, out = m.per_layer
    # '0': 100 neurons, fan-in 50: one core (tile 100).
    assert (a.cores, a.tile, a.fan_in, a.max_axons) == (1, (100,), 50, 50)
    # '2': 600 neurons need 3 cores (tile ceil(600/3) = 200), each with all 100 inputs as axons.
    assert (b.cores, b.tile, b.max_axons) == (3, (200,), 100)
    # Each neuron of '1' reaches all 3 cores of '2': 3 splitter neurons each, 300 in all;
    # a splitter core holds floor(256/3) = 85 such groups, so ceil(100/85) = 2 cores.
    assert (a.fan_out_cores, a.splitter_neurons, a.splitter_cores) == (3, 300, 2)
    # Readout: a core of t outputs needs 60*t axons; t = 5 needs 300 > 256, t = 4 needs 240:
    # tiles (4,), 3 cores. Each neuron of '3' reaches one output, so no splitters.
    assert (out.cores, out.tile, out.max_axons, out.fan_out_cores) == (3, (4,), 240, None)
    assert (b.fan_out_cores, b.splitter_neurons) == (1, 0)
    assert m.cores == 1 + 3 + 3 + 2 and m.cores_lower_bound == 1 + 3 + 1


def test_truenorth_golden_conv_tiling_with_borders():
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(1, 8, 3, padding=1), snnedge.IF(), nn.Conv2d(8, 16, 3, padding=1),
                             snnedge.IF(), nn.Flatten(), nn.Linear(16 * 64, 10), input_shape=(1, 8, 8))
    m = map_network(net, "truenorth")
    first, second, out = m.per_layer
    # '2': 16 x 8 x 8 = 1024 neurons, at least 4 cores. Tile (16, 2, 8): two output rows over the
    # full width need 4 input rows x 8 columns (zero padding adds no axons) x 8 channels = 256
    # axons; border tiles need 3 rows: 192. Mean axon use (192 + 256 + 256 + 192) / 4 / 256.
    assert (second.cores, second.tile, second.max_axons) == (4, (16, 2, 8), 256)
    assert second.axon_utilisation == pytest.approx(896 / 4 / 256)
    # '0': tile (8, 4, 8), 2 cores, 5 input rows x 8 columns = 40 axons.
    assert (first.cores, first.tile, first.max_axons) == (2, (8, 4, 8), 40)
    # A neuron of '1' in row r reaches rows r-1..r+1 of '2', split in blocks of 2 rows: rows
    # 1..6 straddle two blocks. 8 channels x 6 rows x 8 columns = 384 neurons x 2 copies = 768
    # splitter neurons, 128 groups per splitter core: 3 cores.
    assert (first.fan_out_cores, first.splitter_neurons, first.splitter_cores) == (2, 768, 3)
    # Readout fan-in 1024 > 256: infeasible, and the problem says so.
    assert not m.feasible
    assert m.problems == [p for p in m.problems if "'5'" in p] and "fan-in 1024" in m.problems[0]
    assert m.cores == 2 + 4 + 1 + 3


def test_dynapse_fan_out_limit_names_layer_and_numbers():
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Linear(20, 40), snnedge.IF(), nn.Linear(40, 2000), snnedge.IF(),
                             input_shape=(20,))
    m = map_network(net, "dynap-se")
    # '3' has 2000 neurons: 8 cores of 250; each neuron of '1' reaches all 8 > 4 destinations.
    assert not m.feasible
    line = next(p for p in m.problems if "destination" in p)
    assert "'1'" in line and "8 cores" in line and "4 destination entries" in line
    assert m.row("2").cores == 8 and m.row("0").fan_out_cores == 8
    # 9 cores -> 3 chips (4 cores each) -> 1 board (4 chips each).
    assert (m.cores, m.chips, m.boards) == (9, 3, 1)


def test_dynapse_golden_small_network_is_feasible():
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(2, 4, 3, padding=1), snnedge.IF(), nn.AvgPool2d(2),
                             nn.Conv2d(4, 4, 3, padding=1, groups=4), snnedge.IF(), nn.Flatten(),
                             nn.Linear(4 * 4 * 4, 4), input_shape=(2, 8, 8))
    m = map_network(net, "dynap-se")
    # Fan-ins: 2*9 = 18; 1*9*4 (pool folded) = 36; 64 (readout): all within 64 CAM entries.
    assert [r.fan_in for r in m.per_layer] == [18, 36, 64]
    assert m.feasible, m.problems
    # 256 + 64 + 4 neurons: one core each; 3 cores -> 1 chip -> 1 board.
    assert (m.cores, m.chips, m.boards) == (3, 1, 1)


def test_loihi_counts_compartments_and_notes_what_it_cannot_check():
    m = map_network(vgg_mnist(), "loihi")
    # 25088/1024 -> 25, 25088/1024 -> 25, 12544/1024 -> 13, readout 1: lower bound 64.
    assert m.cores_lower_bound == 64 and m.cores >= 64 and m.chips == 1
    assert m.feasible
    assert any("synapse_bits" in n for n in m.notes)
    eight = get_profile("loihi").replace(
        name="loihi-8bit", synapse_bits=Figure(8, "bit", "assumption for a test", False))
    net = snnedge.sequential(nn.Linear(1000, 100), snnedge.IF(), nn.Linear(100, 10), input_shape=(1000,))
    m8 = map_network(net, eight)
    # '0': 100 neurons x 1000 synapses x 1 byte = 100,000 bytes of 131,072 on its one core.
    assert m8.row("0").memory_utilisation == pytest.approx(100_000 / 131_072)
    assert m8.feasible
    # At 16 bits the 200,000 bytes do not fit one core: two cores of 50 neurons (100,000 each).
    sixteen = eight.replace(synapse_bits=Figure(16, "bit", "assumption for a test", False))
    m16 = map_network(net, sixteen)
    assert m16.feasible and m16.row("0").cores == 2 and m16.row("0").tile == (50,)
    huge = eight.replace(synapse_bits=Figure(2048, "bit", "assumption for a test", False))
    mh = map_network(net, huge)  # one neuron's 1000 synapses need 256,000 bytes: cannot fit
    assert not mh.feasible and "256,000 bytes" in mh.problems[0]


# -- common contract -------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["truenorth", "dynap-se", "dynap-cnn", "loihi"])
def test_pure_and_deterministic_on_hand_built_graph(profile):
    net = residual_net()
    before = state_hash(net)
    training = [m.training for m in net.modules()]
    m1 = map_network(net, profile)
    m2 = map_network(net, get_profile(profile))
    assert state_hash(net) == before
    assert [m.training for m in net.modules()] == training
    assert m1.to_dict() == m2.to_dict()
    assert [r.layer for r in m1.per_layer] == ["stem", "block.conv1", "block.conv2", "fc"]
    assert [r.neuron_layer for r in m1.per_layer] == ["stem_if", "block.if1", "block.if2", None]
    # block.if2 gets block.conv2 (6 x 9 inputs) plus the identity skip from stem_if: 55.
    assert m1.row("block.if2").fan_in == 55
    assert m1.row("fc").fan_in == 6 * 4 * 4 * 4
    assert set(m1.destinations) == {"stem_if", "block.if1", "block.if2"}
    assert m1.table() and repr(m1).startswith("Mapping(")


def test_input_shape_and_type_errors():
    net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match="input_shape"):
        map_network(net, "truenorth")
    assert map_network(net, "truenorth", input_shape=(4,)).feasible
    with pytest.raises(TypeError, match="SpikingNetwork"):
        map_network(nn.Linear(4, 3), "truenorth", input_shape=(4,))
    with pytest.raises(ValueError, match="'spinnaker'"):
        map_network(net, "spinnaker", input_shape=(4,))
    with pytest.raises(ValueError, match="'0'"):
        map_network(net, "truenorth", input_shape=(5,))


def test_chained_weighted_layers_are_a_problem():
    net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(), nn.Linear(3, 3), nn.Linear(3, 2),
                             input_shape=(4,))
    m = map_network(net, "truenorth")
    assert not m.feasible and "'2' and '3'" in m.problems[0]


class PassGate(snnedge.TemporalModule):
    """A shape-keeping event router that owns no neurons (like a spiking max-pool gate)."""

    emits_spikes = False

    def initial_state(self, template):
        return None

    def forward_block(self, current, state, steps, static=False):
        return (current.expand(steps, *current.shape) if static else current), state


@pytest.mark.parametrize("profile", ["truenorth", "dynap-se", "loihi"])
def test_event_routing_modules_pass_events_through(profile):
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(1, 2, 3, padding=1), snnedge.IF(), PassGate(), snnedge.SumPool2d(2),
                             nn.Conv2d(2, 2, 3, padding=1), snnedge.IF(), nn.Flatten(),
                             nn.Linear(2 * 4 * 4, 3), input_shape=(1, 8, 8))
    m = map_network(net, profile)
    # The gate routes the spikes of '1'; after the 2x2 sum pool each neuron of '5' reads
    # 2 channels x 9 positions x 4 pooled neurons = 72 neurons of '1'.
    assert [r.neuron_layer for r in m.per_layer] == ["1", "5", None]
    assert m.row("4").fan_in == 72
    res = snnedge.simulate(net, torch.rand(2, 1, 8, 8), timesteps=4, encoding="poisson")
    assert estimate_energy(res, m).dynamic_j > 0


def test_fan_in_agrees_with_core_connectivity():
    """Reference comparison: the synapses into a population (sum of its neurons' fan-in) equal
    the synapses out of its source (sum of snnedge.connectivity's per-source fan-out)."""
    from snnedge.connectivity import source_links

    from neuromorphic_targets.graph import NetworkGraph

    net = vgg_mnist()
    graph = NetworkGraph(net, (1, 28, 28))
    links = {(ln.source, ln.target): float(ln.weight.sum()) for ln in source_links(net, (1, 28, 28))}
    for pop in graph.populations:
        (w,), (s,) = pop.weighted, pop.sources
        assert float(graph.fan_in(pop).sum()) == links[(s, w)]
