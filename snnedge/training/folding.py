"""Training's arrangements of a convolution: with the average pool after it as one strided
convolution, and in the channels-last memory layout.

A stride-1 ``Conv2d`` followed only by a non-overlapping ``AvgPool2d`` is the same linear map
as one convolution of stride ``p`` whose kernel is the conv kernel convolved with the
``p x p`` pooling box (:class:`ConvAvgPool`): 0.44x the multiply-accumulates for a 3x3 kernel
and 2x2 pool, and no full-resolution intermediate. Training uses it through
:func:`snnedge.training.training_view`; the network itself keeps its layers, so
:func:`snnedge.simulate` runs them as they are and agrees with the training forward pass to
float rounding.

On the CPU, :class:`ChannelsLastConv` runs a convolution on a channels-last input (``N, H, W,
C`` in memory), the layout for which oneDNN has its fast forward and backward convolutions;
its output keeps that layout, and so do the neurons after it
(:class:`~snnedge.training.neuron_grad.NeuronBlock`) and the next convolution's input. The
values are the same linear map, rounded differently in float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..dense_paths import conv_channels_last
from ..network import SpikingNetwork


class ConvAvgPool(nn.Conv2d):
    """``avg_pool2d(conv(x), p)`` as one convolution with stride ``p``.

    The folded kernel is the conv kernel convolved with a ``p x p`` box of ``1/p^2``: the same
    linear map with ``(k + p - 1)^2 / (p^2 k^2)`` of the multiply-accumulates (0.44 for k=3,
    p=2) and no full-resolution intermediate. It is rebuilt from ``conv.weight`` on every call,
    so gradients reach the original weight. Subclassing ``nn.Conv2d`` keeps it a weighted layer
    of the graph; it owns no parameters of its own.
    """

    def __init__(self, conv: nn.Conv2d, pool: int):
        nn.Module.__init__(self)
        self.conv, self.pool = conv, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, p = self.conv, self.pool
        w = c.weight
        box = torch.full((1, 1, p, p), 1.0 / (p * p), dtype=w.dtype, device=w.device)
        k = F.conv_transpose2d(w.reshape(-1, 1, *w.shape[2:]), box)
        k = k.view(*w.shape[:2], *k.shape[2:])
        return F.conv2d(x, k, c.bias, stride=p, padding=c.padding, groups=c.groups)

    def extra_repr(self) -> str:
        return f"{self.conv!r} + AvgPool2d({self.pool})"


class ChannelsLastConv(nn.Conv2d):
    """``conv(x)`` with ``x`` in the channels-last layout on the CPU (elsewhere unchanged).

    ``conv`` is an ``nn.Conv2d`` or a module standing in for one (:class:`ConvAvgPool`, a
    chip-format convolution); the wrapper owns no parameters, so gradients reach ``conv``'s.
    An input already in that layout (the spikes of a neuron fed by another convolution) is
    used as it is; only the first convolution, and one after a reshape, pays for a copy.
    """

    def __init__(self, conv: nn.Module):
        nn.Module.__init__(self)
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.device.type != "cpu":
            return self.conv(x)
        return conv_channels_last(self.conv, x)

    def extra_repr(self) -> str:
        return f"{self.conv!r}, channels last"


def pool_size(pool: nn.Module) -> int | None:
    """``p`` for an ``nn.AvgPool2d`` with non-overlapping ``p x p`` windows and no padding."""
    if type(pool) is not nn.AvgPool2d or pool.padding not in (0, (0, 0)) or pool.ceil_mode:
        return None
    k = pool.kernel_size if isinstance(pool.kernel_size, int) else (
        pool.kernel_size[0] if pool.kernel_size[0] == pool.kernel_size[1] else None)
    stride = pool.stride if isinstance(pool.stride, int) else (
        pool.stride[0] if pool.stride[0] == pool.stride[1] else None)
    if k is None or stride != k or pool.divisor_override is not None:
        return None
    return k


def foldable_pool(net: SpikingNetwork, name: str) -> int | None:
    """The pool size when layer ``name`` is a stride-1 Conv2d whose only consumer is a foldable
    AvgPool2d, else None."""
    conv = net.layer(name)
    if type(conv) is not nn.Conv2d or conv.stride != (1, 1) or conv.dilation != (1, 1) \
            or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    consumers = net.consumers_of(name)
    if len(consumers) != 1 or name == net.output_name:
        return None
    return pool_size(net.layer(consumers[0]))
