r"""Training within a chip's number format: ``fit(net, ..., hardware="truenorth")``.

Esser et al. (PNAS 113:11441, 2016, doi:10.1073/pnas.1604850113) trained CNNs for TrueNorth
by keeping high-precision weights for learning and running the hardware's weights in the
forward pass, the gradient passing straight through the quantization (the straight-through
estimator; Bengio, Leonard & Courville 2013, arXiv:1308.3432). :func:`hardware_synapses` does
this for any registered :class:`~snnedge.formats.NumberFormat`: each weighted layer of the
training view computes with

.. code-block:: text

    forward   w_hw = W_int * factor / gain       W_int: the chip's integers for the current w
                                                 (snnedge.quantization, the same rules as
                                                 neuromorphic_targets.to_hardware); factor:
                                                 theta / theta_int, so that the float neurons
                                                 fire the chip's spikes; gain: the folded pools
              b_hw = b_int * factor
    backward  dL/dw = dL/dw_hw,  dL/db = dL/db_hw    (straight through)

and a layer fed directly by the analog input (direct encoding) rounds its current to the
chip's units, ``round(y / factor) * factor``, also straight through. The float weights stay
the network's parameters: after ``fit``, ``to_hardware`` quantizes them to the integers the
last forward pass used.

Not modelled while training (the simulation of ``to_hardware``'s network has them): the
membrane's saturation, the rounding of initial membranes and of a fixed-point decay, and the
chip's sum of several layers' biases (each layer's bias is rounded on its own here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..formats import NumberFormat
from ..network import SpikingNetwork
from ..quantization import (FormatError, FormatGroup, check_group_neuron, format_groups,
                            group_values, quantize_bias, quantize_group)


class QuantizationPlan:
    """The fake-quantized weights of every weighted layer of ``net`` in ``fmt``, recomputed
    when a parameter changes (each optimizer step)."""

    def __init__(self, net: SpikingNetwork, fmt: NumberFormat, input_shape=None):
        self.net, self.fmt = net, fmt
        self.groups = format_groups(net, input_shape)
        self.group_of = {n: g for g in self.groups for n in g.layers}
        for g in self.groups:
            check_group_neuron(net, g, fmt, f"fit(hardware={fmt.name!r})")
        self._cache: dict[str, tuple] = {}

    def _stamp(self, g: FormatGroup) -> tuple:
        tensors = [t for n in g.layers for t in (self.net.layer(n).weight, self.net.layer(n).bias)
                   if t is not None]
        if g.neuron is not None:
            tensors.append(self.net.layer(g.neuron).threshold)
        return tuple((t._version, t.data_ptr()) for t in tensors)

    def _quantized(self, g: FormatGroup) -> dict:
        """``{layer: (w_hw, b_hw, row factor)}`` of group ``g`` (detached), cached per stamp."""
        key = g.target
        stamp = self._stamp(g)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with torch.no_grad():
            ints = quantize_group(self.fmt, group_values(self.net, g), per_row=g.per_row)
            out = {}
            for n in g.layers:
                module = self.net.layer(n)
                rows = module.weight.shape[0]
                factor = _row_factor(ints.factor, ints.scale, rows, n)
                shape = (-1,) + (1,) * (module.weight.dim() - 1)
                w_hw = ints.weights[n] * factor.view(shape) / g.gains[n]
                b_hw = None
                if module.bias is not None:
                    scale = ints.scale if ints.scale.dim() == 0 else ints.scale.view(-1)
                    b_hw = quantize_bias(self.fmt, module.bias.detach().to(torch.float64), scale) * factor
                out[n] = (w_hw.to(module.weight.dtype), None if b_hw is None else
                          b_hw.to(module.bias.dtype), factor.to(module.weight.dtype))
        self._cache[key] = (stamp, out)
        return out

    def weight(self, name: str) -> torch.Tensor:
        w = self.net.layer(name).weight
        return w + (self._quantized(self.group_of[name])[name][0] - w).detach()

    def bias(self, name: str) -> torch.Tensor | None:
        b = self.net.layer(name).bias
        if b is None:
            return None
        return b + (self._quantized(self.group_of[name])[name][1] - b).detach()

    def input_factor(self, name: str) -> torch.Tensor | None:
        """Chip units -> float units of the current of ``name``, when that layer's output is
        an analog input's current that the chip rounds (it alone feeds its neurons), else None."""
        g = self.group_of[name]
        if not g.analog_input or g.neuron is None or g.layers != (name,) or g.target != name:
            return None
        return self._quantized(g)[name][2]


def _row_factor(factor: torch.Tensor, scale: torch.Tensor, rows: int, name: str) -> torch.Tensor:
    """The factor of each output row of layer ``name`` (float units per chip unit)."""
    factor = factor.to(torch.float64).reshape(-1)
    if factor.numel() == 1:
        return factor.expand(rows)
    if factor.numel() == rows:
        return factor
    scale = scale.reshape(-1)
    if scale.numel() == 1:
        return (1.0 / scale).expand(rows)
    raise FormatError(f"Layer {name!r} has {rows} output rows but its neurons have "
                      f"{factor.numel()} channels; its layout changes on the way (Flatten), so "
                      f"per-channel thresholds cannot be scaled into its rows.")


def _ste_round(y: torch.Tensor) -> torch.Tensor:
    return y + (torch.round(y) - y).detach()


class _HardwareSynapse:
    """What the three wrappers share: the wrapped layer's geometry, the plan's weights."""

    def _wrap(self, module: nn.Module, plan: QuantizationPlan, name: str) -> None:
        nn.Module.__init__(self)
        self.inner = module
        self.__dict__["plan"] = plan  # not a submodule: the plan reads the network
        self.layer_name = name
        for key in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                    "groups", "padding_mode", "output_padding", "transposed", "in_features",
                    "out_features", "_reversed_padding_repeated_twice"):
            if hasattr(module, key):
                setattr(self, key, getattr(module, key))

    @property
    def weight(self) -> torch.Tensor:
        return self.plan.weight(self.layer_name)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.plan.bias(self.layer_name)

    def _current(self, y: torch.Tensor) -> torch.Tensor:
        """The layer's output without its bias, rounded in chip units where the chip rounds."""
        factor = self.plan.input_factor(self.layer_name)
        if factor is None:
            return y
        f = factor.view(-1, *([1] * (y.dim() - 2)))
        return _ste_round(y / f) * f

    def _with_bias(self, y: torch.Tensor) -> torch.Tensor:
        b = self.bias
        return y if b is None else y + b.view(-1, *([1] * (y.dim() - 2)))


class HardwareConv2d(_HardwareSynapse, nn.Conv2d):
    """A ``Conv2d`` of the training view that computes with its chip-format weights."""

    def __init__(self, module: nn.Conv2d, plan: QuantizationPlan, name: str):
        self._wrap(module, plan, name)

    def forward(self, x):
        return self._with_bias(self._current(self._conv_forward(x, self.weight, None)))


class HardwareConv1d(_HardwareSynapse, nn.Conv1d):
    """A ``Conv1d`` of the training view that computes with its chip-format weights."""

    def __init__(self, module: nn.Conv1d, plan: QuantizationPlan, name: str):
        self._wrap(module, plan, name)

    def forward(self, x):
        return self._with_bias(self._current(self._conv_forward(x, self.weight, None)))


class HardwareLinear(_HardwareSynapse, nn.Linear):
    """A ``Linear`` of the training view that computes with its chip-format weights."""

    def __init__(self, module: nn.Linear, plan: QuantizationPlan, name: str):
        self._wrap(module, plan, name)

    def forward(self, x):
        y = F.linear(x, self.weight)
        factor = self.plan.input_factor(self.layer_name)
        if factor is not None:  # features are the last dimension
            y = _ste_round(y / factor) * factor
        b = self.bias
        return y if b is None else y + b


WRAPPERS = {nn.Conv2d: HardwareConv2d, nn.Conv1d: HardwareConv1d, nn.Linear: HardwareLinear}


def hardware_synapses(net: SpikingNetwork, fmt: NumberFormat,
                      input_shape=None) -> dict[str, nn.Module]:
    """``{layer: wrapper}`` for every weighted layer of ``net``: modules that compute with
    ``fmt``'s fake-quantized weights (see the module docstring), for
    :func:`~snnedge.training.training_view`'s ``synapses``. Raises a ``FormatError`` (a
    ``ValueError``) naming the layer for what the format cannot hold."""
    plan = QuantizationPlan(net, fmt, input_shape)
    out = {}
    for name in plan.group_of:
        module = net.layer(name)
        wrapper = WRAPPERS.get(type(module))
        if wrapper is None:
            raise FormatError(f"fit(hardware={fmt.name!r}): layer {name!r} is a "
                              f"{type(module).__name__}; the chips' formats are applied to "
                              f"nn.Conv1d, nn.Conv2d and nn.Linear layers.")
        out[name] = wrapper(module, plan, name)
    return out
