"""Adaptive pools that only copy their input, folded into the linear layer they feed.

torchvision's VGG and AlexNet end their features with ``AdaptiveAvgPool2d((7, 7))`` and
``((6, 6))``, then flatten the map into their first fully connected layer. On inputs smaller
than those the networks were built for, the map reaching the pool is smaller than its output
(1x1 for MNIST digits at 32 px), and the pool copies each value into ``rh x rw`` cells: the
linear layer then works on the copies, 49 (36) times the work of a layer on the map itself.
VGG-11's 25088 -> 4096 layer did 103 of the network's 272 M MAC per sample on 32 px digits,
and took 11-12 of 23 s of a batch of 100 at T = 32 on either path (examples/benchmarks/
RESULTS.md, issue 16 section 16).

For runs without gradients, :func:`fold_replication` gives the executor a view of the network
without such a pool: the flatten reads the pool's input, and the linear layer's weight is
summed over each value's copies, ``W'[o, c, h, w] = sum_ij W[o, c, h rh + i, w rw + j]``
(kept per layer while its weight is unchanged). The network itself is not changed. The sums
are the same up to rounding (``v (a + b)`` against ``v a + v b``), as the event path's are
(:mod:`snnedge.events`). A pool that copies each value once (``rh = rw = 1``, e.g.
ResNet's ``AdaptiveAvgPool2d(1)`` on a 1x1 map) is dropped and the layer kept as it is: the
same results bit for bit.

A pool qualifies when it is an ``AdaptiveAvgPool2d`` whose output size is a whole multiple of
its input's in both dimensions (each output cell then reads exactly one input cell:
``floor(oh / rh)``), its only reader an ``nn.Flatten`` over all of a sample's dimensions whose
only reader is an ``nn.Linear``, in a network without recurrent edges.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

from .layers import INPUT

_FOLDED: "weakref.WeakKeyDictionary[nn.Linear, dict]" = weakref.WeakKeyDictionary()


def copies(pool: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """``(rh, rw)``, how many times ``pool`` copies each value of a ``(C, H, W)`` input into its
    ``(C, rh H, rw W)`` output, where it does nothing else; else None."""
    if not isinstance(pool, nn.AdaptiveAvgPool2d) or len(in_shape) != 3 or len(out_shape) != 3:
        return None
    (_, h, w), (_, oh, ow) = in_shape, out_shape
    if oh % h or ow % w:
        return None
    return oh // h, ow // w


def folded_linear(linear: nn.Linear, shape: tuple[int, int, int], rh: int, rw: int) -> nn.Linear:
    """``linear``, which reads a flattened ``(C, rh H, rw W)`` map of copies, as a layer that
    reads the flattened ``(C, H, W)`` map: each weight summed over its input's copies. Kept
    while ``linear``'s weight and bias are unchanged (their version counters and storage)."""
    c, h, w = shape
    weight, bias = linear.weight, linear.bias
    stamp = tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in (weight, bias) if t is not None)
    key = (shape, rh, rw)
    kept = _FOLDED.setdefault(linear, {}).get(key)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    with torch.no_grad():
        summed = weight.detach().reshape(-1, c, h, rh, w, rw).sum((3, 5)).reshape(weight.shape[0], -1)
        layer = nn.Linear(c * h * w, weight.shape[0], bias is not None, device=weight.device, dtype=weight.dtype)
        layer.weight.copy_(summed)
        if bias is not None:
            layer.bias.copy_(bias.detach())
    layer.requires_grad_(False)
    _FOLDED[linear][key] = (stamp, layer)
    return layer


class FoldedView:
    """``net`` as :class:`snnedge.executor.Executor` reads it, with the pools of ``dropped``
    (pool name -> the flatten reading it) left out and the modules of ``modules`` (layer
    name -> module) in place of the network's."""

    def __init__(self, net, dropped: dict[str, str], modules: dict[str, nn.Module],
                 flat_shapes: dict[str, tuple[int, ...]]):
        self._net, self._dropped, self._modules, self._flat = net, dropped, modules, flat_shapes
        self.names = tuple(n for n in net.names if n not in dropped)
        self.output_name = net.output_name
        self.recurrent_edges = net.recurrent_edges
        # the executor asks for each layer's readers and inputs several times per block: one
        # dict lookup each (as the network's own), not a walk of the network's per call
        self._inputs = {n: tuple(net.inputs_of(i)[0] if i in dropped else i for i in net.inputs_of(n))
                        for n in self.names}
        self._consumers = {n: tuple(dropped.get(c, c) for c in net.consumers_of(n))
                           for n in (INPUT, *self.names)}

    def inputs_of(self, name: str) -> tuple[str, ...]:
        return self._inputs[name]

    def consumers_of(self, name: str) -> tuple[str, ...]:
        return self._consumers[name]

    def kind(self, name: str) -> str:
        return self._net.kind(name)

    def get_submodule(self, target: str) -> nn.Module:
        module = self._modules.get(target)
        return module if module is not None else self._net.get_submodule(target)

    def delayed_inputs_of(self, name: str) -> tuple[str, ...]:
        return self._net.delayed_inputs_of(name)

    def shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        shapes = self._net.shapes(input_shape)
        for p in self._dropped:
            del shapes[p]
        return {**shapes, **self._flat}


def fold_replication(net, sample_shape: tuple[int, ...]):
    """``net`` (a :class:`snnedge.SpikingNetwork`) as the executor should run it without
    gradients on samples of ``sample_shape``: a :class:`FoldedView` where a pool only copies
    values into a flatten and a linear layer (see the module docstring), else ``net``."""
    if net.recurrent_edges:
        return net
    shapes = None
    dropped, modules, flat = {}, {}, {}
    for p in net.names:
        pool = net.get_submodule(p)
        if not isinstance(pool, nn.AdaptiveAvgPool2d):
            continue
        ins, readers = net.inputs_of(p), net.consumers_of(p)
        if len(ins) != 1 or len(readers) != 1 or net.inputs_of(readers[0]) != (p,):
            continue
        src = ins[0]
        flatten = readers[0]
        f = net.get_submodule(flatten)
        lin = net.consumers_of(flatten)
        if not (isinstance(f, nn.Flatten) and f.start_dim == 1 and f.end_dim == -1 and len(lin) == 1
                and isinstance(net.get_submodule(lin[0]), nn.Linear) and net.inputs_of(lin[0]) == (flatten,)):
            continue
        shapes = shapes or net.shapes(sample_shape)
        in_shape = tuple(sample_shape) if src not in shapes else shapes[src]
        r = copies(pool, in_shape, shapes[p])
        if r is None:
            continue
        dropped[p] = flatten
        flat[flatten] = (in_shape[0] * in_shape[1] * in_shape[2],)
        if r != (1, 1):
            modules[lin[0]] = folded_linear(net.get_submodule(lin[0]), in_shape, *r)
    return FoldedView(net, dropped, modules, flat) if dropped else net


__all__ = ["copies", "folded_linear", "FoldedView", "fold_replication"]
