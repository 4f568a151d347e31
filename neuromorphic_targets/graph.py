"""Neuron populations of a `SpikingNetwork` and who connects to whom.

Hardware cores hold neurons. A *population* is a neuron layer (a spiking
:class:`~snnedge.TemporalModule`) or the readout (the trailing synaptic layer that
accumulates the output, which hardware also implements with neurons). Its *sources* are the
spiking layers (or the network input) whose events reach it through synaptic modules only;
the modules in between (convolutions, linear layers, pooling, flatten, junctions) form one
linear map ``M`` from the sources' neurons to the population's neurons.

Connectivity comes from ``M``'s structure, with every weight replaced by whether it is non-zero
and every pooling window by ones (a spike entering a pooling window reaches the pooled
neuron, as when hardware folds the pooling into the next layer's synapses; a spiking max
pool routes it to every window holding its position):

* fan-in of a target neuron = the row sums of that structural map applied to ones (paths per
  neuron; equal to distinct inputs unless one source reaches a neuron along two routes, as
  overlapping pooling windows do, where it is an upper bound);
* the inputs a *group* of targets needs (a core's axons) = the support of ``M^T g`` for the
  group's indicator ``g``, exact because every entry is non-negative (no cancellation).

Batches of groups go through one vector-Jacobian product (autograd on the linear map). The
tiler reads the same connectivity in closed form where the layers allow (:mod:`.receptive`)
and uses these products for the rest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from snnedge import SpikingNetwork
from snnedge.connectivity import structural
from snnedge.geometry import module_axes, torch_pad
from snnedge.layers import INPUT


class MappingError(ValueError):
    """A network the mapper cannot read (the message names the layer)."""


@dataclass(frozen=True)
class Population:
    """Neurons that a mapping places on cores.

    Attributes
    ----------
    name:
        The neuron layer, or for the readout the network's output layer.
    pre:
        The node whose output is the neurons' input current (``name``'s input, or ``name``
        itself for the readout); equal to a source when spikes arrive unweighted.
    sources:
        Spiking layers (or ``"input"``) whose events reach these neurons.
    nodes:
        Synaptic nodes between the sources and the neurons, in topological order.
    weighted:
        The weighted layers among ``nodes``.
    shape:
        Per-sample shape of the neurons.
    readout:
        Whether this is the non-spiking readout.
    """

    name: str
    pre: str
    sources: tuple[str, ...]
    nodes: tuple[str, ...]
    weighted: tuple[str, ...]
    shape: tuple[int, ...]
    readout: bool

    @property
    def neurons(self) -> int:
        return math.prod(self.shape)

    @property
    def label(self) -> str:
        """The weighted layer(s) feeding the neurons, as users name the layer."""
        return "+".join(self.weighted) if self.weighted else self.name


def is_spiking(net: SpikingNetwork, name: str) -> bool:
    return name != INPUT and net.kind(name) == "temporal" and net.layer(name).emits_spikes


class NetworkGraph:
    """Populations of ``net`` for inputs of ``input_shape``, and their structural maps."""

    def __init__(self, net: SpikingNetwork, input_shape: tuple[int, ...]):
        self.net = net
        self.input_shape = tuple(int(s) for s in input_shape)
        self.shapes = dict(net.shapes(self.input_shape))
        self.shapes[INPUT] = self.input_shape
        self._masks: dict[str, torch.Tensor] = {}
        self.names = tuple(node.name for node in net.nodes)
        pops = [self._population(n, net.inputs_of(n)[0], readout=False) for n in net.neuron_layers]
        if net.output_name in net.readout_names:
            pops.append(self._population(net.output_name, net.output_name, readout=True))
        self.populations: tuple[Population, ...] = tuple(pops)
        self.consumers: dict[str, list[str]] = {}
        for p in pops:
            for s in p.sources:
                self.consumers.setdefault(s, []).append(p.name)

    def _population(self, name: str, pre: str, readout: bool) -> Population:
        net, seen, nodes, sources, stack = self.net, set(), set(), set(), [pre]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n == INPUT or is_spiking(net, n):
                sources.add(n)
                continue
            nodes.add(n)
            stack.extend(net.inputs_of(n))
        order = [n for n in self.names if n in nodes]
        src = ([INPUT] if INPUT in sources else []) + [n for n in self.names if n in sources]
        weighted = tuple(n for n in order if net.kind(n) == "weighted")
        return Population(name, pre, tuple(src), tuple(order), weighted, self.shapes[name], readout)

    def population(self, name: str) -> Population:
        return next(p for p in self.populations if p.name == name)

    def source_shape(self, source: str) -> tuple[int, ...]:
        return self.shapes[source]

    def chained_weighted(self, pop: Population) -> list[tuple[str, str]]:
        """Pairs (earlier, later) of weighted layers with no neuron between them."""
        pairs = []
        for w in pop.weighted:
            stack, seen = list(self.net.inputs_of(w)), set()
            while stack:
                n = stack.pop()
                if n in seen or n not in pop.nodes:
                    continue
                seen.add(n)
                if self.net.kind(n) == "weighted":
                    pairs.append((n, w))
                    continue
                stack.extend(self.net.inputs_of(n))
        return pairs

    # -- structural map ------------------------------------------------------------------
    def _mask(self, name: str) -> torch.Tensor:
        if name not in self._masks:
            self._masks[name] = (self.net.layer(name).weight.detach() != 0).to("cpu", torch.float32)
        return self._masks[name]

    def forward(self, pop: Population, xs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The structural map of ``pop`` applied to source tensors ``(B, *source shape)``."""
        if pop.pre in pop.sources:
            return xs[pop.pre]
        vals = dict(xs)
        for n in pop.nodes:
            module = self.net.layer(n)
            ins = [vals[i] for i in self.net.inputs_of(n)]
            if self.net.kind(n) == "weighted":
                vals[n] = _weighted(module, self._mask(n), ins[0])
            else:
                # weight-free modules, and event-routing temporal modules (a spiking max pool:
                # an event may leave through every window that holds its position)
                vals[n] = _structural(n, module, ins)
        return vals[pop.pre]

    def fan_in(self, pop: Population) -> torch.Tensor:
        """Inputs (paths) into each neuron of ``pop``, per-sample shape, int64."""
        xs = {s: torch.ones((1, *self.shapes[s])) for s in pop.sources}
        with torch.no_grad():
            return self.forward(pop, xs)[0].round().long()

    @torch.enable_grad()
    def supports(self, pop: Population, groups: torch.Tensor) -> dict[str, torch.Tensor]:
        """For each group indicator ``groups[b]`` (shape of ``pop``), the source neurons it
        needs: ``{source: bool tensor (B, *source shape)}``."""
        xs = {s: torch.zeros((groups.shape[0], *self.shapes[s]), requires_grad=True)
              for s in pop.sources}
        out = self.forward(pop, xs)
        grads = torch.autograd.grad(out, list(xs.values()), grad_outputs=groups.to(out.dtype),
                                    allow_unused=True)
        return {s: (torch.zeros_like(xs[s], dtype=torch.bool) if g is None else g > 0)
                for s, g in zip(xs, grads)}

    def targets(self, pop: Population, source: str, index: tuple[int, ...]) -> torch.Tensor:
        """Bool tensor (shape of ``pop``): the neurons that source neuron ``index`` reaches."""
        xs = {t: torch.zeros((1, *self.shapes[t])) for t in pop.sources}
        xs[source][(0, *index)] = 1.0
        with torch.no_grad():
            return self.forward(pop, xs)[0] > 0


def _weighted(module: nn.Module, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return F.linear(x, mask)
    conv = F.conv2d if isinstance(module, nn.Conv2d) else F.conv1d
    # The padding as explicit (before, after) zeros per axis ("same" pads an even kernel's
    # extra one after the input). Reflect/replicate/circular padding wires border inputs to
    # extra targets; padding the indicator the same way keeps the structure exact.
    axes = module_axes(module, x.shape[2:])
    mode = getattr(module, "padding_mode", "zeros")
    if mode == "zeros" and all(a.pad_lo == a.pad_hi for a in axes):  # no padded copy needed
        pads = tuple(a.pad_lo for a in axes)
        return conv(x, mask, None, module.stride, pads, module.dilation, module.groups)
    x = F.pad(x, torch_pad(axes), mode="constant" if mode == "zeros" else mode)
    return conv(x, mask, None, module.stride, 0, module.dilation, module.groups)


def _structural(name: str, module: nn.Module, xs: list[torch.Tensor]) -> torch.Tensor:
    """The counting version of a weight-free module (shared with snnedge's event counting)."""
    try:
        return structural(module, xs, name)
    except ValueError as err:
        raise MappingError(f"{err} The mapper cannot tell which neurons it connects.") from None
