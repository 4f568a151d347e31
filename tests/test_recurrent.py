"""Recurrent networks: inputs read one step late (snnedge.previous) close loops through a
neuron; loops run step by step while the rest keeps its blocks. Checked against loops written
by hand in float64, across engines and block sizes, through training, save/load, mapping and
brian2, and their construction errors."""
import pytest
import torch
from torch import nn

import snnedge
from snnedge import Node, previous
from snnedge.executor import loop_plan


def rnn(neuron=None, seed=0, hidden=6):
    """input -> Flatten -> fc -> (+ rec(z[t-1])) -> neuron -> out; a second loop on conv."""
    torch.manual_seed(seed)
    return snnedge.SpikingNetwork([
        Node("flat", nn.Flatten(), ("input",)),
        Node("fc", nn.Linear(8, hidden), ("flat",)),
        Node("rec", nn.Linear(hidden, hidden), (previous("lif"),)),
        Node("sum", snnedge.Add(), ("fc", "rec")),
        Node("lif", neuron or snnedge.LIF(beta=0.9, threshold=0.6), ("sum",)),
        Node("out", nn.Linear(hidden, 3), ("lif",)),
    ], input_shape=(2, 4))


def by_hand(net, x, cuba=False):
    """The network's loop written out in float64: I[t] = W x[t] + b + R z[t-1] + c."""
    W, b = net.fc.weight.double(), net.fc.bias.double()
    R, c = net.rec.weight.double(), net.rec.bias.double()
    Wo, bo = net.out.weight.double(), net.out.bias.double()
    lif = net.lif
    B, T = x.shape[:2]
    v = torch.zeros(B, W.shape[0], dtype=torch.float64)
    i = torch.zeros_like(v)
    z = torch.zeros_like(v)
    spikes, acc = 0.0, torch.zeros(B, 3, dtype=torch.float64)
    theta = float(lif.threshold)
    for t in range(T):
        cur = x[:, t].reshape(B, -1).double() @ W.T + b + z @ R.T + c
        if cuba:
            i = float(lif.beta_syn) * i + cur
            cur = i
        v = float(lif.beta) * v + cur
        z = (v >= theta).double()
        v = v - z * theta
        spikes += float(z.sum())
        acc = acc + z @ Wo.T + bo
    return spikes, acc


@pytest.mark.parametrize("cuba", [False, True])
@pytest.mark.parametrize("engine", ["dense", "event", "auto"])
@pytest.mark.parametrize("block_steps", [1, 4, None])
def test_loop_equals_the_loop_written_by_hand(cuba, engine, block_steps):
    net = rnn(snnedge.CubaLIF(beta=0.9, beta_syn=0.7, threshold=0.6) if cuba else None)
    x = torch.rand(5, 13, 2, 4, generator=torch.Generator().manual_seed(1)) * 1.5
    spikes, acc = by_hand(net, x, cuba)
    res = snnedge.simulate(net, x, encoding="sequence", engine=engine, block_steps=block_steps,
                           dtype=torch.float64)
    assert res.spike_counts["lif"] == spikes > 0
    torch.testing.assert_close(res.output, acc, rtol=0, atol=1e-12)
    # every spike of lif is sent to rec (counted when sent: the last step's arrive after the
    # end) and to out
    assert res.synaptic_events["rec"] == 6 * spikes and res.synaptic_events["out"] == 3 * spikes


def test_static_input_runs_the_same_with_direct_encoding():
    net = rnn()
    x = torch.rand(4, 2, 4, generator=torch.Generator().manual_seed(2))
    a = snnedge.simulate(net, x, timesteps=9, dtype=torch.float64)
    b = snnedge.simulate(net, x.unsqueeze(1).expand(4, 9, 2, 4).contiguous(), encoding="sequence",
                         dtype=torch.float64)
    assert torch.equal(a.output, b.output) and a.spike_counts == b.spike_counts


def test_views_shapes_and_plan():
    net = rnn()
    assert net.recurrent_edges == (("lif", "rec"),)
    assert net.delayed_inputs_of("rec") == ("lif",) and net.inputs_of("rec") == ("lif",)
    assert net.consumers_of("lif") == ("rec", "out") and net.readout_names == ("out",)
    assert [n.inputs for n in net.nodes][2] == ("lif[t-1]",)
    assert net.shapes((2, 4))["rec"] == (6,)
    assert loop_plan(net) == (("flat",), ("fc",), ("rec", "sum", "lif"), ("out",))
    assert "recurrent=['lif->rec']" in repr(net)


def test_self_loop_and_two_loops_in_a_chain():
    torch.manual_seed(3)
    net = snnedge.SpikingNetwork([
        Node("fc", nn.Linear(4, 5), ("input",)),
        Node("sum", snnedge.Add(), ("fc", previous("a"))),  # a's spikes back with weight 1
        Node("a", snnedge.IF(threshold=1.5), ("sum",)),
        Node("fc2", nn.Linear(5, 5), ("a",)),
        Node("rec2", nn.Linear(5, 5), (previous("b"),)),
        Node("sum2", snnedge.Add(), ("fc2", "rec2")),
        Node("b", snnedge.LIF(beta=0.8, threshold=0.4), ("sum2",)),
        Node("out", nn.Linear(5, 2), ("b",))], input_shape=(4,))
    assert len(loop_plan(net)) == 5
    x = torch.rand(3, 10, 4, generator=torch.Generator().manual_seed(4))
    W, c = net.fc.weight.double(), net.fc.bias.double()
    va, za = torch.zeros(3, 5, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64)
    vb, zb = va.clone(), za.clone()
    counts = [0.0, 0.0]
    for t in range(10):
        va = va + x[:, t].double() @ W.T + c + za
        za = (va >= 1.5).double()
        va = va - 1.5 * za
        vb = 0.8 * vb + za @ net.fc2.weight.double().T + net.fc2.bias.double() \
            + zb @ net.rec2.weight.double().T + net.rec2.bias.double()
        zb = (vb >= 0.4).double()
        vb = vb - 0.4 * zb
        counts[0] += float(za.sum())
        counts[1] += float(zb.sum())
    res = snnedge.simulate(net, x, encoding="sequence", dtype=torch.float64, block_steps=3)
    assert [res.spike_counts["a"], res.spike_counts["b"]] == counts and min(counts) > 0


def test_gradients_flow_through_the_loop():
    net = rnn(snnedge.CubaLIF(beta=0.9, beta_syn=0.6, threshold=0.5)).double()
    x = torch.rand(4, 10, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out = net(x.transpose(0, 1))  # time-first call, differentiable
    out.sum().backward()
    assert net.rec.weight.grad is not None and net.rec.weight.grad.abs().sum() > 0
    assert torch.equal(out.sum(0).detach(), snnedge.simulate(net, x, encoding="sequence").output)


def test_save_load_and_training_view_keep_the_recurrent_edges(tmp_path):
    net = rnn()
    back = snnedge.load_network(snnedge.save_network(net, tmp_path / "rnn.pt"))
    assert back.recurrent_edges == net.recurrent_edges
    view = snnedge.training.training_view(net)
    assert view.recurrent_edges == net.recurrent_edges
    x = torch.rand(3, 8, 2, 4)
    a = snnedge.simulate(net, x, encoding="sequence")
    b = snnedge.simulate(back, x, encoding="sequence")
    assert torch.equal(a.output, b.output)


@pytest.mark.parametrize("bptt", ["full", "checkpoint", "truncated"])
def test_fit_trains_a_recurrent_cubalif_on_every_bptt_mode(bptt):
    net = rnn(snnedge.CubaLIF(beta=0.9, beta_syn=0.7, threshold=0.5))
    g = torch.Generator().manual_seed(6)
    x = (torch.rand(32, 12, 2, 4, generator=g) < 0.3).float()
    y = (x[:, :6].sum((1, 2, 3)) > x[:, 6:].sum((1, 2, 3))).long()  # more events early or late
    before = net.rec.weight.detach().clone()
    hist = snnedge.fit(net, (x, y), epochs=2, encoding="sequence", bptt=bptt, block_steps=4,
                       batch_size=16, progress=False)
    assert hist.timesteps == 12 and len(hist.loss) == 2
    assert not torch.equal(before, net.rec.weight)


def test_mapping_a_recurrent_network():
    from neuromorphic_targets import map_network
    m = map_network(rnn(), "loihi")
    assert m.feasible and [r.neuron_layer for r in m.per_layer][:1] == ["lif"]
    assert m.row("lif").fan_in == 8 + 6  # the input's 8 and the 6 fed back


def test_brian2_runs_the_recurrent_network_the_same():
    net = rnn()
    x = (torch.rand(3, 10, 2, 4, generator=torch.Generator().manual_seed(7)) < 0.5).float()
    a = snnedge.simulate(net, x, encoding="sequence", dtype=torch.float64)
    b = snnedge.simulate(net, x, encoding="sequence", engine="brian2")
    assert a.spike_counts == b.spike_counts and a.synaptic_events == b.synaptic_events
    torch.testing.assert_close(a.output, b.output)


@pytest.mark.parametrize("nodes, message", [
    ([Node("fc", nn.Linear(3, 3), ("input",)), Node("sum", snnedge.Add(), ("fc", previous("fc"))),
      Node("if", snnedge.IF(), ("sum",))],
     r"Layer 'sum' reads 'fc\[t-1\]', the previous step of Linear 'fc'; a recurrent edge must start "
     r"at a neuron"),
    ([Node("fc", nn.Linear(3, 3), ("input",)), Node("if", snnedge.IF(), ("fc",)),
      Node("sum", snnedge.Add(), ("if", previous("if"))), Node("out", nn.Linear(3, 2), ("sum",))],
     r"Layer 'sum' reads 'if\[t-1\]', but 'if' does not depend on 'sum': a delayed input must close "
     r"a loop"),
    ([Node("fc", nn.Linear(3, 3), ("input",)), Node("sum", snnedge.Add(), ("fc", previous("nope"))),
      Node("if", snnedge.IF(), ("sum",))],
     r"reads 'nope\[t-1\]', but there is no layer 'nope'"),
    ([Node("fc[t-1]", nn.Linear(3, 3), ("input",))], r"Layer name 'fc\[t-1\]' ends in '\[t-1\]'"),
    ([Node("fc", nn.Linear(3, 3), ("input",)), Node("a", snnedge.IF(), ("fc",)),
      Node("rec", nn.Linear(3, 3), (previous("b"),)), Node("b", snnedge.IF(), ("rec",)),
      Node("sum", snnedge.Add(), ("a", "b")), Node("out", nn.Linear(3, 2), ("sum",))],
     r"Cannot infer the shape of 'b' from input shape \(3,\): its loop has no input of known shape"),
])
def test_construction_errors_name_the_layer(nodes, message):
    with pytest.raises(ValueError, match=message):
        snnedge.SpikingNetwork(nodes, input_shape=(3,)).shapes((3,))


def test_the_output_may_be_a_neuron_on_a_loop():
    torch.manual_seed(8)
    net = snnedge.SpikingNetwork([
        Node("fc", nn.Linear(4, 3), ("input",)), Node("rec", nn.Linear(3, 3), (previous("lif"),)),
        Node("sum", snnedge.Add(), ("fc", "rec")), Node("lif", snnedge.IF(threshold=0.5), ("sum",))],
        input_shape=(4,))
    assert net.output_name == "lif" and net.readout_names == ()
    res = snnedge.simulate(net, torch.rand(3, 6, 4), encoding="sequence")
    assert float(res.output.sum()) == res.spike_counts["lif"] > 0


def test_previous_refuses_a_marked_name():
    assert previous("a.b") == "a.b[t-1]"
    with pytest.raises(ValueError, match="previous"):
        previous("a[t-1]")
