"""Adaptive pools that only copy their input, folded into the linear layer they feed
(snnedge/replication.py): the same results as the network run layer by layer (to rounding,
bit for bit where each value is copied once), on every engine; the pool never runs; the
network is not changed; pools that do more than copy are left alone."""
import importlib

import pytest
import torch
from torch import nn

import snnedge
from snnedge.network import Node, SpikingNetwork
from snnedge.replication import FoldedView, copies, fold_replication, folded_linear

sim = importlib.import_module("snnedge.simulate")  # (snnedge.simulate is also the function)


def unfolded(monkeypatch):
    """Runs with the fold switched off: the reference."""
    monkeypatch.setattr(sim, "fold_replication", lambda net, shape: net)


def head(pool: nn.Module, conv_kernel=(4, 4), classes=5, copies_in=72, dtype=torch.float64):
    """(2, 4, 5) inputs -> conv -> IF -> pool -> flatten -> linear -> IF -> linear."""
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(2, 8, conv_kernel), snnedge.IF(threshold=0.5), pool, nn.Flatten(),
                             nn.Linear(copies_in, 20), snnedge.IF(threshold=0.5), nn.Linear(20, classes))
    return net.to(dtype)


def test_copies_only_where_each_output_cell_reads_one_input_cell():
    assert copies(nn.AdaptiveAvgPool2d((7, 7)), (512, 1, 1), (512, 7, 7)) == (7, 7)
    assert copies(nn.AdaptiveAvgPool2d((3, 4)), (8, 1, 2), (8, 3, 4)) == (3, 2)
    assert copies(nn.AdaptiveAvgPool2d(1), (8, 1, 1), (8, 1, 1)) == (1, 1)
    assert copies(nn.AdaptiveAvgPool2d(3), (8, 2, 2), (8, 3, 3)) is None  # windows overlap
    assert copies(nn.AdaptiveAvgPool2d(1), (8, 2, 2), (8, 1, 1)) is None  # a real average
    assert copies(nn.AdaptiveMaxPool2d(2), (8, 1, 1), (8, 2, 2)) is None  # (converted to neurons)
    assert copies(nn.AvgPool2d(1), (8, 1, 1), (8, 1, 1)) is None


@pytest.mark.parametrize("engine", ["dense", "event", "auto"])
def test_a_pool_that_copies_is_folded_into_the_linear_layer(monkeypatch, limit_policy, engine):
    """A (8, 1, 2) map copied into (8, 3, 4) cells (rh = 3, rw = 2) feeds a 96 -> 20 layer:
    run as 16 -> 20 on the map itself, the pool never called. Float64: the same spikes and
    outputs to rounding; the network and its weights unchanged."""
    pool = nn.AdaptiveAvgPool2d((3, 4))
    net = head(pool, copies_in=96)
    x = torch.rand(6, 2, 4, 5, dtype=torch.float64) * 3
    before = {k: v.clone() for k, v in net.state_dict().items()}
    view = fold_replication(net, (2, 4, 5))
    assert isinstance(view, FoldedView) and "2" not in view.names
    assert view.inputs_of("3") == ("1",) and view.consumers_of("1") == ("3",)
    assert view.get_submodule("4").in_features == 16 and view.shapes((2, 4, 5))["3"] == (16,)
    w = net.layer("4").weight.detach().view(20, 8, 1, 3, 2, 2).sum((3, 5)).reshape(20, 16)
    assert torch.allclose(view.get_submodule("4").weight, w, rtol=0, atol=1e-12)
    called = []
    pool.register_forward_hook(lambda *a: called.append(1))
    got = snnedge.simulate(net, x, timesteps=12, engine=engine)
    assert called == []  # folded away
    unfolded(monkeypatch)
    ref = snnedge.simulate(net, x, timesteps=12, engine=engine)
    assert called  # the reference ran it
    assert sum(ref.spike_counts.values()) > 0 and got.spike_counts == ref.spike_counts
    assert torch.allclose(got.output, ref.output, rtol=0, atol=1e-10)
    assert got.synaptic_events == ref.synaptic_events and got.total_synaptic_events > 0
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert net.layer("2") is pool and net.layer("4").in_features == 96


def test_a_pool_that_copies_once_is_dropped_bit_for_bit(monkeypatch):
    """ResNet's AdaptiveAvgPool2d(1) on a 1x1 map: the pool is dropped and the linear layer
    kept as it is (float32: equal bit for bit)."""
    net = head(nn.AdaptiveAvgPool2d(1), conv_kernel=(4, 5), copies_in=8, dtype=torch.float32)
    view = fold_replication(net, (2, 4, 5))
    assert "2" not in view.names and view.get_submodule("4") is net.layer("4")
    x = torch.rand(6, 2, 4, 5) * 3
    got = snnedge.simulate(net, x, timesteps=12, engine="dense")
    unfolded(monkeypatch)
    ref = snnedge.simulate(net, x, timesteps=12, engine="dense")
    assert got.spike_counts == ref.spike_counts and torch.equal(got.output, ref.output)


def test_pools_that_do_more_than_copy_or_feed_more_are_left_alone():
    # a real average (2x2 -> 1x1), then windows that overlap (2x2 -> 3x3)
    net = head(nn.AdaptiveAvgPool2d(1), conv_kernel=(3, 4), copies_in=8)
    assert fold_replication(net, (2, 4, 5)) is net
    net = head(nn.AdaptiveAvgPool2d(3), conv_kernel=(3, 4))
    assert fold_replication(net, (2, 4, 5)) is net
    # the flattened copies read by a second layer too
    torch.manual_seed(0)
    net = SpikingNetwork([Node("conv", nn.Conv2d(2, 8, 4)), Node("if", snnedge.IF()),
                          Node("pool", nn.AdaptiveAvgPool2d(2)), Node("flat", nn.Flatten()),
                          Node("fc", nn.Linear(32, 4)), Node("fc2", nn.Linear(32, 4), ("flat",)),
                          Node("add", snnedge.Add(), ("fc", "fc2"))])
    assert fold_replication(net, (2, 4, 4)) is net
    # a flatten that keeps the channels apart
    net = snnedge.sequential(nn.Conv2d(2, 8, 4), snnedge.IF(), nn.AdaptiveAvgPool2d(2),
                             nn.Flatten(2), nn.Flatten(), nn.Linear(32, 4))
    assert fold_replication(net, (2, 4, 4)) is net


def test_the_folded_layer_follows_the_weights():
    """Kept while the weights are unchanged; rebuilt after an in-place update."""
    lin = nn.Linear(8 * 4, 3)
    first = folded_linear(lin, (8, 1, 1), 2, 2)
    assert folded_linear(lin, (8, 1, 1), 2, 2) is first
    with torch.no_grad():
        lin.weight.add_(1.0)
    second = folded_linear(lin, (8, 1, 1), 2, 2)
    assert second is not first
    assert torch.allclose(second.weight, first.weight + 4.0, atol=1e-5)
    assert torch.equal(second.bias, lin.bias.detach()) and not second.weight.requires_grad


def test_two_pools_that_copy_one_layer_s_output_are_both_folded(monkeypatch):
    """One neuron layer read by two such pools, each into its own flatten and linear layer:
    the view hands the neurons both flattens as readers; results equal the unfolded run."""
    torch.manual_seed(0)
    net = SpikingNetwork([Node("conv", nn.Conv2d(2, 8, 4)), Node("if", snnedge.IF(threshold=0.5)),
                          Node("p1", nn.AdaptiveAvgPool2d(2), ("if",)), Node("f1", nn.Flatten()),
                          Node("fc1", nn.Linear(32, 4)),
                          Node("p2", nn.AdaptiveAvgPool2d(3), ("if",)), Node("f2", nn.Flatten()),
                          Node("fc2", nn.Linear(72, 4)), Node("add", snnedge.Add(), ("fc1", "fc2"))]).double()
    view = fold_replication(net, (2, 4, 4))
    assert view.consumers_of("if") == ("f1", "f2") and "p1" not in view.names and "p2" not in view.names
    x = torch.rand(5, 2, 4, 4, dtype=torch.float64) * 3
    got = snnedge.simulate(net, x, timesteps=10, engine="dense")
    unfolded(monkeypatch)
    ref = snnedge.simulate(net, x, timesteps=10, engine="dense")
    assert sum(ref.spike_counts.values()) > 0 and got.spike_counts == ref.spike_counts
    assert torch.allclose(got.output, ref.output, rtol=0, atol=1e-10)
