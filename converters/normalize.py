r"""Weight normalization and the spiking layers (Rueckauer et al. 2017).

Every value in the SNN stands for an ANN value in some *unit* ``u``: an IF neuron that fires
at rate ``r`` (spikes per step) represents the ANN activation ``a = u * r``. The network
input has ``u = 1`` (direct encoding); an activation layer with scale ``lambda`` (from
calibration, or a QCFS threshold) has ``u = lambda``, so its neurons saturate where the ANN
activation reaches ``lambda``. A convolution or linear layer that reads a value in unit
``u_in`` and feeds a neuron layer of scale ``lambda`` gets

    ``W' = W * u_in / lambda``,  ``b' = b / lambda``

(per input channel and per output channel when the units are channel-wise), which is the
layer-by-layer rescaling of Rueckauer et al. with the previous factor carried forward, and
its neurons keep threshold 1. Units pass unchanged through pooling, reshaping and
concatenation (channel by channel).

An addition needs all its inputs in one unit. Inputs that are weighted layers used only by
the addition are rescaled into the unit of the other (fixed) inputs, for example a
ResNet's identity shortcut; the neuron after the addition then gets the threshold
``lambda / u`` instead of 1, which is the same dynamics as threshold 1 on a rescaled input
and needs no extra multiplier on the shortcut. Fixed inputs in different units go through a
:class:`snnedge.Scale`.

Layers whose output reaches no neuron (the readout) get ``u = 1``: they accumulate the ANN's
logits. A clipped ReLU (``ReLU6``, ``clamp(0, c)``; ``Op.clip = c``) gets ``lambda <= c``
(:func:`clipped_scale`), so that its neurons saturate no later than the ANN clips. Channel
shuffles and slices (``chunk``, ``split``) move each channel with its unit.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

import snnedge
from snnedge.layers import Add, Scale
from snnedge.network import Node

from .errors import UnsupportedLayerError
from .ir import INPUT, Graph, Names, Op, after_neurons
from .maxpool import SpikingAdaptiveMaxPool2d, SpikingMaxPool2d
from .membrane import CalibratedIF
from .phases import ordered_offsets

ONE = torch.tensor(1.0, dtype=torch.float64)
# Weights rescaled in float64 per block of output rows (bounds the transient copies).
RESCALE_ELEMENTS = 2**22


def canonical(u: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``u`` as a 0-d tensor if constant, ``(C, 1, ...)`` if constant per channel, else full."""
    full = u.expand(shape) if u.dim() else u
    if full.dim() == 0 or bool((full == full.reshape(-1)[0]).all()):
        return full.reshape(-1)[0].clone() if full.dim() else full.clone()
    per_c = full.reshape(shape[0], -1)
    if bool((per_c == per_c[:, :1]).all()):
        return per_c[:, 0].clone().view(-1, *([1] * (len(shape) - 1)))
    return full.clone()


def per_channel(u: torch.Tensor, shape: tuple[int, ...], where: str) -> torch.Tensor:
    """``u`` as a 0-d tensor or one value per channel (dimension 0 of ``shape``)."""
    u = canonical(u, shape)
    if u.dim() == 0:
        return u
    if u.numel() == shape[0]:
        return u.reshape(-1)
    raise UnsupportedLayerError(where, "layer", "keep one scale per channel: reshape only "
                                "right before a Linear layer",
                                "Its input mixes values of different scales within a channel")


def clipped_scale(lam: torch.Tensor, clip: float | None) -> torch.Tensor:
    """A clipped ReLU's scale (``ReLU6``: ``clip = 6``) is at most its clip: a neuron firing at
    every step then stands for ``min(lambda, c)``, and the ANN never exceeds ``c``."""
    return lam if clip is None else torch.clamp(lam, max=float(clip))


class Normalizer:
    """Assigns units and builds the spiking layers of a (simplified) graph."""

    def __init__(self, graph: Graph, lambdas: dict[str, torch.Tensor], reset: str, v_init: float,
                 maxpool_mode: str, per_neuron_v_init: bool = False, phases: str = "aligned"):
        self.g = graph
        self.lam = {k: canonical(clipped_scale(v.double(), graph.op(k).clip), graph.op(k).shape)
                    for k, v in lambdas.items()}
        self.reset, self.v_init, self.maxpool_mode = reset, v_init, maxpool_mode
        self.per_neuron_v_init = per_neuron_v_init
        self.phases = phases  # "ordered": neurons fed by the input start spread (converters.phases)
        self.ops = {o.name: o for o in graph.ops}
        self.consumers: dict[str, list[Op]] = {o.name: [] for o in graph.ops}
        self.consumers[INPUT] = []
        for o in graph.ops:
            for i in o.inputs:
                self.consumers[i].append(o)
        self.units: dict[str, torch.Tensor] = {INPUT: ONE}
        self.add_units: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}
        self.thresholds: dict[str, torch.Tensor] = {}
        self._after = after_neurons(graph)

    # -- units ---------------------------------------------------------------------------
    def _only_consumer(self, name: str) -> Op | None:
        cons = self.consumers[name]
        return cons[0] if len(cons) == 1 and name != self.g.output else None

    def unit(self, name: str) -> torch.Tensor:
        if name not in self.units:
            self.units[name] = self._unit(self.ops[name])
        return self.units[name]

    def _unit(self, op: Op) -> torch.Tensor:
        k = op.kind
        if k == "weighted":
            return self.target(op)
        if k in ("relu", "qcfs"):
            return self.lam[op.name]
        if k == "add":
            return self.add_unit(op)[0]
        u_in = [self.unit(i) for i in op.inputs]
        shapes = [self.g.shape_of(i) for i in op.inputs]
        if k in ("avgpool", "maxpool", "scale"):
            u = per_channel(u_in[0], shapes[0], op.name)
            return u if u.dim() == 0 else u.view(-1, *([1] * (len(op.shape) - 1)))
        if k == "reshape":
            return canonical(u_in[0].expand(shapes[0]).reshape(op.shape) if u_in[0].dim() else u_in[0],
                             op.shape)
        if k in ("shuffle", "slice"):  # channels (or features) move; each keeps its unit
            if u_in[0].dim() == 0:
                return u_in[0]
            return canonical(op.module(u_in[0].expand(shapes[0]).unsqueeze(0))[0], op.shape)
        if k == "cat":
            if all(u.dim() == 0 for u in u_in) and len({float(u) for u in u_in}) == 1:
                return u_in[0]
            dim = op.module.dim - 1
            return canonical(torch.cat([u.expand(s) for u, s in zip(u_in, shapes)], dim), op.shape)
        raise ValueError(f"Layer {op.name!r}: unknown op kind {k!r}; graph capture makes only "
                         f"the kinds in converters.graph.KINDS.")

    def after_neurons(self, name: str) -> bool:
        """Whether a neuron layer is ``name`` or lies upstream of it (else its value is the
        same at every step under direct encoding, and its spike count has no transient to
        correct)."""
        return self._after[name]

    def phase_offsets(self, op: Op) -> torch.Tensor | None:
        """With ``phases="ordered"``, the initial-membrane offsets of neuron op ``op`` when
        the input alone feeds it (:func:`converters.phases.ordered_offsets`), else ``None``."""
        if self.phases != "ordered" or self.after_neurons(op.inputs[0]):
            return None
        return ordered_offsets(op.shape)

    def target(self, op: Op) -> torch.Tensor:
        """The unit a weighted layer's output is scaled to."""
        c = self._only_consumer(op.name)
        if c is not None and c.kind in ("relu", "qcfs"):
            return self.lam[c.name]
        if c is not None and c.kind == "add":
            return self.add_unit(c)[0]
        return ONE

    def _free(self, add: Op, name: str) -> bool:
        return name != INPUT and self.ops[name].kind == "weighted" and \
            self._only_consumer(name) is add

    def add_unit(self, op: Op) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(unit of the sum, {fixed input: factor of the Scale it needs})``."""
        if op.name in self.add_units:
            return self.add_units[op.name]
        fixed = [i for i in op.inputs if not self._free(op, i)]
        rescale = {}
        if fixed:
            u = canonical(self.unit(fixed[0]).expand(op.shape) if self.unit(fixed[0]).dim()
                          else self.unit(fixed[0]), op.shape)
            for i in fixed[1:]:
                ui = self.unit(i)
                if not torch.equal(canonical(ui.expand(op.shape) if ui.dim() else ui, op.shape), u):
                    rescale[i] = ui / u
        else:
            c = self._only_consumer(op.name)
            u = self.lam[c.name] if c is not None and c.kind in ("relu", "qcfs") else ONE
        self.add_units[op.name] = (u, rescale)
        return self.add_units[op.name]

    # -- layers --------------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        names = Names()
        for o in self.g.ops:
            names.used.add(o.name)
        out = []
        for op in self.g.ops:
            inputs = list(op.inputs)
            if op.kind == "add":
                _, rescale = self.add_unit(op)
                for j, i in enumerate(inputs):
                    if i in rescale:
                        s = per_channel(rescale[i], op.shape, op.name)
                        name = names.take(f"{op.name}_in{j}")
                        out.append(Node(name, Scale(s.float()), (i,)))
                        inputs[j] = name
            out.append(Node(op.name, self._module(op), tuple(inputs)))
        return out

    def _module(self, op: Op) -> nn.Module:
        k = op.kind
        if k == "weighted":
            return self._weighted(op)
        if k in ("relu", "qcfs"):
            u_in = self.unit(op.inputs[0])
            theta = per_channel(self.lam[op.name] / u_in, op.shape, op.name)
            self.thresholds[op.name] = theta
            v0 = op.module.shift if k == "qcfs" else self.v_init
            theta = float(theta) if theta.dim() == 0 else theta.float()
            if self.per_neuron_v_init and self.after_neurons(op.inputs[0]):
                return CalibratedIF(threshold=theta, reset=self.reset, v_init=v0, shape=op.shape)
            offsets = self.phase_offsets(op)
            if offsets is not None:
                return CalibratedIF(threshold=theta, reset=self.reset, v_init=v0,
                                    v_init_map=offsets + float(v0))
            return snnedge.IF(threshold=theta, reset=self.reset, v_init=v0)
        if k == "maxpool":
            m = op.module
            if isinstance(m, nn.AdaptiveMaxPool2d):
                return SpikingAdaptiveMaxPool2d(m.output_size, mode=self.maxpool_mode)
            return SpikingMaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                    mode=self.maxpool_mode)
        if k == "scale":
            u = per_channel(self.unit(op.inputs[0]), self.g.shape_of(op.inputs[0]), op.name)
            bias = None if op.module.bias is None else (op.module.bias.double() / u).float()
            return Scale(op.module.scale.clone(), bias)
        if k == "add":
            return Add()
        return copy.deepcopy(op.module)

    def _weighted(self, op: Op) -> nn.Module:
        m = copy.deepcopy(op.module)
        w = op.module.weight.detach()
        c_out = w.shape[0]
        u_in = per_channel(self.unit(op.inputs[0]), self.g.shape_of(op.inputs[0]), op.name)
        t = per_channel(self.target(op), op.shape, op.name)
        if isinstance(m, nn.Linear):
            factor = u_in.expand(w.shape[1]) if u_in.dim() == 0 else u_in
            factor = factor.view(1, -1)
        else:
            groups = m.groups
            per_group_in, per_group_out = w.shape[1], c_out // groups
            if u_in.dim() == 0:
                factor = u_in.expand(c_out, per_group_in)
            else:
                idx = (torch.arange(c_out) // per_group_out).view(-1, 1) * per_group_in + \
                    torch.arange(per_group_in).view(1, -1)
                factor = u_in[idx]
            factor = factor.view(c_out, per_group_in, *([1] * (w.dim() - 2)))
        t_out = t.expand(c_out) if t.dim() == 0 else t
        t_out = t_out.view(-1, *([1] * (w.dim() - 1)))
        dtype = m.weight.dtype
        # In float64, a block of output rows at a time: the float64 copies of a whole large
        # layer (VGG-16's first fully connected layer: 103 M weights) would add gigabytes.
        rows = max(1, RESCALE_ELEMENTS // max(1, w[0].numel()))
        with torch.no_grad():
            for r in range(0, c_out, rows):
                f = factor if factor.shape[0] == 1 else factor[r:r + rows]
                block = w[r:r + rows].double() * f / t_out[r:r + rows]
                m.weight[r:r + rows].copy_(block.to(dtype))
            if m.bias is not None:
                m.bias.copy_((m.bias.detach().double() / t_out.view(-1)).to(dtype))
        return m


def describe_scale(u: torch.Tensor) -> float | list[float]:
    """A unit or threshold as a float, or a list for per-channel values."""
    return float(u) if u.dim() == 0 else [float(v) for v in u.reshape(-1)]


def is_close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> tuple[bool, float]:
    """``(close, relative error)`` of two outputs, relative to ``b``'s largest magnitude."""
    scale = float(b.abs().max()) if b.numel() else 1.0
    err = float((a - b).abs().max()) if b.numel() else 0.0
    return err <= rtol * max(scale, 1e-12) + 1e-7, err / max(scale, 1e-12) if math.isfinite(err) else math.inf
