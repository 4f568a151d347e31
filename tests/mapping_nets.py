"""Small networks whose mappings are pinned (tests/test_mapping_pinned.py) and checked against a
brute-force enumeration of tilings: every layer kind the mapper reads (strided, dilated,
grouped, depthwise and "same"-padded convolutions, reflect padding, Conv1d, pools with
padding and ceil_mode, adaptive pools, residual Add, Concat, Scale, sparse weights)."""
import torch
from torch import nn

import snnedge
from snnedge import Node, SpikingNetwork


def vgg_mnist(seed=0):
    """VGG-like MNIST CNN with 3x3x32 kernels."""
    torch.manual_seed(seed)
    return snnedge.sequential(
        nn.Conv2d(1, 32, 3, padding=1), snnedge.IF(), nn.Conv2d(32, 32, 3, padding=1), snnedge.IF(),
        nn.AvgPool2d(2), nn.Conv2d(32, 64, 3, padding=1), snnedge.IF(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(64 * 7 * 7, 10), input_shape=(1, 28, 28))


def truenorth_designed(seed=0):
    """Grouped, strided convolutions keep every fan-in <= 256 (after Esser et al. 2016):
    fan-ins 9, 8*9 = 72, 8*9 = 72, 16*9 = 144 and 16*4*4 = 256 for the readout."""
    torch.manual_seed(seed)
    return snnedge.sequential(
        nn.Conv2d(1, 16, 3, padding=1), snnedge.IF(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=2), snnedge.IF(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=4), snnedge.IF(),
        nn.Conv2d(32, 16, 3, stride=2, padding=1, groups=2), snnedge.IF(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10), input_shape=(1, 28, 28))


def residual(seed=0):
    """A hand-built graph: conv -> IF -> [conv -> IF -> conv] + skip -> IF -> pool -> linear."""
    torch.manual_seed(seed)
    return SpikingNetwork([
        Node("stem", nn.Conv2d(1, 6, 3, padding=1)),
        Node("stem_if", snnedge.IF(threshold=0.6)),
        Node("block.conv1", nn.Conv2d(6, 6, 3, padding=1), ("stem_if",)),
        Node("block.if1", snnedge.IF(threshold=0.5), ("block.conv1",)),
        Node("block.conv2", nn.Conv2d(6, 6, 3, padding=1), ("block.if1",)),
        Node("block.add", snnedge.Add(), ("block.conv2", "stem_if")),
        Node("block.if2", snnedge.LIF(beta=0.9), ("block.add",)),
        Node("pool", nn.AvgPool2d(2), ("block.if2",)),
        Node("flat", nn.Flatten(), ("pool",)),
        Node("fc", nn.Linear(6 * 4 * 4, 5), ("flat",)),
    ], input_shape=(1, 8, 8))


def banded_readout():
    """Readout output j reads inputs 60j..60j+59 of 600 (fan-in 60)."""
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Linear(50, 100), snnedge.IF(), nn.Linear(100, 600), snnedge.IF(),
                             nn.Linear(600, 10), input_shape=(50,))
    with torch.no_grad():
        w = torch.zeros(10, 600)
        for j in range(10):
            w[j, 60 * j:60 * (j + 1)] = torch.randn(60)
        net.layer("4").weight.copy_(w)
    return net


def borders():
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(1, 8, 3, padding=1), snnedge.IF(), nn.Conv2d(8, 16, 3, padding=1),
                              snnedge.IF(), nn.Flatten(), nn.Linear(16 * 64, 10), input_shape=(1, 8, 8))


def small_grouped():
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(2, 4, 3, padding=1), snnedge.IF(), nn.AvgPool2d(2),
                              nn.Conv2d(4, 4, 3, padding=1, groups=4), snnedge.IF(), nn.Flatten(),
                              nn.Linear(4 * 4 * 4, 4), input_shape=(2, 8, 8))


def same_padding():
    torch.manual_seed(0)
    return snnedge.sequential(
        nn.Conv2d(1, 4, 3, padding="same"), snnedge.IF(threshold=0.5),
        nn.Conv2d(4, 6, 4, padding="same", dilation=1), snnedge.IF(threshold=0.5),
        nn.Conv2d(6, 6, 2, padding="same", dilation=3), snnedge.IF(threshold=0.5),
        nn.AvgPool2d(3, 2, 1, ceil_mode=True), nn.Flatten(), nn.Linear(6 * 5 * 5, 10),
        input_shape=(1, 9, 9))


def golden16():
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(1, 8, 3, padding=1), snnedge.IF(threshold=0.5),
                              nn.AvgPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                              snnedge.IF(threshold=0.5), nn.Flatten(), nn.Linear(8 * 8 * 8, 3),
                              input_shape=(1, 16, 16))


def strided_dilated():
    """Stride 2 with dilation 2, reflect padding, a depthwise layer and sum pooling."""
    torch.manual_seed(1)
    return snnedge.sequential(
        nn.Conv2d(3, 12, 3, stride=2, dilation=2, padding=2), snnedge.IF(),
        nn.Conv2d(12, 12, 3, padding=1, groups=12, padding_mode="reflect"), snnedge.IF(),
        snnedge.SumPool2d(2), nn.Conv2d(12, 10, (1, 3), padding=(0, 1), groups=2), snnedge.IF(),
        nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(10 * 9, 6), input_shape=(3, 21, 19))


def conv1d():
    torch.manual_seed(2)
    return snnedge.sequential(
        nn.Conv1d(2, 8, 5, stride=2, padding=2), snnedge.IF(), nn.AvgPool1d(3, 2, 1),
        nn.Conv1d(8, 8, 3, dilation=2, padding="same"), snnedge.IF(), nn.Flatten(),
        nn.Linear(8 * 10, 5), input_shape=(2, 40))


def concat_scale():
    """Two branches from one source, concatenated, a per-channel Scale with a zero, and a
    residual Add of a 1x1 projection of the same source."""
    torch.manual_seed(3)
    return SpikingNetwork([
        Node("stem", nn.Conv2d(2, 4, 3, padding=1)),
        Node("stem_if", snnedge.IF()),
        Node("a", nn.Conv2d(4, 3, 1), ("stem_if",)),
        Node("b", nn.Conv2d(4, 5, 3, padding=2, dilation=2), ("stem_if",)),
        Node("cat", snnedge.Concat(), ("a", "b")),
        Node("scale", snnedge.Scale(torch.tensor([1.0, 0.0, 2.0, 1.0, 1.0, 1.0, 0.5, 1.0])),
             ("cat",)),
        Node("cat_if", snnedge.IF(), ("scale",)),
        Node("proj", nn.Conv2d(4, 8, 1), ("stem_if",)),
        Node("add", snnedge.Add(), ("proj", "cat_if")),
        Node("out_if", snnedge.IF(), ("add",)),
        Node("pool", nn.AvgPool2d(2, ceil_mode=True), ("out_if",)),
        Node("flat", nn.Flatten(), ("pool",)),
        Node("fc", nn.Linear(8 * 4 * 4, 3), ("flat",)),
    ], input_shape=(2, 7, 7))


def sparse_weights():
    """Pruned kernels: zero taps and zero channel pairs change the receptive fields."""
    torch.manual_seed(4)
    net = snnedge.sequential(nn.Conv2d(2, 6, 3, padding=1), snnedge.IF(), nn.Conv2d(6, 6, 3, stride=2, padding=1),
                             snnedge.IF(), nn.Flatten(), nn.Linear(6 * 5 * 5, 4), input_shape=(2, 10, 10))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name in ("0", "2", "5"):
            w = net.layer(name).weight
            w.mul_((torch.rand(w.shape, generator=g) > 0.6).to(w))
    return net


def grouped_issue17():
    """Issue 17's kind of grouped CNN: fan-in 8 x 5 x 5 = 200 <= 256, so a core holding one
    output position of one group fits TrueNorth's axons, yet screening a border tile (smaller
    than the interior ones) reported it infeasible."""
    torch.manual_seed(117)
    return snnedge.sequential(nn.Conv2d(1, 16, 3, padding=1), snnedge.IF(),
                              nn.Conv2d(16, 32, 5, stride=2, padding=2, groups=2), snnedge.IF(),
                              input_shape=(1, 10, 10))


#: Networks pinned before the mapper was rewritten (issue 17), by name.
PINNED = {f.__name__: f for f in (vgg_mnist, truenorth_designed, residual, banded_readout, borders,
                                  small_grouped, same_padding, golden16, strided_dilated, conv1d,
                                  concat_scale, sparse_weights)}
