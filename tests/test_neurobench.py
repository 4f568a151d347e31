"""NeuroBench-style metrics: checked against a step-by-step reference that counts operations
the way NeuroBench does (a binary copy of each layer applied to binarized inputs at every
step), and against neurobench itself where it is installed."""
import pytest
import torch
from torch import nn

import snnedge
from snnedge.neurobench_metrics import NeuroBenchMetrics, neurobench_metrics

SHAPE, T = (1, 8, 8), 6


def make_net():
    torch.manual_seed(3)
    # no pooling between neurons and weights: snnedge and NeuroBench count the same events
    return snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(threshold=0.5),
                              nn.Conv2d(4, 4, 3, stride=2, padding=1), snnedge.IF(threshold=0.5),
                              nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
                              input_shape=SHAPE).double()


NET = make_net()
X = torch.rand(4, *SHAPE, dtype=torch.float64) * (torch.rand(4, *SHAPE) > 0.3)
RES = snnedge.simulate(NET, X, timesteps=T, encoding="direct", dtype=torch.float64)


def layer_inputs(net, x, steps):
    """Per weighted layer, its input at every step ``(T, N, ...)``, and every neuron output."""
    seq = x.unsqueeze(0).expand(steps, *x.shape)  # direct encoding: the same input every step
    inputs, outputs = {}, []
    for node in net.nodes:
        module = node.module
        if net.kind(node.name) == "weighted":
            inputs[node.name] = seq
            flat = module(seq.reshape(-1, *seq.shape[2:]))
            seq = flat.reshape(steps, -1, *flat.shape[1:])
        elif net.kind(node.name) == "temporal":
            seq = module(seq)
            outputs.append(seq)
        else:
            flat = module(seq.reshape(-1, *seq.shape[2:]))
            seq = flat.reshape(steps, -1, *flat.shape[1:])
    return inputs, outputs


def binary_copy_ops(layer, inp, all_ones=False):
    """NeuroBench's count: the layer with weights 1 where non-zero (all ones for dense), no
    bias, applied to the input with 1 where non-zero (all ones for dense), summed."""
    copy = type(layer)(**_init_args(layer)).double()
    with torch.no_grad():
        copy.weight.copy_(torch.ones_like(layer.weight) if all_ones else (layer.weight != 0).double())
        if copy.bias is not None:
            copy.bias.zero_()
        x = torch.ones_like(inp) if all_ones else (inp != 0).double()
        return float(copy(x).sum())


def _init_args(layer):
    if isinstance(layer, nn.Linear):
        return dict(in_features=layer.in_features, out_features=layer.out_features)
    return dict(in_channels=layer.in_channels, out_channels=layer.out_channels,
                kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding,
                dilation=layer.dilation, groups=layer.groups)


def reference(net, x, steps):
    inputs, outputs = layer_inputs(net, x, steps)
    macs = acs = dense = 0.0
    for name, seq in inputs.items():
        layer = net.layer(name)
        for t in range(steps):
            binary = bool(((seq[t] == 0) | (seq[t] == 1)).all())
            ops = binary_copy_ops(layer, seq[t])
            dense += binary_copy_ops(layer, seq[t], all_ones=True)
            acs, macs = (acs + ops, macs) if binary else (acs, macs + ops)
    total = sum(o.numel() for o in outputs)
    nonzero = sum(int((o != 0).sum()) for o in outputs)
    n = x.shape[0]
    return {"effective_acs": acs / n, "effective_macs": macs / n, "dense_ops": dense / n,
            "activation_sparsity": (total - nonzero) / total}


def test_metrics_equal_the_step_by_step_reference():
    m = neurobench_metrics(RES, NET)
    assert isinstance(m, NeuroBenchMetrics) and m.timesteps == T
    ref = reference(NET, X, T)
    assert m.effective_macs > 0 and m.effective_acs > 0  # the direct input is analog
    for key, want in ref.items():
        assert getattr(m, key) == pytest.approx(want), key


def test_metrics_equal_the_result_counts():
    m = neurobench_metrics(RES, NET)
    n = RES.num_samples
    assert m.effective_acs == RES.total_synaptic_events / n
    assert m.effective_macs == sum(RES.input_macs.values()) / n
    assert m.activation_sparsity == pytest.approx(
        1 - RES.total_spikes / (sum(RES.neurons.values()) * T * n))
    for name, row in m.per_layer.items():
        assert row["dense_ops"] == row["connections"] * T
    # Linear 64 -> 3: every one of the 192 connections exists at every step
    assert m.per_layer["5"]["connections"] == 192
    # a padded 3x3 conv on 8x8 has fewer connections than 64 outputs x 9 taps (border-exact)
    assert m.per_layer["0"]["connections"] == 4 * (8 * 8 * 9 - 4 * 8 * 3 + 4)


def test_connection_sparsity_and_footprint():
    net = make_net()
    with torch.no_grad():
        net.layer("2").weight[:, :2] = 0  # half of conv 2's input channels pruned
    res = snnedge.simulate(net, X, timesteps=2, dtype=torch.float64)
    m = neurobench_metrics(res, net)
    weights = sum(net.layer(k).weight.numel() for k in ("0", "2", "5"))
    assert m.connection_sparsity == pytest.approx(net.layer("2").weight.numel() / 2 / weights)
    params = sum(p.numel() * 8 for p in net.parameters())  # float64
    buffers = sum(b.numel() * b.element_size() for b in net.buffers())
    assert m.footprint_bytes == params + buffers
    # pruned synapses carry no events, but the dense count keeps them
    assert m.dense_ops == neurobench_metrics(RES, NET).dense_ops * 2 / T


def test_errors():
    with pytest.raises(TypeError, match="SimulationResult"):
        neurobench_metrics({}, NET)
    with pytest.raises(TypeError, match="SpikingNetwork"):
        neurobench_metrics(RES, nn.Linear(2, 2))
    other = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(), nn.Linear(3, 2), input_shape=(4,))
    with pytest.raises(ValueError, match="network that was simulated"):
        neurobench_metrics(RES, other)


@pytest.mark.peers
def test_agrees_with_neurobench_where_installed():
    pytest.importorskip("neurobench")
    try:
        from neurobench.metrics.utils.layers import single_layer_MACs
    except ImportError:  # neurobench < 2
        from neurobench.benchmarks.utils.metric_utils import single_layer_MACs
    inputs, _ = layer_inputs(NET, X, T)
    macs = acs = dense = 0
    for name, seq in inputs.items():
        for t in range(T):
            ops, spiking = single_layer_MACs(seq[t], NET.layer(name))
            total, _ = single_layer_MACs(seq[t], NET.layer(name), total=True)
            dense += total
            if spiking:
                acs += ops
            else:
                macs += ops
    m = neurobench_metrics(RES, NET)
    n = X.shape[0]
    assert m.effective_acs == pytest.approx(acs / n)
    assert m.effective_macs == pytest.approx(macs / n)
    assert m.dense_ops == pytest.approx(dense / n)
