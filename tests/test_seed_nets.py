"""The benchmark's VGG-16 and ResNet-50 (examples/benchmarks/seed_nets.py) have torchvision's
layer shapes: parameter totals against torchvision's published counts (BatchNorm excluded),
and, where torchvision is installed, every convolution and linear weight in order."""
import pathlib
import sys

import pytest
import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "examples" / "benchmarks"))
import seed_nets  # noqa: E402

# torchvision's model cards: vgg16 138,357,544 parameters; resnet50 25,557,032, of which
# 53,120 are BatchNorm weights and biases (2 x 26,560 channels), which the SNN folds away.
PARAMS = {"vgg16": 138_357_544, "resnet50": 25_557_032 - 53_120}


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_parameter_count_and_output(name):
    net = seed_nets.NETWORKS[name](32)
    assert sum(p.numel() for p in net.parameters()) == PARAMS[name]
    assert net.shapes((3, 32, 32))[net.output_name] == (1000,)


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_weights_match_torchvision_layer_by_layer(name):
    models = pytest.importorskip("torchvision.models")
    ref = getattr(models, name)(weights=None)
    ours = seed_nets.NETWORKS[name](32)

    def layers(model):
        return [(n, tuple(m.weight.shape), getattr(m, "stride", None), getattr(m, "padding", None))
                for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    assert [l[1:] for l in layers(ours)] == [l[1:] for l in layers(ref)]
    assert [l[0] for l in layers(ours)] == [l[0] for l in layers(ref)]


def test_balance_gives_every_layer_spikes():
    import snnedge
    net = seed_nets.resnet50(32)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    thresholds = seed_nets.balance(net, x)
    assert set(thresholds) == set(net.neuron_layers) and all(t > 0 for t in thresholds.values())
    res = snnedge.simulate(net, x, timesteps=16)
    assert all(res.spike_counts[n] > 0 for n in net.neuron_layers)
