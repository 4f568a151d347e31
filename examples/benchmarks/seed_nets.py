"""The seed paper's networks as spiking networks built directly, with random weights.

VGG-16 (configuration D of Simonyan & Zisserman 2015) and ResNet-50 (He et al. 2016, the
torchvision v1.5 layout: stride on the 3x3 convolution of a bottleneck) with exactly
torchvision's convolution and linear shapes, every ReLU an ``snnedge.IF`` neuron layer, max
pooling read as average pooling of the same windows (for mapping and simulation speed the
connectivity is what matters: a spike entering a window reaches the pooled neuron), and the
last linear layer the readout. Layer names follow torchvision's module paths
(``features.0``, ``layer3.2.conv2``) so mapping rows point back to the familiar model.

Random weights leave a deep IF network nearly silent, so :func:`balance` sets each neuron
layer's threshold to the 99.9th percentile of its input current in the ANN the network
stands for (every IF a ReLU), layer by layer in the normalized domain, as data-based
normalization does (Rueckauer et al. 2017): the spike rates then follow the ANN's
activations. :func:`ann_forward` is that ANN, the dense bound of the simulation benchmark.

``tests/test_seed_nets.py`` checks the shapes against torchvision's models where torchvision
is installed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import snnedge
from snnedge import Node, SpikingNetwork
from snnedge.layers import INPUT

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
RESNET50 = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride)


def IF() -> snnedge.IF:
    """The neuron layer: integrate-and-fire, reset by subtraction, membranes starting at half
    the threshold (as converted networks start, ``converters.convert``'s default)."""
    return snnedge.IF(v_init=0.5)


def vgg16(size: int = 224, classes: int = 1000, seed: int = 0) -> SpikingNetwork:
    """VGG-16 at ``size`` pixels: 13 convolutions 3x3, 5 pools, 3 linear layers."""
    torch.manual_seed(seed)
    nodes, prev, c, i = [], None, 3, 0
    for v in VGG16:
        if v == "M":
            nodes.append(Node(f"features.{i}", nn.AvgPool2d(2), _after(prev)))
            prev, i = f"features.{i}", i + 1
            continue
        nodes.append(Node(f"features.{i}", nn.Conv2d(c, v, 3, padding=1), _after(prev)))
        nodes.append(Node(f"features.{i + 1}", IF(), (f"features.{i}",)))
        prev, c, i = f"features.{i + 1}", v, i + 2
    nodes.append(Node("avgpool", nn.AdaptiveAvgPool2d(7), (prev,)))
    nodes.append(Node("flatten", nn.Flatten(), ("avgpool",)))
    nodes += [Node("classifier.0", nn.Linear(512 * 7 * 7, 4096), ("flatten",)),
              Node("classifier.1", IF(), ("classifier.0",)),
              Node("classifier.3", nn.Linear(4096, 4096), ("classifier.1",)),
              Node("classifier.4", IF(), ("classifier.3",)),
              Node("classifier.6", nn.Linear(4096, classes), ("classifier.4",))]
    return SpikingNetwork(nodes, input_shape=(3, size, size))


def resnet50(size: int = 224, classes: int = 1000, seed: int = 0) -> SpikingNetwork:
    """ResNet-50 at ``size`` pixels: 7x7 stem, 3x3 pool, 16 bottlenecks, linear readout."""
    torch.manual_seed(seed)
    nodes = [Node("conv1", nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)),
             Node("relu", IF(), ("conv1",)),
             Node("maxpool", nn.AvgPool2d(3, stride=2, padding=1), ("relu",))]
    prev, c = "maxpool", 64
    for layer, (width, blocks, stride) in enumerate(RESNET50, start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            s = stride if b == 0 else 1
            nodes += [Node(f"{p}.conv1", nn.Conv2d(c, width, 1, bias=False), (prev,)),
                      Node(f"{p}.relu1", IF(), (f"{p}.conv1",)),
                      Node(f"{p}.conv2", nn.Conv2d(width, width, 3, stride=s, padding=1, bias=False),
                           (f"{p}.relu1",)),
                      Node(f"{p}.relu2", IF(), (f"{p}.conv2",)),
                      Node(f"{p}.conv3", nn.Conv2d(width, 4 * width, 1, bias=False), (f"{p}.relu2",))]
            skip = prev
            if b == 0:
                nodes.append(Node(f"{p}.downsample.0", nn.Conv2d(c, 4 * width, 1, stride=s, bias=False),
                                  (prev,)))
                skip = f"{p}.downsample.0"
            nodes += [Node(f"{p}.add", snnedge.Add(), (f"{p}.conv3", skip)),
                      Node(f"{p}.relu3", IF(), (f"{p}.add",))]
            prev, c = f"{p}.relu3", 4 * width
    nodes += [Node("avgpool", nn.AdaptiveAvgPool2d(1), (prev,)),
              Node("flatten", nn.Flatten(), ("avgpool",)),
              Node("fc", nn.Linear(2048, classes), ("flatten",))]
    return SpikingNetwork(nodes, input_shape=(3, size, size))


@torch.no_grad()
def ann_forward(net: SpikingNetwork, x: torch.Tensor, thresholds: dict[str, float] | None = None
                ) -> dict[str, torch.Tensor]:
    """Every layer's output in the ANN ``net`` stands for: each neuron layer a ReLU, divided
    by its threshold when ``thresholds`` are given (the normalized domain)."""
    vals = {INPUT: x}
    for name in net.names:
        ins = [vals[i] for i in net.inputs_of(name)]
        if net.kind(name) == "temporal":
            y = F.relu(ins[0])
            vals[name] = y / thresholds[name] if thresholds is not None else y
        else:
            vals[name] = net.layer(name)(*ins)
    return vals


@torch.no_grad()
def balance(net: SpikingNetwork, x: torch.Tensor, percentile: float = 99.9) -> dict[str, float]:
    """Set every neuron layer's threshold to the ``percentile`` of its positive input current
    on ``x`` in the normalized ANN (each layer's ReLU output divided by its threshold), in
    network order; returns the thresholds."""
    thresholds: dict[str, float] = {}
    vals = {INPUT: x}
    for name in net.names:
        ins = [vals[i] for i in net.inputs_of(name)]
        if net.kind(name) == "temporal":
            pos = ins[0][ins[0] > 0].reshape(-1)
            k = min(pos.numel(), max(1, round(percentile / 100 * pos.numel())))
            theta = float(pos.kthvalue(k).values) if pos.numel() else 1.0
            thresholds[name] = theta
            net.layer(name).threshold.fill_(theta)
            vals[name] = F.relu(ins[0]) / theta
        else:
            vals[name] = net.layer(name)(*ins)
    return thresholds


def _after(prev: str | None) -> tuple[str, ...] | None:
    return None if prev is None else (prev,)


NETWORKS = {"vgg16": vgg16, "resnet50": resnet50}
