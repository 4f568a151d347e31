"""NIR export/import: exact round trips, explicit dt and reset, errors that name the node, and
snnTorch 1.0.0 as a real client (both directions).

Needs the ``peers`` extra (nir, nirtorch, snntorch); run with the peers environment, e.g.
``/work/peersvenv/bin/python -m pytest tests/test_nir_io.py``.
"""
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import snnedge
from snnedge import Node
from snnedge.datasets import load_mnist_digits, load_mnist_test
from snnedge.interop import PresetIF, from_nir, initial_membranes, to_nir
from snnedge.interop.nir_io import SNNTORCH_DT, SNNTORCH_TAU

nir = pytest.importorskip("nir")
pytestmark = [pytest.mark.peers,
              # snnTorch 1.0.0's exporter calls nirtorch's deprecated extract_nir_graph
              pytest.mark.filterwarnings("ignore::DeprecationWarning:nirtorch")]


def small_cnn(reset="subtract", v_init=0.5):
    torch.manual_seed(0)
    return snnedge.sequential(
        nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(threshold=0.8, v_init=v_init, reset=reset),
        nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),
        snnedge.LIF(beta=0.9, threshold=torch.tensor([0.5, 1, 1.5, 1, 1, 0.7]), reset=reset,
                    v_init=v_init),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 5), snnedge.IF(threshold=0.3, reset=reset, v_init=v_init),
        nn.Linear(5, 3), input_shape=(1, 8, 8))


def residual_net():
    torch.manual_seed(0)
    nodes = [Node("stem", nn.Conv2d(1, 4, 3, padding=1), ("input",)),
             Node("stem_if", snnedge.IF(), ("stem",)),
             Node("b.conv1", nn.Conv2d(4, 4, 3, padding=1), ("stem_if",)),
             Node("b.if1", snnedge.IF(threshold=0.8), ("b.conv1",)),
             Node("b.conv2", nn.Conv2d(4, 4, 3, padding=1), ("b.if1",)),
             Node("b.add", snnedge.Add(), ("b.conv2", "stem")),
             Node("b.scale", snnedge.Scale(torch.tensor([1., 2, .5, 1]), torch.tensor([.1, 0, 0, -.1])),
                  ("b.add",)),
             Node("b.if2", snnedge.IF(), ("b.scale",)),
             Node("pool", snnedge.SumPool2d(2), ("b.if2",)), Node("flat", nn.Flatten(), ("pool",)),
             Node("drop", nn.Dropout(0.5), ("flat",)),
             Node("fc", nn.Linear(4 * 9, 5), ("drop",)), Node("fc_scale", snnedge.Scale(2.0), ("fc",)),
             Node("out_if", snnedge.IF(threshold=0.5), ("fc_scale",))]
    return snnedge.SpikingNetwork(nodes, input_shape=(1, 7, 7))


def assert_same_run(a_net, b_net, x, timesteps=20, encoding="direct"):
    a = snnedge.simulate(a_net, x, timesteps=timesteps, encoding=encoding, dtype=torch.float64)
    b = snnedge.simulate(b_net, x, timesteps=timesteps, encoding=encoding, dtype=torch.float64)
    assert a.spike_counts == b.spike_counts
    assert a.synaptic_events == b.synaptic_events
    assert torch.equal(a.output, b.output)
    return a


# -- round trips -----------------------------------------------------------------------------
def test_round_trip_through_a_file_is_exact(tmp_path):
    net = small_cnn()
    path = tmp_path / "net.nir"
    g = to_nir(net, path)
    assert isinstance(g, nir.NIRGraph) and path.is_file()
    assert [type(g.nodes[k]).__name__ for k in ("0", "1", "2", "3", "4", "5", "6", "8")] == [
        "Conv2d", "IF", "AvgPool2d", "Conv2d", "LIF", "Flatten", "Affine", "Affine"]
    back = from_nir(path, reset="subtract", v_init=0.5)
    assert [n.name for n in back.nodes] == [n.name for n in net.nodes]
    assert back.readout_names == net.readout_names and back.input_shape == (1, 8, 8)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    res = assert_same_run(net, back, x)
    assert res.total_spikes > 0
    assert_same_run(net, back, x, encoding="poisson")


def test_round_trip_of_add_scale_sumpool_dropout():
    net = residual_net()
    back = from_nir(to_nir(net), reset="subtract")
    kinds = {n.name: type(n.module).__name__ for n in back.nodes}
    assert kinds["b.add"] == "Add" and kinds["pool"] == "SumPool2d" and kinds["fc_scale"] == "Scale"
    assert kinds["b.scale"] == "Conv2d"  # a Scale with a bias is a diagonal 1x1 convolution
    assert "drop" not in kinds
    x = torch.rand(3, 1, 7, 7, generator=torch.Generator().manual_seed(1))
    a = snnedge.simulate(net, x, timesteps=20, dtype=torch.float64)
    b = snnedge.simulate(back, x, timesteps=20, dtype=torch.float64)
    assert a.spike_counts == b.spike_counts and a.spike_counts["out_if"] > 0


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), reset=st.sampled_from(["subtract", "zero"]),
       v_init=st.sampled_from([0.0, 0.5]), beta=st.floats(0.05, 1.0),
       pool=st.sampled_from(["avg", "sum"]), dt=st.sampled_from([1.0, 1e-3, 1e-4]))
def test_random_networks_round_trip_exactly(seed, reset, v_init, beta, pool, dt):
    torch.manual_seed(seed)
    neuron = (lambda th: snnedge.IF(threshold=th, reset=reset, v_init=v_init)) if beta == 1 else (
        lambda th: snnedge.LIF(beta=beta, threshold=th, reset=reset, v_init=v_init))
    net = snnedge.sequential(nn.Conv2d(1, 3, 3, padding=1), neuron(torch.rand(3) + 0.2),
                             nn.AvgPool2d(2) if pool == "avg" else snnedge.SumPool2d(2),
                             nn.Flatten(), nn.Linear(3 * 9, 6), neuron(float(torch.rand(1)) + 0.1),
                             nn.Linear(6, 4), input_shape=(1, 6, 6))
    back = from_nir(to_nir(net, dt=dt), reset=reset, dt=dt, v_init=v_init)
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(seed))
    assert_same_run(net, back, x, timesteps=12)


def test_lif_beta_and_per_channel_threshold_survive_exactly():
    for beta in (0.9, 0.5, 0.999, 0.123456789):
        net = snnedge.sequential(nn.Linear(3, 2), snnedge.LIF(beta=beta, threshold=[0.7, 1.3]),
                                 nn.Linear(2, 2), input_shape=(3,))
        lif = from_nir(to_nir(net, dt=1e-3), reset="subtract", dt=1e-3).layer("1")
        assert torch.equal(lif.beta, net.layer("1").beta)
        assert torch.equal(lif.threshold, net.layer("1").threshold)


def test_per_neuron_initial_membranes_are_passed_explicitly():
    net = small_cnn()
    v_map = torch.linspace(-0.5, 0.9, 4 * 8 * 8, dtype=torch.float64).reshape(4, 8, 8)
    preset = PresetIF(v_map, threshold=0.8)
    net = snnedge.SpikingNetwork([snnedge.Node(n.name, preset if n.name == "1" else n.module, n.inputs)
                                  for n in net.nodes], input_shape=(1, 8, 8))
    v0 = initial_membranes(net)
    assert torch.equal(v0["1"], v_map) and v0["4"] == 0.5 and v0["7"] == 0.5
    back = from_nir(to_nir(net), reset="subtract", v_init=v0)
    assert isinstance(back.layer("1"), PresetIF)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    assert_same_run(net, back, x)
    with pytest.raises(ValueError, match="has 3 values for 256 neurons"):
        from_nir(to_nir(net), reset="subtract", v_init={"1": torch.zeros(3)})


def test_if_is_written_with_r_one_over_dt():
    net = snnedge.sequential(nn.Linear(3, 2), snnedge.IF(threshold=0.5), nn.Linear(2, 2), input_shape=(3,))
    node = to_nir(net, dt=0.25).nodes["1"]
    assert isinstance(node, nir.IF)
    np.testing.assert_array_equal(node.r, [4.0, 4.0])
    np.testing.assert_array_equal(node.v_threshold, [0.5, 0.5])


def test_dt_and_reset_are_explicit_and_metadata_is_not_read():
    net = snnedge.sequential(nn.Linear(3, 2), snnedge.IF(threshold=0.5), nn.Linear(2, 2), input_shape=(3,))
    g = to_nir(net)
    assert g.metadata["dt"] == 1.0 and g.nodes["1"].metadata["snnedge_reset"] == "subtract"
    with pytest.raises(ValueError, match="from_nir needs the reset mode: reset='subtract' or reset='zero'"):
        from_nir(g)
    g.nodes["1"].metadata["snnedge_reset"] = "zero"   # a lie in the metadata changes nothing
    assert from_nir(g, reset="subtract").layer("1").reset == "subtract"
    # IF: v += (r dt) I. Read with dt = 0.5 the gain is 0.5, folded into a doubled threshold.
    assert float(from_nir(g, reset="zero", dt=0.5).layer("1").threshold) == 1.0


def test_reset_zero_needs_a_zero_v_reset():
    net = snnedge.sequential(nn.Linear(3, 2), snnedge.IF(), nn.Linear(2, 2), input_shape=(3,))
    g = to_nir(net)
    g.nodes["1"].v_reset = np.full(2, 0.2)
    with pytest.raises(ValueError, match=r"NIR node '1' \(IF\) resets to v_reset"):
        from_nir(g, reset="zero")
    assert from_nir(g, reset="subtract").layer("1").reset == "subtract"


# -- errors name the node / layer ------------------------------------------------------------
def test_unknown_nir_nodes_are_named_with_their_type():
    # (issue 18 added CubaLIF and LI, which this test refused before; CubaLI is still unknown)
    g = nir.NIRGraph.from_list(
        nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
        nir.CubaLI(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)))
    with pytest.raises(ValueError, match=r"NIR node 'cubali' is a CubaLI: a current-based leaky"):
        from_nir(g, reset="zero")


def test_lif_read_with_the_wrong_dt_says_so():
    net = snnedge.sequential(nn.Linear(3, 2), snnedge.LIF(beta=0.9), nn.Linear(2, 2), input_shape=(3,))
    g = to_nir(net, dt=1e-4)
    with pytest.raises(ValueError, match=r"NIR node '1' \(LIF\) gives beta = 1 - dt/tau = -999 .* \(snnTorch uses dt=1e-4\)"):
        from_nir(g, reset="subtract", dt=1.0)


def test_grouped_convolutions_are_written_ungrouped():
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(2, 4, 3, padding=1), snnedge.IF(),
                             nn.Conv2d(4, 4, 3, padding=1, groups=4), snnedge.IF(threshold=0.3),
                             nn.Flatten(), nn.Linear(4 * 36, 3), input_shape=(2, 6, 6))
    g = to_nir(net)
    assert g.nodes["2"].weight.shape == (4, 4, 3, 3) and g.nodes["2"].groups == 1
    back = from_nir(g, reset="subtract")
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(5))
    a = snnedge.simulate(net, x, timesteps=20, dtype=torch.float64)
    b = snnedge.simulate(back, x, timesteps=20, dtype=torch.float64)
    assert a.spike_counts == b.spike_counts and a.spike_counts["3"] > 0


def test_recurrent_graphs_import_and_unknown_v_init_layers_are_refused():
    # (issue 18: recurrent graphs, refused here before, now import with the fed-back spikes
    # one step late; tests/test_nir_models.py checks their spikes)
    nodes = {"input": nir.Input(input_type=np.array([3])),
             "w": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
             "lif": nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
             "rec": nir.Linear(weight=np.eye(2)),
             "output": nir.Output(output_type=np.array([2]))}
    edges = [("input", "w"), ("w", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    rnn = from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), reset="zero")
    assert rnn.recurrent_edges == (("lif", "rec"),)
    net = snnedge.sequential(nn.Linear(3, 2), snnedge.IF(), nn.Linear(2, 2), input_shape=(3,))
    with pytest.raises(ValueError, match=r"'v_init' parameter of from_nir names \['2'\], which are not neuron layers"):
        from_nir(to_nir(net), reset="zero", v_init={"1": 0.5, "2": 0.5})


def test_layers_nir_cannot_express_are_named():
    net = snnedge.SpikingNetwork([Node("a", nn.Conv2d(1, 2, 3), ("input",)), Node("a_if", snnedge.IF(), ("a",)),
                                  Node("cat", snnedge.Concat(1), ("a_if", "a")),
                                  Node("flat", nn.Flatten(), ("cat",)), Node("fc", nn.Linear(144, 2), ("flat",))],
                                 input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"Layer 'cat' \(Concat\) cannot be written as NIR: NIR has no concatenation"):
        to_nir(net)
    with pytest.raises(ValueError, match="to_nir needs the shape of one input sample"):
        to_nir(snnedge.sequential(nn.Linear(3, 2), snnedge.IF()))


# -- the snnTorch flavor ---------------------------------------------------------------------
def test_snntorch_flavor_folds_thresholds_and_writes_non_leaky_lif():
    net = small_cnn(reset="zero", v_init=0.0)
    g = to_nir(net, flavor="snntorch")
    assert g.metadata["dt"] == SNNTORCH_DT
    for k in ("1", "4", "7"):
        assert isinstance(g.nodes[k], nir.LIF)
        np.testing.assert_array_equal(g.nodes[k].v_threshold, 1.0)
    # the importer's beta = 1 - dt/tau with dt = 1e-4: exactly 1 for the IF layers
    assert np.all(1 - SNNTORCH_DT / g.nodes["1"].tau == 1.0) and SNNTORCH_TAU == 1e13
    assert np.allclose(1 - SNNTORCH_DT / g.nodes["4"].tau, 0.9)
    assert g.nodes["5"].start_dim == -3
    # thresholds went into the weights: layer 0's weights are divided by 0.8
    torch.testing.assert_close(torch.as_tensor(g.nodes["0"].weight), net.layer("0").weight.detach() / 0.8)
    assert float(net.layer("1").threshold) == pytest.approx(0.8)  # the network is not changed
    # and the folded network runs the same
    back = from_nir(g, reset="zero", dt=SNNTORCH_DT)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    a = snnedge.simulate(net, x, timesteps=20, dtype=torch.float64)
    b = snnedge.simulate(back, x, timesteps=20, dtype=torch.float64)
    assert a.spike_counts == b.spike_counts


def test_snntorch_flavor_refuses_what_snntorch_would_run_differently():
    with pytest.raises(ValueError, match=r"layer '1' has reset='subtract' .* and v_init=0.5 .*"
                                         r"Convert with reset='zero', v_init=0.0 .* or pass strict=False"):
        to_nir(small_cnn(), flavor="snntorch")
    with pytest.warns(UserWarning, match="snnTorch 1.0.0 would run a different network"):
        to_nir(small_cnn(), flavor="snntorch", strict=False)
    with pytest.raises(ValueError, match="must be 0.0001 with flavor='snntorch'"):
        to_nir(small_cnn(reset="zero", v_init=0.0), flavor="snntorch", dt=1.0)


def _run_snntorch(net, x, timesteps):
    import snntorch
    for m in net.modules():  # snnTorch's Leaky keeps its membrane between calls
        if isinstance(m, snntorch.Leaky):
            m.reset_mem()
    state, acc = None, 0
    with torch.no_grad():
        for _ in range(timesteps):
            out, state = net(x, state)
            acc = acc + out
    return acc


def test_snntorch_imports_the_snntorch_flavor_and_runs_it_the_same(tmp_path):
    pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir
    net = small_cnn(reset="zero", v_init=0.0)
    to_nir(net, tmp_path / "net.nir", flavor="snntorch")
    st = import_from_nir(nir.read(tmp_path / "net.nir"))
    import snntorch
    leaky = [m for m in st.modules() if isinstance(m, snntorch.Leaky)]
    # the importer's beta = 1 - 1e-4 / tau: exactly 1 for the two IF layers, 0.9 for the LIF
    assert [torch.unique(m.beta).tolist() for m in leaky] == [[1.0], [pytest.approx(0.9)], [1.0]]
    assert all(float(m.threshold) == 1.0 and m.reset_mechanism == "zero" for m in leaky)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2
    out = _run_snntorch(st, x, 20)
    res = snnedge.simulate(net, x, timesteps=20)
    torch.testing.assert_close(out, res.output, rtol=1e-5, atol=1e-4)
    assert torch.equal(out.argmax(1), res.predictions)


@pytest.mark.parametrize("beta", [1.0, 0.9])
def test_a_graph_exported_by_snntorch_imports_and_runs(beta, tmp_path):
    snntorch = pytest.importorskip("snntorch")
    import snntorch.utils
    from snntorch.export_nir import export_to_nir
    torch.manual_seed(0)
    # snnTorch 1.0.0's exporter fails nir 1.0.8's type check for scalar beta/threshold
    # (0-d neuron shapes) and for a batch dimension in the sample: give per-neuron tensors
    # and ignore_dims=[0].
    st = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1),
                       snntorch.Leaky(beta=torch.full((4, 8, 8), beta), threshold=torch.ones(4, 8, 8),
                                      init_hidden=True),
                       nn.Flatten(), nn.Linear(4 * 8 * 8, 10),
                       snntorch.Leaky(beta=torch.full((10,), beta), threshold=torch.ones(10),
                                      init_hidden=True, output=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # its tau = dt/(1-beta) divides by 0 at beta 1
        nir.write(tmp_path / "st.nir", export_to_nir(st, torch.rand(1, 1, 8, 8), ignore_dims=[0]))
    net = from_nir(tmp_path / "st.nir", reset="subtract", dt=1e-4)
    assert [type(n.module).__name__ for n in net.nodes] == (
        ["Conv2d", "IF", "Flatten", "Linear", "IF"] if beta == 1 else
        ["Conv2d", "LIF", "Flatten", "Linear", "LIF"])
    x = torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    res = snnedge.simulate(net, x, timesteps=30)
    snntorch.utils.reset(st)
    counts = 0
    with torch.no_grad():
        for _ in range(30):
            spk, _ = st(x)
            counts = counts + spk
    if beta == 1:
        # snnTorch's Leaky(beta=1) with reset by subtraction is snnedge's IF (spiking at
        # v > theta instead of v >= theta, equal off exact ties): the same spikes.
        assert torch.equal(counts, res.output)
    else:
        # snnTorch subtracts the threshold after the decay (v = beta v + I - z theta), snnedge
        # before it (v = beta (v - z theta) + I), as NIR's reset-then-leak reading does, so
        # counts differ somewhat; the network still runs and mostly agrees.
        assert res.output.shape == (50, 10) and res.total_spikes > 0
        assert float((counts.argmax(1) == res.predictions).double().mean()) >= 0.8


# -- acceptance on a converted MNIST CNN (slow) ----------------------------------------------
@pytest.mark.slow
def test_converted_cnn_round_trip_reproduces_spike_counts(mnist_cnn, tmp_path):
    from converters import convert
    snn = convert(mnist_cnn, load_mnist_digits()[0][::10])
    to_nir(snn, tmp_path / "cnn.nir")
    # NIR has no initial membrane: pass it explicitly (per neuron after membrane calibration)
    back = from_nir(tmp_path / "cnn.nir", reset="subtract", v_init=initial_membranes(snn))
    x, _ = load_mnist_test()
    res = assert_same_run(snn, back, x[:20], timesteps=50)
    assert min(res.spike_counts.values()) > 0


@pytest.mark.slow
def test_snntorch_agrees_with_snnedge_on_1000_mnist_images(mnist_cnn, tmp_path):
    pytest.importorskip("snntorch")
    from converters import convert
    from snntorch.import_nir import import_from_nir
    # what snnTorch runs: reset to zero from a zero membrane (so no membrane calibration)
    snn = convert(mnist_cnn, load_mnist_digits()[0][::10], reset="zero", v_init=0.0,
                  calibrate_membrane=False)
    to_nir(snn, tmp_path / "cnn.nir", flavor="snntorch")
    st = import_from_nir(nir.read(tmp_path / "cnn.nir"))
    x, y = load_mnist_test()
    x, y = x[:1000], y[:1000]
    T = 50
    preds = torch.cat([_run_snntorch(st, x[i:i + 250], T).argmax(1) for i in range(0, 1000, 250)])
    res = snnedge.simulate(snn, x, timesteps=T, labels=y)
    agreement = float((preds == res.predictions).double().mean())
    assert agreement >= 0.99, agreement
    assert math.isclose(res.accuracy(), float((preds == y).double().mean()), abs_tol=0.01)
