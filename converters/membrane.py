r"""Initial-membrane calibration: correct the spikes that a converted network fires too early.

With reset by subtraction, an IF neuron's spike count after ``t`` steps is
``max_{s <= t} floor(V(s) / theta)`` where ``V`` is its initial membrane plus its cumulative
input; the ANN (quantized to ``t`` levels) computes ``floor(V(t) / theta)``. The two differ
when the cumulative input is larger early than at the end: inputs that fire early push a
neuron over threshold before the inhibition that arrives later, and a spike cannot be taken
back. Deep and residual networks suffer most (the shortcut delivers its spikes before the
branch does). The excess is a number of spikes fixed in the first steps, not a rate, so
lowering the initial membrane by the mean excess corrects it at every ``T``.

Potential calibration (Li, Deng, Dong, Gong and Gu, "A free lunch from ANN: towards
efficient, accurate spiking neural networks calibration", ICML 2021, arXiv:2106.06984):
layer by layer in topological order, simulate the network up to that layer for ``T_c``
steps on calibration samples and set, per neuron,

    ``v_init <- v_init - (mean spike count - mean target count)``,
    target count = ``clip(T_c * a / lambda, 0, T_c)`` with ``a`` the ANN's activation,

in units of the threshold. Earlier layers are calibrated before later ones see them.

:func:`calibrate_membrane` does this in one sweep (:class:`converters.sweep.Sweep`): the
calibration samples' spike trains go through the network layer by layer, each layer is
calibrated once and then fires its corrected trains into the layers after it, so the cost
is a fixed number of passes whatever the depth. It computes what
:func:`calibrate_membrane_per_layer` computes (one simulation of all the layers before each
neuron layer, a cost that grows with the square of the depth), which stays as the
reference the tests compare it with.
"""
from __future__ import annotations

import math

import torch

import snnedge
from snnedge.layers import INPUT
from snnedge.network import Node, SpikingNetwork

from .calibration import record_batch
from .graph import Graph
from .sweep import Sweep


class CalibratedIF(snnedge.IF):
    """An :class:`snnedge.IF` whose initial membrane is set per neuron.

    ``v_init_map`` (a buffer shaped like one sample of the layer's input, in units of the
    threshold) replaces the scalar ``v_init`` at ``t = 0``; the dynamics are IF's.
    """

    def __init__(self, threshold=1.0, reset: str = "subtract", v_init: float = 0.5,
                 v_init_map: torch.Tensor | None = None, shape: tuple[int, ...] | None = None):
        super().__init__(threshold=threshold, reset=reset, v_init=v_init)
        if v_init_map is None:
            if shape is None:
                raise ValueError("CalibratedIF needs v_init_map or the per-sample shape.")
            v_init_map = torch.full(tuple(shape), float(v_init))
        self.register_buffer("v_init_map", torch.as_tensor(v_init_map, dtype=torch.get_default_dtype()).clone())

    def initial_state(self, template: torch.Tensor) -> torch.Tensor:
        return self.state_like(template, self.v_init_map.to(template) * self.threshold_for(template))

    def extra_repr(self) -> str:
        m = self.v_init_map
        return super().extra_repr() + f", v_init_map=[{float(m.min()):.2f}, {float(m.max()):.2f}]"


def calibrated_layers(snn: SpikingNetwork) -> list[str]:
    """The neuron layers of ``snn`` whose initial membranes calibration sets."""
    return [n for n in snn.neuron_layers if isinstance(snn.layer(n), CalibratedIF)]


@torch.no_grad()
def target_counts(graph: Graph, x: torch.Tensor, layers: list[str],
                  scales: dict[str, torch.Tensor], timesteps: int,
                  batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per neuron of each layer in ``layers``, the mean over ``x`` of the spikes the ANN's
    activation stands for in ``timesteps`` steps, ``clip(T * a / lambda, 0, T)``."""
    total: dict[str, torch.Tensor] = {}
    batch_size = record_batch([math.prod(graph.op(n).shape) for n in layers], batch_size)
    for i in range(0, x.shape[0], batch_size):
        _, acts = graph.run(x[i:i + batch_size], record=tuple(layers))
        for name in layers:
            a = acts[name].to(torch.float32)
            lam = scales[name].to(a.device, torch.float32)
            lam = lam if lam.dim() == 0 else lam.view(1, *lam.shape)
            t = torch.clamp(a / lam * timesteps, 0, timesteps).sum(0, dtype=torch.float64)
            total[name] = t if name not in total else total[name] + t
    return {name: t / x.shape[0] for name, t in total.items()}


def _correct(neuron: CalibratedIF, count: torch.Tensor, target: torch.Tensor) -> float:
    err = count.to(target.device, torch.float32) - target.to(torch.float32)
    neuron.v_init_map.sub_(err.to(neuron.v_init_map)).clamp_(max=1.0)
    return float(err.mean())


@torch.no_grad()
def calibrate_membrane(snn: SpikingNetwork, graph: Graph, x: torch.Tensor,
                       scales: dict[str, torch.Tensor], timesteps: int,
                       batch_size: int = 256, checkpoints: tuple[int, ...] | None = None,
                       iterations: int = 1) -> dict[str, float]:
    """Set the ``v_init_map`` of every :class:`CalibratedIF` in ``snn`` (in place, on the
    network being built) in one sweep over the layers; returns the mean excess spikes
    corrected per layer."""
    layers = calibrated_layers(snn)
    targets = target_counts(graph, x, layers, scales, timesteps, batch_size)
    sweep = Sweep(snn, x, timesteps)
    needed = set(layers) | set(sweep.last_reader)
    checkpoints = tuple(checkpoints or (timesteps,))
    excess = {}
    for name in sweep.temporal:
        if name not in needed:
            continue
        kept = None
        if name in targets:
            kept = sweep.currents(name)
            rate = targets[name] / timesteps
            for it in range(iterations):
                counts = sweep.counts(name, kept, checkpoints)
                err = sum(counts[t] / x.shape[0] - rate * t for t in checkpoints) / len(checkpoints)
                e = _correct(snn.layer(name), err + rate * timesteps, targets[name])
                if it == 0:
                    excess[name] = e
        sweep.store(name, kept)
    return excess


def _ancestors(net: SpikingNetwork, name: str) -> list[Node]:
    keep, stack = set(), [name]
    while stack:
        n = stack.pop()
        if n in keep or n == INPUT:
            continue
        keep.add(n)
        stack.extend(net.inputs_of(n))
    return [node for node in net.nodes if node.name in keep]


@torch.no_grad()
def calibrate_membrane_per_layer(snn: SpikingNetwork, graph: Graph, x: torch.Tensor,
                                 scales: dict[str, torch.Tensor], timesteps: int,
                                 batch_size: int = 256) -> dict[str, float]:
    """:func:`calibrate_membrane` by one simulation of the layers before each neuron layer
    (the method before the sweep; its cost grows with the square of the depth)."""
    layers = calibrated_layers(snn)
    targets = target_counts(graph, x, layers, scales, timesteps, batch_size)
    excess = {}
    for name in layers:
        sub = SpikingNetwork(_ancestors(snn, name), input_shape=snn.input_shape)
        res = snnedge.simulate(sub, x, timesteps=timesteps, batch_size=batch_size,
                               dtype=torch.float32, engine="dense", progress=False)
        count = res.neuron_spike_counts[name] / x.shape[0]
        excess[name] = _correct(snn.layer(name), count, targets[name])
    return excess
