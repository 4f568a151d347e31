"""engine="brian2" against the dense engine (float64) and hand-derived traces.

brian2 is slow to import (~5 s) and each run generates code (~2 s with the numpy target),
so the fast tests use small networks; the converted-CNN acceptance test is marked slow.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import snnedge
import snnedge.interop  # noqa: F401  (registers engine="brian2")
from snnedge import Node
from snnedge.datasets import load_mnist_digits, load_mnist_test
from snnedge.interop.sparse_maps import UnsupportedLayer

# brian2 2.9.0 calls pyparsing's camelCase API, which pyparsing 3.3 deprecates.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:brian2"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pyparsing")]


def _compare(net, x, timesteps, encoding="direct", common=None, **options):
    """Run both engines; everything they report must agree (outputs to rounding)."""
    common = common or {}
    a = snnedge.simulate(net, x, timesteps=timesteps, encoding=encoding, engine="brian2",
                         **common, **options)
    b = snnedge.simulate(net, x, timesteps=timesteps, encoding=encoding, engine="dense",
                         dtype=torch.float64, **common)
    assert a.engine == "brian2"
    assert a.spike_counts == b.spike_counts
    assert a.neurons == b.neurons
    assert a.synaptic_events == b.synaptic_events
    assert a.input_macs == b.input_macs
    for k in a.neuron_spike_counts:
        assert torch.equal(a.neuron_spike_counts[k], b.neuron_spike_counts[k]), k
    assert torch.equal(a.step_predictions, b.step_predictions)
    torch.testing.assert_close(a.output, b.output, rtol=1e-12, atol=1e-12)
    return a, b


def small_cnn():
    torch.manual_seed(0)
    return snnedge.sequential(
        nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(threshold=1.0, v_init=0.5), nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),
        snnedge.LIF(beta=0.9, threshold=torch.tensor([0.5, 1, 1.5, 1, 1, 0.7]), reset="zero"),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 5), snnedge.IF(threshold=0.3), nn.Linear(5, 3))


def test_golden_trace_has_no_lag_between_layers():
    # Three IF layers in a chain, x = 1. Layer a gets 0.3 per step: v = 0.3, 0.6, 0.9 (float:
    # 0.8999999999999999), 1.2 -> spike at step 4, then 0.5, 0.8, 1.1 -> spike at step 7.
    # Layer b gets 0.6 per spike of a in the same step: 0.6 at step 4, 1.2 at step 7 -> one
    # spike at step 7. Layer c gets 0.7 at step 7: no spike. With brian2's default schedule
    # (one step of lag per layer) b would see a's second spike only at step 8 > T and stay silent.
    def linear(w):
        m = nn.Linear(1, 1, bias=False)
        m.weight.data.fill_(w)
        return m
    net = snnedge.sequential(linear(0.3), snnedge.IF(), linear(0.6), snnedge.IF(), linear(0.7),
                             snnedge.IF(), linear(1.0))
    a, _ = _compare(net, torch.ones(1, 1), timesteps=7)
    assert a.spike_counts == {"1": 2, "3": 1, "5": 0}


@pytest.mark.parametrize("encoding", ["direct", "poisson", "latency"])
def test_brian2_equals_dense_on_a_small_cnn(encoding):
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    a, _ = _compare(small_cnn(), x, timesteps=20, encoding=encoding)
    assert a.total_spikes > 0 and a.extra["brian2"]["synapses"] > 0


def test_residual_add_concat_scale_and_a_spiking_output():
    torch.manual_seed(0)
    nodes = [Node("stem", nn.Conv2d(1, 4, 3, padding=1), ("input",)),
             Node("stem_if", snnedge.IF(v_init=0.5), ("stem",)),
             Node("b.conv1", nn.Conv2d(4, 4, 3, padding=1), ("stem_if",)),
             Node("b.if1", snnedge.IF(threshold=0.8), ("b.conv1",)),
             Node("b.conv2", nn.Conv2d(4, 4, 3, padding=1), ("b.if1",)),
             Node("b.add", snnedge.Add(), ("b.conv2", "stem")),
             Node("b.scale", snnedge.Scale(torch.tensor([1., 2, .5, 1]), torch.tensor([.1, 0, 0, -.1])),
                  ("b.add",)),
             Node("b.if2", snnedge.IF(), ("b.scale",)),
             Node("cat", snnedge.Concat(1), ("b.if2", "stem_if")),
             Node("pool", nn.AdaptiveAvgPool2d(3), ("cat",)), Node("flat", nn.Flatten(), ("pool",)),
             Node("fc", nn.Linear(8 * 9, 5), ("flat",)), Node("out_if", snnedge.LIF(beta=0.8, threshold=0.05), ("fc",))]
    net = snnedge.SpikingNetwork(nodes)
    x = torch.rand(3, 1, 7, 7, generator=torch.Generator().manual_seed(2))
    a, _ = _compare(net, x, timesteps=15)
    assert a.spike_counts["out_if"] > 0  # the output is spikes: predictions come from their counts


def test_static_analog_layers_count_their_macs():
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), snnedge.IF(), nn.Flatten(),
                             nn.Linear(32, 2))
    a, _ = _compare(net, torch.rand(2, 1, 8, 8), timesteps=10)
    assert a.input_macs["1"] > 0


@pytest.mark.parametrize("module, shape", [
    (nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), (4, 9, 8)),
    (nn.Conv2d(2, 3, (3, 2), padding="same"), (2, 5, 6)),
    (nn.Conv1d(2, 3, 4, stride=3, padding=2), (2, 11)),
    (nn.Linear(5, 3), (2, 5)),
    (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 7, 6)),
    (nn.AvgPool2d(3, stride=2, padding=1), (2, 7, 6)),
    (nn.AvgPool2d(2, divisor_override=3), (2, 6, 6)),
    (nn.AvgPool1d(3, stride=2), (2, 9)),
    (snnedge.SumPool2d(2), (3, 5, 4)),
    (nn.AdaptiveAvgPool2d((3, 2)), (2, 7, 5)),
    (snnedge.Scale(torch.tensor([2.0, -0.5])), (2, 3, 3)),
    (nn.Flatten(), (2, 3, 3)),
])
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_synapse_matrices_equal_the_modules(module, shape):
    from snnedge.interop.sparse_maps import module_matrix
    module = module.double()
    x = torch.rand(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        y = module(x) - module(torch.zeros_like(x))  # the linear part (no bias)
    m = module_matrix(module, shape, y.shape[1:], "layer")
    torch.testing.assert_close(torch.from_numpy(m @ x.reshape(-1).numpy()), y.reshape(-1),
                               rtol=1e-12, atol=1e-12)


class _Gate(snnedge.TemporalModule):
    def initial_state(self, template):
        return None

    def forward_block(self, current, state, steps, static=False):
        return current, state


def test_unsupported_layers_are_named():
    net = snnedge.sequential(nn.Conv2d(1, 2, 3), snnedge.IF(), _Gate(), nn.Flatten(), nn.Linear(72, 2))
    with pytest.raises(UnsupportedLayer, match=r"Layer '2' is a _Gate, a temporal module"):
        snnedge.simulate(net, torch.rand(1, 1, 8, 8), engine="brian2")
    net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(), nn.Linear(3, 3), nn.Linear(3, 2))
    with pytest.raises(UnsupportedLayer, match=r"Layer '2' \(Linear\) sends time-varying analog"):
        snnedge.simulate(net, torch.rand(1, 4), engine="brian2")


def test_option_validation():
    net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match="'code_target' parameter of simulate\\(engine='brian2'\\) must be one of"):
        snnedge.simulate(net, torch.rand(1, 4), engine="brian2", code_target="gpu")
    with pytest.raises(ValueError, match="must be 'cpu'"):
        snnedge.simulate(net, torch.rand(1, 4), engine="brian2", device="cuda")
    with pytest.raises(TypeError, match="unexpected options"):
        snnedge.simulate(net, torch.rand(1, 4), engine="dense", code_target="numpy")


def test_batches_and_labels_as_in_the_torch_engines():
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 0, 1])
    a, b = _compare(small_cnn(), x, timesteps=6, encoding="poisson",
                    common=dict(batch_size=2, labels=y))
    assert a.num_samples == 5 and a.accuracy() == b.accuracy()


@pytest.mark.slow
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), reset=st.sampled_from(["subtract", "zero"]),
       v_init=st.sampled_from([0.0, 0.5]), beta=st.sampled_from([1.0, 0.9, 0.5]),
       encoding=st.sampled_from(["direct", "poisson"]))
def test_random_networks_agree(seed, reset, v_init, beta, encoding):
    torch.manual_seed(seed)
    neuron = (lambda th: snnedge.IF(threshold=th, reset=reset, v_init=v_init)) if beta == 1 else (
        lambda th: snnedge.LIF(beta=beta, threshold=th, reset=reset, v_init=v_init))
    net = snnedge.sequential(nn.Conv2d(1, 3, 3, padding=1), neuron(torch.rand(3) + 0.2), nn.AvgPool2d(2),
                             nn.Flatten(), nn.Linear(3 * 9, 6), neuron(float(torch.rand(1)) + 0.1),
                             nn.Linear(6, 4))
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(seed))
    _compare(net, x, timesteps=12, encoding=encoding)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cython", "cpp_standalone"])
def test_compiled_code_targets(target, tmp_path):
    # Two batches of Poisson input: cpp_standalone runs both in its one run, each batch
    # keeping the seed the torch engines give it.
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    a, _ = _compare(small_cnn(), x, timesteps=10, encoding="poisson", common=dict(batch_size=2),
                    code_target=target, build_dir=tmp_path / "b2")
    assert a.extra["brian2"]["code_target"] == target


# -- acceptance: a converted MNIST CNN -----------------------------------------------------------
@pytest.mark.slow
def test_converted_cnn_spike_counts_equal_dense_on_mnist(mnist_cnn):
    from converters import convert
    ann = mnist_cnn
    x_train, _ = load_mnist_digits()
    snn = convert(ann, x_train[::10], reset="subtract")  # per-neuron membranes if calibrated
    assert sum(isinstance(n.module, nn.Conv2d) for n in snn.nodes) >= 2
    assert any(isinstance(n.module, nn.AvgPool2d) for n in snn.nodes)
    x, _ = load_mnist_test()
    a, b = _compare(snn, x[:20], timesteps=50)
    assert sum(a.neurons.values()) > 2000
    assert all(n.module.reset == "subtract" for n in snn.nodes if isinstance(n.module, snnedge.IF))
    assert min(a.spike_counts.values()) > 0
