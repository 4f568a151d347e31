"""quantize_for: each profile's weight limits hold afterwards; the original is untouched."""
import pathlib
import sys

import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import map_network, quantize_for
from neuromorphic_targets.weights import distinct_nonzero, kmeans_rows, off_grid

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from model_digest import state_hash  # noqa: E402


def small_net(seed=0):
    torch.manual_seed(seed)
    return snnedge.sequential(nn.Conv2d(1, 8, 3, padding=1), snnedge.IF(), nn.AvgPool2d(2),
                              nn.Conv2d(8, 8, 3, padding=1, groups=2), snnedge.IF(), nn.Flatten(),
                              nn.Linear(8 * 4 * 4, 5), input_shape=(1, 8, 8))


@pytest.mark.parametrize("profile", ["truenorth", "dynap-se", "dynap-cnn"])
def test_quantized_copy_is_representable_and_original_untouched(profile):
    net = small_net()
    before = state_hash(net)
    assert not map_network(net, profile).weights_representable
    q = quantize_for(net, profile)
    assert q is not net and state_hash(net) == before
    m = map_network(q, profile)
    assert m.weights_representable, m.weight_problems
    # Same structure and zeros, weights close to the original.
    for (k, a), (_, b) in zip(net.state_dict().items(), q.state_dict().items()):
        assert a.shape == b.shape
        if k.endswith("weight"):
            assert torch.equal(a == 0, b == 0) or (b == 0).sum() >= (a == 0).sum()
            assert (a - b).abs().max() <= a.abs().max()


def test_truenorth_four_levels_per_neuron_on_a_9_bit_grid():
    q = quantize_for(small_net(), "truenorth")
    for name in ("0", "3", "6"):
        rows = q.layer(name).weight.detach().reshape(q.layer(name).weight.shape[0], -1)
        assert int(distinct_nonzero(rows).max()) <= 4
        for r in rows:
            assert not off_grid(r[r != 0], 255)


def test_dynapse_two_excitatory_two_inhibitory_values_per_core():
    net = small_net()
    q = quantize_for(net, "dynap-se")
    m = map_network(q, "dynap-se")
    for row in m.per_layer:
        w = q.layer(row.layer).weight.detach()
        block = row.tile[0]  # output channels per core
        for start in range(0, w.shape[0], block):
            g = w[start:start + block]
            assert g[g > 0].unique().numel() <= 2 and g[g < 0].unique().numel() <= 2


def test_dynapcnn_8_bit_grid_error_bound():
    net = small_net()
    q = quantize_for(net, "dynap-cnn")
    for name in ("0", "3", "6"):
        a, b = net.layer(name).weight.detach(), q.layer(name).weight.detach()
        scale = a.abs().max() / 127
        assert (a - b).abs().max() <= scale / 2 + 1e-7
        assert torch.allclose(b / scale, (b / scale).round(), atol=1e-3)


def test_kmeans_recovers_clear_clusters_and_keeps_few_values():
    row = torch.tensor([[-2.0, -2.1, -1.9, 0.0, 0.5, 0.52, 0.48, 3.0, 3.1, 2.9, 0.0]], dtype=torch.float64)
    q = kmeans_rows(row, row != 0, 3)
    assert sorted(q[0][q[0] != 0].unique().tolist()) == pytest.approx([-2.0, 0.5, 3.0])
    assert q[0, 3] == 0 and q[0, 10] == 0
    few = torch.tensor([[1.0, 1.0, 2.0, 0.0, 3.0]])
    assert torch.equal(kmeans_rows(few, few != 0, 4), few)


def test_quantize_accuracy_cost_is_measurable():
    net = small_net()
    x = torch.rand(6, 1, 8, 8)
    a = snnedge.simulate(net, x, timesteps=8)
    b = snnedge.simulate(quantize_for(net, "dynap-cnn"), x, timesteps=8)
    assert a.output.shape == b.output.shape
    assert float((a.predictions == b.predictions).double().mean()) >= 0.5


def test_loihi_has_no_published_weight_format():
    with pytest.raises(ValueError, match="loihi"):
        quantize_for(small_net(), "loihi")
    with pytest.raises(TypeError):
        quantize_for(nn.Linear(2, 2), "truenorth")
