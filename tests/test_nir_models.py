"""NIR graphs other tools write, run in snnedge and held spike for spike (float64) to a small
reference written here from NIR's equations (not from snnedge's code): snnTorch's
export_to_nir (feed-forward, RLeaky, RSynaptic; flattened by nirtorch, and nested as
snnTorch's module exporter writes recurrent layers), the recurrent example of NIR's docs,
the NIR paper's N-MNIST CNN layout, and hand-built graphs for the node types no installed
peer writes (LI, I, Threshold, Delay, Conv1d, SumPool2d, AvgPool2d, Scale, Linear).

Needs nir (and snntorch for its graphs): run in the peers environment, e.g.
``PYTHONPATH=. /work/peersvenv/bin/python -m pytest tests/test_nir_models.py``.
"""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnedge
from snnedge import Node, previous
from snnedge.executor import Executor, Value

nir = pytest.importorskip("nir")
pytestmark = [pytest.mark.peers, pytest.mark.filterwarnings("ignore::DeprecationWarning:nirtorch")]

NEURONS = ("IF", "LIF", "CubaLIF", "LI", "I", "Threshold")


# -- the reference: NIR's equations, one step of dt, in float64 ------------------------------
class Reference:
    """Runs a flat NIR graph step by step from its nodes' equations (forward Euler, the
    synaptic current of a CubaLIF updated before the membrane reads it). Nodes run in a
    depth-first topological order from the Input; an edge that closes a cycle carries the
    value its source had at the end of the previous step (the network at rest, all neurons
    silent, before the first), so fed-back spikes arrive one step later."""

    def __init__(self, graph, dt, reset):
        self.g, self.dt, self.reset = graph, dt, reset
        self.preds = {k: [a for a, b in graph.edges if b == k] for k in graph.nodes}
        self.order = self._order()

    def _order(self):
        succ = {k: [b for a, b in self.g.edges if a == k] for k in self.g.nodes}
        start = next(k for k, n in self.g.nodes.items() if isinstance(n, nir.Input))
        seen, post = set(), []

        def visit(k):
            seen.add(k)
            for s in succ[k]:
                if s not in seen:
                    visit(s)
            post.append(k)
        visit(start)
        return post[::-1]

    def run(self, x):
        """x: (B, T, *input) -> {node: outputs (T, B, ...)} for every neuron node and the output."""
        x = torch.as_tensor(x, dtype=torch.float64)
        B, T = x.shape[:2]
        state = {}
        prev = self._rest(x[:, 0] * 0)
        record = {k: [] for k, n in self.g.nodes.items()
                  if type(n).__name__ in NEURONS or isinstance(n, nir.Output)}
        for t in range(T):
            vals = {}
            for k in self.order:
                node = self.g.nodes[k]
                if isinstance(node, nir.Input):
                    vals[k] = x[:, t]
                    continue
                ins = [vals[p] if p in vals else prev[p] for p in self.preds[k]]
                vals[k] = self._node(k, node, sum(ins[1:], ins[0]), state)
                if k in record:
                    record[k].append(vals[k])
            prev = vals
        return {k: torch.stack(v) for k, v in record.items()}

    def _rest(self, x0):
        vals = {}
        for k in self.order:
            node = self.g.nodes[k]
            if isinstance(node, nir.Input):
                vals[k] = x0
            elif type(node).__name__ in NEURONS or isinstance(node, nir.Delay):
                ins = [vals[p] for p in self.preds[k] if p in vals]
                vals[k] = torch.zeros_like(sum(ins[1:], ins[0]) if ins else None)
            else:
                ins = [vals[p] for p in self.preds[k] if p in vals]
                vals[k] = self._node(k, node, sum(ins[1:], ins[0]), {})
        # nodes whose inputs are only fed back get their value from the neurons' silence
        return vals

    def _node(self, k, n, i, state):
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
        dt = self.dt
        kind = type(n).__name__
        if kind == "Affine":
            return i @ t(n.weight).T + t(n.bias)
        if kind == "Linear":
            return i @ t(n.weight).T
        if kind == "Scale":
            return i * t(n.scale)
        if kind == "Output":
            return i
        if kind == "Flatten":
            s, e = int(n.start_dim), int(n.end_dim)
            return i.flatten(s + 1 if s >= 0 else s, e + 1 if e >= 0 else e)
        if kind == "Conv2d":
            pad = n.padding if isinstance(n.padding, str) else tuple(int(p) for p in np.atleast_1d(n.padding))
            return F.conv2d(i, t(n.weight), t(n.bias), tuple(np.atleast_1d(n.stride)), pad,
                            tuple(np.atleast_1d(n.dilation)), int(n.groups))
        if kind == "Conv1d":
            return F.conv1d(i, t(n.weight), t(n.bias), int(n.stride), int(n.padding), int(n.dilation),
                            int(n.groups))
        if kind in ("SumPool2d", "AvgPool2d"):
            k_, s_, p_ = (tuple(int(v) for v in np.atleast_1d(a)) for a in (n.kernel_size, n.stride, n.padding))
            return F.avg_pool2d(i, k_, s_, p_, divisor_override=1 if kind == "SumPool2d" else None)
        if kind == "Threshold":
            return (i > t(n.threshold)).double()
        if kind == "Delay":
            d = int(round(float(np.max(n.delay)) / dt))
            buf = state.setdefault(k, [torch.zeros_like(i)] * d)
            buf.append(i)
            return buf.pop(0)
        if kind in ("LI", "I"):
            v = state.get(k, torch.zeros_like(i))
            if kind == "I":
                v = v + dt * t(n.r) * i
            else:
                v = v + dt / t(n.tau) * (t(n.v_leak) - v + t(n.r) * i)
            state[k] = v
            return v
        if kind == "CubaLIF":
            cur = state.get(k + ".I", torch.zeros_like(i))
            cur = cur + dt / t(n.tau_syn) * (-cur + t(n.w_in) * i)
            state[k + ".I"] = cur
            v = state.get(k, torch.zeros_like(i))
            v = v + dt / t(n.tau_mem) * (t(n.v_leak) - v + t(n.r) * cur)
        elif kind == "LIF":
            v = state.get(k, torch.zeros_like(i))
            v = v + dt / t(n.tau) * (t(n.v_leak) - v + t(n.r) * i)
        elif kind == "IF":
            v = state.get(k, torch.zeros_like(i)) + dt * t(n.r) * i
        else:
            raise AssertionError(f"reference has no equation for {kind}")
        z = (v > t(n.v_threshold)).double()
        v = torch.where(z > 0, t(n.v_reset) if self.reset == "zero" else v - t(n.v_threshold), v)
        state[k] = v
        return z


def snnedge_steps(net, x):
    """Every layer's output at every step (T, B, ...) through the executor, in float64."""
    net = net.double()
    ex = Executor(net, "dense")
    with torch.no_grad():
        kept = ex.block(Value(x.double().transpose(0, 1).contiguous(), False), x.shape[1],
                        keep=tuple(net.names))
    return {k: v.per_step(x.shape[1]) for k, v in kept.items()}


def assert_matches_reference(graph, x, dt=1.0, reset="zero", names=None):
    net = snnedge.from_nir(graph, reset=reset, dt=dt)
    ref = Reference(graph, dt, reset).run(x)
    ours = snnedge_steps(net, x)
    checked = 0
    for key, z in ref.items():
        if isinstance(graph.nodes[key], nir.Output):
            out = ours[net.output_name]
            torch.testing.assert_close(out.reshape(z.shape), z, rtol=1e-9, atol=1e-9)
            continue
        name = (names or {}).get(key, key)
        if type(graph.nodes[key]).__name__ in ("LI", "I"):  # analog: the same up to rounding
            torch.testing.assert_close(ours[name].reshape(z.shape), z, rtol=1e-12, atol=1e-12)
        else:
            assert torch.equal(ours[name].reshape(z.shape), z), f"{key}: spikes differ"
        checked += 1
    assert checked >= 1
    return net, ref


def events(shape, t=25, seed=0, p=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(4, t, *shape, generator=g) < p).double()


def active(ref):
    """Some but not all neurons fire, in every spiking node (a test that can fail)."""
    for k, z in ref.items():
        if z.numel() and set(z.unique().tolist()) <= {0.0, 1.0} and k != "output":
            assert 0 < z.sum() < z.numel(), k


# -- graphs other tools write -----------------------------------------------------------------
def test_snntorch_feed_forward_export(tmp_path):
    snntorch = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir
    torch.manual_seed(0)
    st = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1),
                       snntorch.Leaky(beta=torch.full((4, 8, 8), 0.9), threshold=torch.full((4, 8, 8), 0.5),
                                      init_hidden=True),
                       nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 16, 10),
                       snntorch.Leaky(beta=torch.full((10,), 0.8), threshold=torch.ones(10),
                                      init_hidden=True, output=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nir.write(tmp_path / "ff.nir", export_to_nir(st, torch.rand(1, 1, 8, 8), ignore_dims=[0]))
    graph = nir.read(tmp_path / "ff.nir")
    _, ref = assert_matches_reference(graph, events((1, 8, 8)), dt=1e-4)
    active(ref)


@pytest.mark.parametrize("module", ["RLeaky", "RSynaptic"])
def test_snntorch_recurrent_exports_flat_and_nested(module, tmp_path):
    snntorch = pytest.importorskip("snntorch")
    from snntorch.export_nir import _extract_snntorch_module, export_to_nir
    torch.manual_seed(1)
    kw = {"beta": torch.full((6,), 0.9), "linear_features": 6, "init_hidden": True,
          "threshold": torch.full((6,), 0.5)}
    rec = (snntorch.RSynaptic(alpha=torch.full((6,), 0.7), **kw) if module == "RSynaptic"
           else snntorch.RLeaky(**kw))
    st = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), rec, nn.Linear(6, 3),
                       snntorch.Leaky(beta=torch.full((3,), 0.8), threshold=torch.full((3,), 0.5),
                                      init_hidden=True, output=True))
    with torch.no_grad():
        st[2].recurrent.weight.mul_(3.0)  # recurrence strong enough to matter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flat = export_to_nir(st, torch.rand(1, 2, 4), ignore_dims=[0])
    assert any(a == b2 and (b, a2) in flat.edges for a, b in flat.edges for a2, b2 in flat.edges
               if (a, b) != (a2, b2)) or ("2.lif", "2.w_rec") in flat.edges  # a cycle
    x = events((2, 4), seed=2, p=0.5)
    net, ref = assert_matches_reference(flat, x, dt=1e-4)
    active(ref)
    assert net.recurrent_edges == (("2.lif", "2.w_rec"),)
    # the same layer as snnTorch's module exporter writes it: a nested NIRGraph node
    sub = _extract_snntorch_module(st[2])
    assert isinstance(sub, nir.NIRGraph) and ("w_rec", "lif") in sub.edges
    nodes = {k: v for k, v in flat.nodes.items() if not k.startswith("2.")}
    nodes["2"] = sub
    edges = [(a, b) for a, b in flat.edges if not (a.startswith("2.") and b.startswith("2."))]
    edges = [(a.replace("2.lif", "2"), b.replace("2.lif", "2")) for a, b in edges]
    nested = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    nir.write(tmp_path / "nested.nir", nested)
    back = snnedge.from_nir(nir.read(tmp_path / "nested.nir"), reset="zero", dt=1e-4)
    a, b = snnedge_steps(net, x), snnedge_steps(back, x)
    for name in ("2.lif", "4"):
        assert torch.equal(a[name], b[name])


def test_nirs_recurrent_docs_example():
    # The spiking RNN of NIR's documentation (nirviz's srnn example): input -> affine1 -> cu1,
    # cu1 -> affine_rec -> cu1, cu1 -> affine2 -> cu2 -> output; parameters made valid here.
    rng = np.random.default_rng(3)
    ones = np.ones(5)

    def cuba(n, tau_mem, tau_syn):
        return nir.CubaLIF(tau_mem=np.full(n, tau_mem), tau_syn=np.full(n, tau_syn), r=np.full(n, 2.0),
                           v_leak=np.zeros(n), v_threshold=np.full(n, 0.4), w_in=np.full(n, 1.5))
    nodes = {"input": nir.Input(input_type=np.array([4])),
             "affine1": nir.Affine(weight=rng.normal(0, 0.8, (5, 4)), bias=rng.normal(0, 0.1, 5)),
             "cu1": cuba(5, 8.0, 4.0),
             "affine_rec": nir.Affine(weight=rng.normal(0, 0.6, (5, 5)), bias=0.05 * ones),
             "affine2": nir.Affine(weight=rng.normal(0, 0.8, (3, 5)), bias=np.zeros(3)),
             "cu2": cuba(3, 5.0, 2.0),
             "output": nir.Output(output_type=np.array([3]))}
    edges = [("input", "affine1"), ("affine1", "cu1"), ("affine_rec", "cu1"), ("cu1", "affine_rec"),
             ("cu1", "affine2"), ("affine2", "cu2"), ("cu2", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges)
    for reset in ("zero", "subtract"):
        net, ref = assert_matches_reference(graph, events((4,), t=40, seed=4, p=0.5), dt=1.0, reset=reset)
        active(ref)
    assert net.recurrent_edges == (("cu1", "affine_rec"),)


def test_the_nir_papers_nmnist_cnn_layout():
    # Pedersen et al. 2024's N-MNIST CNN as sinabs exports it: Conv2d, IF, SumPool2d, Conv2d,
    # IF, SumPool2d, Flatten, Affine, IF (small sizes, random weights).
    rng = np.random.default_rng(5)
    nodes = {"input": nir.Input(input_type=np.array([2, 12, 12])),
             "conv1": nir.Conv2d(input_shape=(12, 12), weight=rng.normal(0.1, 0.4, (4, 2, 3, 3)), stride=1,
                                 padding=1, dilation=1, groups=1, bias=np.zeros(4)),
             "if1": nir.IF(r=np.ones((4, 12, 12)), v_threshold=np.ones((4, 12, 12))),
             "pool1": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                    padding=np.array([0, 0])),
             "conv2": nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0.05, 0.4, (4, 4, 3, 3)), stride=2,
                                 padding=1, dilation=1, groups=1, bias=rng.normal(0, 0.1, 4)),
             "if2": nir.IF(r=np.ones((4, 3, 3)), v_threshold=np.full((4, 3, 3), 0.8)),
             "flat": nir.Flatten(input_type={"input": np.array([4, 3, 3])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(weight=rng.normal(0, 0.5, (3, 36)), bias=np.zeros(3)),
             "if3": nir.IF(r=np.ones(3), v_threshold=np.full(3, 0.5)),
             "output": nir.Output(output_type=np.array([3]))}
    keys = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(keys[:-1], keys[1:])))
    _, ref = assert_matches_reference(graph, events((2, 12, 12), seed=6), reset="subtract")
    active(ref)


# -- hand-built graphs for the node types no installed peer writes ----------------------------
def test_li_integrator_threshold_delay_scale_linear():
    rng = np.random.default_rng(7)
    nodes = {"input": nir.Input(input_type=np.array([5])),
             "lin": nir.Linear(weight=rng.normal(0, 1, (4, 5))),
             "li": nir.LI(tau=np.array([2.0, 4.0, 8.0, 3.0]), r=np.array([1.0, 2.0, 0.5, 1.5]),
                          v_leak=np.zeros(4)),
             "th": nir.Threshold(threshold=np.full(4, 0.3)),
             "delay": nir.Delay(delay=np.full(4, 3.0)),
             "scale": nir.Scale(scale=np.array([1.0, -2.0, 0.5, 3.0])),
             "integ": nir.I(r=np.full(4, 0.25)),
             "th2": nir.Threshold(threshold=np.full(4, 0.2)),
             "output": nir.Output(output_type=np.array([4]))}
    keys = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(keys[:-1], keys[1:])))
    net, ref = assert_matches_reference(graph, events((5,), t=30, seed=8, p=0.5))
    active(ref)
    kinds = [type(n.module).__name__ for n in net.nodes]
    assert kinds == ["Linear", "LI", "Threshold", "Delay", "Scale", "Integrator", "Threshold"]


def test_conv1d_avgpool_and_a_self_loop_through_a_lif():
    rng = np.random.default_rng(9)
    nodes = {"input": nir.Input(input_type=np.array([2, 10])),
             "conv": nir.Conv1d(input_shape=10, weight=rng.normal(0.2, 0.5, (3, 2, 3)), stride=1, padding=1,
                                dilation=1, groups=1, bias=np.zeros(3)),
             "lif": nir.LIF(tau=np.full((3, 10), 4.0), r=np.full((3, 10), 1.5), v_leak=np.zeros((3, 10)),
                            v_threshold=np.full((3, 10), 0.6)),
             "flat": nir.Flatten(input_type={"input": np.array([3, 10])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(weight=rng.normal(0, 0.4, (2, 30)), bias=np.zeros(2)),
             "output": nir.Output(output_type=np.array([2]))}
    edges = [("input", "conv"), ("conv", "lif"), ("lif", "lif"), ("lif", "flat"), ("flat", "fc"),
             ("fc", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    net, ref = assert_matches_reference(graph, events((2, 10), seed=10), reset="subtract")
    active(ref)
    assert net.recurrent_edges == (("lif", "lif_sum"),)
    nodes2 = {"input": nir.Input(input_type=np.array([1, 8, 8])),
              "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                    padding=np.array([0, 0])),
              "if": nir.IF(r=np.full((1, 4, 4), 2.0), v_threshold=np.full((1, 4, 4), 0.9)),
              "output": nir.Output(output_type=np.array([1, 4, 4]))}
    keys = list(nodes2)
    pool = nir.NIRGraph(nodes=nodes2, edges=list(zip(keys[:-1], keys[1:])), type_check=False)
    _, ref = assert_matches_reference(pool, events((1, 8, 8), seed=11))
    active(ref)


# -- acceptance: a recurrent CubaLIF trained on events, exported and imported -----------------
def test_trained_recurrent_cubalif_exports_and_reimports_to_the_same_spikes(tmp_path):
    streams, y = snnedge.moving_digit_events(96, sensor_size=(12, 12, 2), duration_us=40_000,
                                             classes=(0, 1), seed=0)
    x = snnedge.events_to_frames(streams, (12, 12, 2), n_time_bins=16)
    torch.manual_seed(0)
    net = snnedge.SpikingNetwork([
        Node("flat", nn.Flatten(), ("input",)), Node("fc", nn.Linear(288, 24), ("flat",)),
        Node("rec", nn.Linear(24, 24), (previous("lif"),)), Node("sum", snnedge.Add(), ("fc", "rec")),
        Node("lif", snnedge.CubaLIF(beta=0.9, beta_syn=0.8), ("sum",)),
        Node("out", nn.Linear(24, 2), ("lif",))], input_shape=(2, 12, 12))
    hist = snnedge.fit(net, (x[:64], y[:64]), epochs=4, encoding="sequence", lr=3e-3, batch_size=16,
                       progress=False)
    assert hist.accuracy[-1] > 0.8
    assert snnedge.simulate(net, x[64:], encoding="sequence").accuracy(y[64:]) > 0.7
    snnedge.to_nir(net, tmp_path / "rnn.nir")
    back = snnedge.from_nir(tmp_path / "rnn.nir", reset="subtract")
    a, b = snnedge_steps(net, x[64:]), snnedge_steps(back, x[64:])
    assert torch.equal(a["lif"], b["lif"]) and a["lif"].sum() > 0
    torch.testing.assert_close(a["out"], b["out"], rtol=0, atol=1e-12)
    # and the written graph, read by NIR's equations, gives those spikes too
    ref = Reference(nir.read(tmp_path / "rnn.nir"), 1.0, "subtract").run(x[64:])
    assert torch.equal(ref["lif"], a["lif"])


# -- bad graphs ------------------------------------------------------------------------------
def test_unknown_node_types_are_named():
    g = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
                               nir.CubaLI(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2),
                                          v_leak=np.zeros(2)))
    with pytest.raises(ValueError, match=r"NIR node 'cubali' is a CubaLI: a current-based leaky integrator"):
        snnedge.from_nir(g, reset="zero")


def test_a_cycle_with_no_neuron_is_refused():
    nodes = {"input": nir.Input(input_type=np.array([3])),
             "a": nir.Affine(weight=np.ones((3, 3)), bias=np.zeros(3)),
             "b": nir.Linear(weight=np.eye(3)),
             "if": nir.IF(r=np.ones(3), v_threshold=np.ones(3)),
             "output": nir.Output(output_type=np.array([3]))}
    edges = [("input", "a"), ("a", "b"), ("b", "a"), ("b", "if"), ("if", "output")]
    with pytest.raises(ValueError, match=r"nodes \['a', 'b'\] \(Affine, Linear\) form a cycle with no neuron"):
        snnedge.from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), reset="zero")


def test_a_branching_way_back_is_refused_with_the_node_named():
    nodes = {"input": nir.Input(input_type=np.array([3])),
             "a": nir.Affine(weight=np.ones((3, 3)), bias=np.zeros(3)),
             "if": nir.IF(r=np.ones(3), v_threshold=np.ones(3)),
             "w": nir.Linear(weight=np.eye(3)),
             "output": nir.Output(output_type=np.array([3]))}
    edges = [("input", "a"), ("a", "if"), ("if", "w"), ("w", "a"), ("w", "output")]
    with pytest.raises(ValueError, match=r"comes back through 'w', which has 1 inputs and 2 outputs"):
        snnedge.from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), reset="zero")


def test_delays_must_be_whole_steps():
    g = nir.NIRGraph.from_list(nir.Linear(weight=np.ones((2, 3))), nir.Delay(delay=np.full(2, 2.5)))
    with pytest.raises(ValueError, match=r"NIR node 'delay' \(Delay\) delays by \[2.5\] steps of dt=1"):
        snnedge.from_nir(g, reset="zero")
    assert snnedge.from_nir(g, reset="zero", dt=0.5).layer("delay").max_delay == 5


def test_export_of_every_new_type_round_trips_exactly(tmp_path):
    torch.manual_seed(12)
    net = snnedge.SpikingNetwork([
        Node("conv", nn.Conv2d(2, 3, 3, padding=1), ("input",)),
        Node("cuba", snnedge.CubaLIF(beta=[0.9, 0.8, 1.0], beta_syn=[0.5, 0.0, 0.95], threshold=0.7),
             ("conv",)),
        Node("pool", snnedge.SumPool2d(2), ("cuba",)), Node("flat", nn.Flatten(), ("pool",)),
        Node("fc", nn.Linear(12, 5), ("flat",)), Node("rec", nn.Linear(5, 5), (previous("th"),)),
        Node("sum", snnedge.Add(), ("fc", "rec")), Node("th", snnedge.Threshold(0.3), ("sum",)),
        Node("d", snnedge.Delay(2), ("th",)), Node("fc2", nn.Linear(5, 4), ("d",)),
        Node("li", snnedge.LI(beta=0.75, gain=1.5), ("fc2",)), Node("integ", snnedge.Integrator(0.5), ("li",)),
        Node("out", nn.Linear(4, 2), ("integ",))], input_shape=(2, 4, 4))
    g = snnedge.to_nir(net, tmp_path / "all.nir", dt=1e-3)
    assert {type(n).__name__ for n in g.nodes.values()} >= {"CubaLIF", "Threshold", "Delay", "LI", "I"}
    back = snnedge.from_nir(tmp_path / "all.nir", reset="subtract", dt=1e-3)
    x = events((2, 4, 4), t=20, seed=13, p=0.5)
    a, b = snnedge_steps(net, x), snnedge_steps(back, x)
    for name in ("cuba", "th", "li", "integ", "out"):
        assert torch.equal(a[name], b[name]), name
    assert a["cuba"].sum() > 0 and a["th"].sum() > 0
    assert torch.equal(back.layer("cuba").beta_syn, net.layer("cuba").beta_syn)
    assert back.layer("d").max_delay == 2 and back.recurrent_edges == (("th", "rec"),)
