"""The conversion graph's data: an ANN as a list of primitive operations.

Every ANN becomes a :class:`Graph` of :class:`Op` s in topological order before anything
else happens. Each op has a name (the ANN's module path, ``features.3``, or for a function
called inside a module's ``forward`` that module's path and the function, ``layer1.0.add``),
a kind (see :data:`KINDS`), the names of its inputs (``"input"`` is the ANN's input), a
private copy of the torch module that computes it, and its per-sample output shape. The
graph runs as an ANN (:meth:`Graph.run`), which is how calibration data are pushed through
it and how capture is checked against the original model.

The front ends that build it: :func:`converters.graph.capture_fx` (torch.fx) and
:func:`converters.export.capture_export` (``torch.export``).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from .errors import UnsupportedLayerError

INPUT = "input"

KINDS = {
    "weighted": "Conv1d, Conv2d or Linear, grouped and depthwise included (weights rescaled, "
                "BatchNorm folded in)",
    "bn": "BatchNorm1d/2d (folded, or a per-channel Scale)",
    "relu": "ReLU, and the clipped ReLUs ReLU6, Hardtanh(0, c), clamp(0, c) (an IF neuron; "
            "Op.clip holds c)",
    "qcfs": "QCFS (an IF neuron with the trained threshold)",
    "avgpool": "AvgPool1d/2d, AdaptiveAvgPool1d/2d (any output size), x.mean((2, 3))",
    "maxpool": "MaxPool2d, AdaptiveMaxPool2d (a spiking max pool)",
    "reshape": "Flatten, Unflatten, view, reshape",
    "permute": "transpose / permute inside a channel shuffle (collapsed into a 'shuffle')",
    "shuffle": "ChannelShuffle, or view / transpose / view that is one (a channel permutation)",
    "slice": "chunk, split, x[:, a:b] along a feature dimension (snnedge.Narrow)",
    "add": "element-wise sum of two or more tensors (snnedge.Add)",
    "cat": "concatenation (snnedge.Concat)",
    "scale": "per-channel affine map (snnedge.Scale)",
    "identity": "Identity, Dropout, contiguous (removed)",
}

@dataclass
class Op:
    """One primitive operation of the ANN (see the module docstring)."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    module: nn.Module
    shape: tuple[int, ...]
    source: str = ""  # the ANN module type or function, for messages
    clip: float | None = None  # "relu" ops: the ANN clips at this value (ReLU6: 6)


@dataclass
class Graph:
    """Ops in topological order; ``output`` names the op whose value the ANN returns."""

    ops: list[Op]
    output: str
    input_shape: tuple[int, ...]

    def op(self, name: str) -> Op:
        for o in self.ops:
            if o.name == name:
                return o
        raise KeyError(name)

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.input_shape if name == INPUT else self.op(name).shape

    @torch.no_grad()
    def run(self, x: torch.Tensor, record: tuple[str, ...] = ()) -> tuple[torch.Tensor, dict]:
        """The ANN's output for ``x`` ``[N, ...]`` and the values of the ``record`` ops."""
        vals = {INPUT: x}
        uses = Counter(i for o in self.ops for i in o.inputs)
        kept = {}
        for o in self.ops:
            vals[o.name] = o.module(*[vals[i] for i in o.inputs])
            if o.name in record:
                kept[o.name] = vals[o.name]
            for i in o.inputs:
                uses[i] -= 1
                if uses[i] == 0 and i != self.output:
                    vals.pop(i, None)
        return vals[self.output], kept


NEURON_KINDS = ("relu", "qcfs")


def after_neurons(graph: Graph) -> dict[str, bool]:
    """Per op of ``graph`` (and ``INPUT``): whether it is a neuron op or one lies upstream of
    it; where not, its value is the same at every step under direct encoding."""
    after = {INPUT: False}
    for op in graph.ops:  # topological order
        after[op.name] = op.kind in NEURON_KINDS or any(after[i] for i in op.inputs)
    return after


class Names:
    """Unique op names that never nest inside one another (SpikingNetwork stores layers
    as nested modules, so ``a.b`` and ``a.b.c`` cannot both be layers)."""

    def __init__(self):
        self.used: set[str] = set()

    def _clash(self, name: str) -> bool:
        if name in self.used or name == INPUT:
            return True
        parts = name.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts))}
        return bool(prefixes & self.used) or any(u.startswith(name + ".") for u in self.used)

    def take(self, name: str) -> str:
        base, k = name, 1
        while self._clash(name):
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name


def reshape_ops(names: Names, name: str, src: str, s_in: tuple, s_out: tuple,
                source: str) -> list[Op]:
    """Ops that reshape a per-sample ``s_in`` into ``s_out`` (Flatten and/or Unflatten)."""
    if math.prod(s_in) != math.prod(s_out):
        raise UnsupportedLayerError(name, source, "keep the batch dimension first and reshape "
                                    "only the per-sample dimensions",
                                    f"It reshapes a sample of shape {list(s_in)} into {list(s_out)}, "
                                    f"which mixes samples of the batch")
    if tuple(s_in) == tuple(s_out):
        return [Op(names.take(name), "identity", (src,), nn.Identity(), tuple(s_out), source)]
    if len(s_out) == 1:
        return [Op(names.take(name), "reshape", (src,), nn.Flatten(), tuple(s_out), source)]
    if len(s_in) == 1:
        return [Op(names.take(name), "reshape", (src,), nn.Unflatten(1, tuple(s_out)), tuple(s_out), source)]
    flat = Op(names.take(name + "_flatten"), "reshape", (src,), nn.Flatten(), (math.prod(s_in),), source)
    return [flat, Op(names.take(name), "reshape", (flat.name,), nn.Unflatten(1, tuple(s_out)),
                     tuple(s_out), source)]


def clipped_relu(name: str, src: str, shape: tuple, source: str, low: float | None,
                 high: float | None) -> Op:
    """A ``"relu"`` op for ``clamp(x, low, high)``: ``low`` must be 0; ``high`` None is a
    plain ReLU, else the clip ``c`` (the neuron's scale is then at most ``c``)."""
    if low is None or float(low) != 0.0 or (high is not None and not float(high) > 0.0):
        raise UnsupportedLayerError(name, source, "clip activations at 0 from below (ReLU, "
                                    "ReLU6, clamp(min=0, max=c) with c > 0); other clamps have "
                                    "no spiking equivalent",
                                    f"It clamps to [{low}, {high}]")
    if high is None:
        return Op(name, "relu", (src,), nn.ReLU(), shape, source)
    c = float(high)
    return Op(name, "relu", (src,), nn.Hardtanh(0.0, c), shape, source, clip=c)
