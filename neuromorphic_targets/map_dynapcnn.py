"""Mapping onto DYNAP-CNN / Speck: one convolutional layer (conv -> neurons -> sum-pool) per core.

Memory a layer needs, as sinabs computes it (``DynapcnnLayer.memory_summary``), with a Linear
layer read as a convolution whose kernel covers its whole (channels, height, width) input::

    kernel = c_in * 2^(ceil(log2(k_h * k_w)) + ceil(log2(c_out)))      # c_in per group
    neuron = c_out * 2^(ceil(log2(h_out)) + ceil(log2(w_out)))          # before pooling
    bias   = c_out if the layer has a bias else 0

A layer fits a core when all three are within the core's memories; layers are assigned to
cores by a maximum bipartite matching (``scipy.optimize.linear_sum_assignment`` with a
prohibitive cost on pairs that do not fit, so the fewest layers are left out; among complete
assignments it prefers the smallest cores). No assignment of every layer means infeasible.
Also checked: kernel side <= 16, stride in {1, 2, 4, 8}, output channels <= 1024, input side
<= 128, square sum/average pooling of 1, 2 or 4 between layers, <= 2 destination layers, 8-bit
weights, and at most 9 layers.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from snnedge import SumPool2d
from snnedge.layers import DROPOUTS, INPUT

from .graph import NetworkGraph, Population
from .mapping_types import LayerRow, Mapping, ceil_div, who
from .profiles import Profile

PASS = (nn.Identity, *DROPOUTS)
NOT_FIT = 1e6


def ceil_log2(n: int) -> int:
    """``ceil(log2(n))`` for ``n >= 1``, exactly."""
    return (int(n) - 1).bit_length()


def kernel_memory(c_in: int, k_h: int, k_w: int, c_out: int) -> int:
    """Kernel memory entries of a layer (sinabs's formula).

    >>> kernel_memory(2, 3, 3, 8)   # 2 * 2^(ceil(log2 9) + ceil(log2 8)) = 2 * 2^(4 + 3)
    256
    """
    return int(c_in) * 2 ** (ceil_log2(k_h * k_w) + ceil_log2(c_out))


def neuron_memory(c_out: int, h_out: int, w_out: int) -> int:
    """Neuron memory entries of a layer (sinabs's formula).

    >>> neuron_memory(8, 28, 28)    # 8 * 2^(5 + 5)
    8192
    """
    return int(c_out) * 2 ** (ceil_log2(h_out) + ceil_log2(w_out))


def map_dynapcnn(graph: NetworkGraph, prof: Profile) -> Mapping:
    problems, notes = [], []
    shape = graph.input_shape
    side = int(prof.value("max_input_px"))
    if len(shape) != 3:
        problems.append(f"network input of shape {shape}: DYNAP-CNN takes (channels, height, width) "
                        f"inputs")
    elif max(shape[1:]) > side:
        problems.append(f"network input of shape {shape}: its side {max(shape[1:])} exceeds "
                        f"DYNAP-CNN's {side} pixels (max_input_px)")
    pops = graph.populations
    layers = [_layer(graph, pop, prof, problems, notes) for pop in pops]
    limit = int(prof.value("destinations_per_layer"))
    for s, targets in graph.consumers.items():
        if s != INPUT and len(targets) > limit:
            problems.append(f"neuron layer {s!r} sends to {len(targets)} layers {targets}; a DYNAP-CNN "
                            f"layer has {limit} destinations (destinations_per_layer)")
    n_cores = int(prof.value("cores_per_chip"))
    if len(pops) > n_cores:
        problems.append(f"the network has {len(pops)} layers; DYNAP-CNN has {n_cores} cores, one "
                        f"layer each (cores_per_chip)")
    assigned = _assign(layers, prof, pops, problems)
    kmem, nmem = prof.value("kernel_memory_entries"), prof.value("neuron_memory_entries")
    rows = []
    for pop, lay, core in zip(pops, layers, assigned):
        fi = graph.fan_in(pop)
        rows.append(LayerRow(
            layer=pop.label, neuron_layer=None if pop.readout else pop.name, neurons=pop.neurons,
            cores=1, neuron_utilisation=None if core is None or lay is None else lay[1] / nmem[core],
            fan_in=int(fi.max()) if fi.numel() else 0,
            fan_out_cores=None if pop.readout else len(graph.consumers.get(pop.name, [])),
            memory_utilisation=None if core is None or lay is None else lay[0] / kmem[core],
            core=core, kernel_memory=None if lay is None else lay[0],
            neuron_memory=None if lay is None else lay[1], bias_memory=None if lay is None else lay[2]))
    weight_problems = _weight_problems(graph, prof)
    notes.append("junctions (Add/Concat) of layer outputs are assumed to merge event streams; "
                 "not checked against the chip")
    destinations = {p.name: torch.full(p.shape, len(graph.consumers.get(p.name, [])), dtype=torch.long)
                    for p in pops if not p.readout}
    chips = max(1, ceil_div(len(pops), n_cores))
    # the event input: each input event goes once to every layer it feeds
    inputs = torch.full(graph.input_shape, len(graph.consumers.get(INPUT, [])), dtype=torch.long)
    return Mapping(prof, not problems, problems, len(pops), chips, None, len(pops), rows,
                   not weight_problems, weight_problems, notes, graph.input_shape, destinations,
                   inputs)


def _walk(pop: Population, start: str, neighbours: Callable[[str], Sequence[str]]) -> list[str]:
    """Nodes of ``pop`` reached from ``start`` by repeatedly following ``neighbours`` (the
    network's ``consumers_of`` walks downstream, its ``inputs_of`` upstream), depth first."""
    seen, stack = [], list(neighbours(start))
    while stack:
        n = stack.pop()
        if n in pop.nodes and n not in seen:
            seen.append(n)
            stack.extend(neighbours(n))
    return seen


def _layer(graph: NetworkGraph, pop: Population, prof: Profile, problems: list,
           notes: list) -> tuple[int, int, int] | None:
    """``(kernel, neuron, bias)`` memory entries of ``pop``'s layer, or ``None`` (problem added)."""
    if len(pop.weighted) != 1:
        problems.append(f"{who(pop)} receives {len(pop.weighted)} weighted layers {list(pop.weighted)}; "
                        f"a DYNAP-CNN core runs exactly one convolution")
        return None
    net, (w,) = graph.net, pop.weighted
    module = net.layer(w)
    for n in _walk(pop, w, net.consumers_of):
        if not isinstance(net.layer(n), PASS):
            problems.append(f"{who(pop)}: {type(net.layer(n)).__name__} {n!r} sits between the "
                            f"convolution and its neurons; DYNAP-CNN pools only after the neurons")
    pool = 1
    for n in _walk(pop, w, net.inputs_of):
        m = net.layer(n)
        if isinstance(m, (nn.AvgPool2d, SumPool2d)):
            k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
            if k[0] != k[1] or k != s or p != (0, 0):
                problems.append(f"{who(pop)}: pooling {n!r} (kernel {k}, stride {s}, padding {p}) "
                                f"must be square with stride = kernel and no padding on DYNAP-CNN")
            pool *= k[0]
        elif not isinstance(m, (nn.Flatten, *PASS)) and len(net.inputs_of(n)) == 1:
            problems.append(f"{who(pop)}: {type(m).__name__} {n!r} has no DYNAP-CNN equivalent "
                            f"between layers")
    if pool not in prof.value("pool_sizes_px"):
        problems.append(f"{who(pop)}: pooling of {pool} before it; DYNAP-CNN sum-pools by "
                        f"{list(prof.value('pool_sizes_px'))} (pool_sizes_px)")
    out = graph.shapes[w]
    if isinstance(module, nn.Conv2d):
        c_in, (k_h, k_w) = module.weight.shape[1], module.kernel_size
        c_out, h_out, w_out = out
        strides = prof.value("strides_px")
        if any(s not in strides for s in module.stride):
            problems.append(f"{who(pop)}: stride {module.stride} not in DYNAP-CNN's {list(strides)} "
                            f"(strides_px)")
        if module.groups > 1:
            notes.append(f"layer {w!r} is a grouped convolution; its kernel memory follows the "
                         f"weight's shape as sinabs counts it, support for groups is not verified")
    elif isinstance(module, nn.Linear):
        src = graph.shapes[net.inputs_of(w)[0]]
        flat = [n for n in _walk(pop, w, net.inputs_of) if isinstance(net.layer(n), nn.Flatten)]
        if flat:
            src = graph.shapes[net.inputs_of(flat[0])[0]]
        c_in, k_h, k_w = (src if len(src) == 3 else (math.prod(src), 1, 1))
        c_out, h_out, w_out = out[0], 1, 1
    else:
        problems.append(f"{who(pop)}: {type(module).__name__} layers have no DYNAP-CNN equivalent "
                        f"(Conv2d and Linear do)")
        return None
    kmax, cmax = int(prof.value("max_kernel_px")), int(prof.value("max_channels_out"))
    if max(k_h, k_w) > kmax:
        problems.append(f"{who(pop)}: kernel {k_h}x{k_w} exceeds DYNAP-CNN's {kmax}x{kmax} "
                        f"(max_kernel_px)")
    if c_out > cmax:
        problems.append(f"{who(pop)}: {c_out} output channels exceed DYNAP-CNN's {cmax} "
                        f"(max_channels_out)")
    bias = c_out if module.bias is not None else 0
    return kernel_memory(c_in, k_h, k_w, c_out), neuron_memory(c_out, h_out, w_out), bias


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _assign(layers, prof: Profile, pops, problems: list) -> list[int | None]:
    from scipy.optimize import linear_sum_assignment  # slow to import; only DYNAP-CNN needs it

    kmem, nmem = prof.value("kernel_memory_entries"), prof.value("neuron_memory_entries")
    bmem = prof.value("bias_memory_entries")
    n_cores = len(kmem)
    fits = np.array([[lay is not None and lay[0] <= kmem[j] and lay[1] <= nmem[j] and lay[2] <= bmem[j]
                      for j in range(n_cores)] for lay in layers], dtype=bool).reshape(len(layers), n_cores)
    size = np.array([(kmem[j] + nmem[j]) / (max(kmem) + max(nmem)) for j in range(n_cores)])
    cost = np.where(fits, size[None, :], NOT_FIT)
    rows, cols = linear_sum_assignment(cost)
    assigned: list[int | None] = [None] * len(layers)
    for r, c in zip(rows, cols):
        if fits[r, c]:
            assigned[r] = int(c)
    caps = ", ".join(f"core {j}: {kmem[j]:,}/{nmem[j]:,}/{bmem[j]:,}" for j in range(n_cores))
    for i, (pop, lay) in enumerate(zip(pops, layers)):
        if assigned[i] is not None or lay is None:
            continue
        if not fits[i].any():
            problems.append(f"{who(pop)} needs {lay[0]:,} kernel, {lay[1]:,} neuron and {lay[2]:,} bias "
                            f"memory entries; no DYNAP-CNN core has all three (kernel/neuron/bias "
                            f"entries per core: {caps})")
        else:
            cores = [int(j) for j in np.flatnonzero(fits[i])]
            holders = sorted({pops[k].label for k in range(len(pops)) if assigned[k] in cores})
            problems.append(f"{who(pop)} fits only cores {cores}, which other layers {holders} need; "
                            f"no assignment of layers to cores exists (bipartite matching)")
    return assigned


def _weight_problems(graph: NetworkGraph, prof: Profile) -> list[str]:
    bits, out = int(prof.value("weight_bits")), []
    for pop in graph.populations:
        for w in pop.weighted:
            if _off_grid(graph.net.layer(w).weight, 2 ** (bits - 1) - 1):
                out.append(f"layer {w!r}: weights are not {bits}-bit integers times one scale per "
                           f"layer (weight_bits); run quantize_for(snn, 'dynap-cnn')")
    return out


def _off_grid(weight: torch.Tensor, levels: int, rel_tol: float = 1e-4) -> bool:
    """:func:`~.weights.off_grid` of a layer's weights (zeros are on every grid), in numpy
    chunks: no masked copy of a large layer."""
    w = weight.detach().cpu()
    w = (w if w.dtype in (torch.float16, torch.float32, torch.float64) else w.float()).numpy().reshape(-1)
    top = np.abs(w).max() if w.size else 0
    if top == 0:
        return False
    scale = top / levels
    step = 1 << 22
    for i in range(0, w.size, step):
        q = w[i:i + step] / scale
        if (np.abs(q - np.round(q)) > rel_tol * levels).any():
            return True
    return False
