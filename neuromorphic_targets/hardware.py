r"""`to_hardware`: a network as a chip computes it, in the chip's own arithmetic.

``to_hardware(snn, "dynap-cnn", input_shape=(1, 28, 28))`` returns a new
:class:`~snnedge.SpikingNetwork` (the given one is never changed) that
:func:`snnedge.simulate` runs as the chip would:

* digital chips (DYNAP-CNN / Speck, TrueNorth, Loihi): every weight, bias, threshold and
  initial membrane becomes an integer of the chip's number format
  (:func:`~neuromorphic_targets.formats.number_format`, figures cited in the profiles; the
  rules in :mod:`snnedge.quantization`), average pools become sum pools with their ``1 /
  window`` moved into the next weights, and the neurons become :class:`snnedge.ChipNeuron` s
  with the chip's saturating membrane, wrapping current, fixed-point decay, strict or
  non-strict threshold and reset. The network holds integers in float64 tensors and runs
  exactly (the engines' integer path);
* DYNAP-SE (analog): :mod:`~neuromorphic_targets.hardware_dynapse` (4 shared weights per
  core, frozen Gaussian mismatch).

The network first goes through :func:`~neuromorphic_targets.map_network`: a network that
does not fit the chip is refused with the mapping's problems. What differs from the float
network (a reset mode the chip lacks, a rounded threshold) is listed in
``hw.hardware_.notes``; the scales per layer are in ``hw.hardware_.scales``.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
import torch
from torch import nn

from snnedge import SpikingNetwork, SumPool2d
from snnedge.chip_neuron import ChipNeuron
from snnedge.errors import check_real
from snnedge.formats import NumberFormat
from snnedge.network import Node
from snnedge.neurons import LIF
from snnedge.quantization import (FormatGroup, adaptive_window, check_group_neuron, decay_factor,
                                  format_groups, group_values, quantize_group)

from .formats import format_figures, number_format
from .hardware_dynapse import dynapse_network
from .hardware_info import HardwareError, HardwareInfo
from .mapping import map_network
from .profiles import Profile, get_profile


def to_hardware(snn: SpikingNetwork, profile: str | Profile, *,
                input_shape: Sequence[int] | None = None, mismatch: float | None = None,
                seed: int = 0) -> SpikingNetwork:
    """A copy of ``snn`` that computes as ``profile``'s chip does (see the module docstring).

    Parameters
    ----------
    snn:
        The float network (never changed).
    profile:
        ``"dynap-cnn"``, ``"truenorth"``, ``"loihi"``, ``"dynap-se"`` or a :class:`Profile`
        of those families with its number-format figures.
    input_shape:
        One sample's shape (default ``snn.input_shape``): the mapping and the bias and
        membrane maps need it.
    mismatch:
        Analog chips: the mismatch's relative sigma (``None``: the profile's
        ``mismatch_sigma_fraction``, 10 % for DYNAP-SE; ``0.0``: off). Digital chips take ``None``
        or ``0.0``.
    seed:
        Seed of the frozen mismatch draw (the same seed gives the same chip).

    >>> import torch.nn as nn, snnedge
    >>> net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(), nn.Linear(3, 2), input_shape=(4,))
    >>> hw = to_hardware(net, "truenorth")
    >>> bool((hw.layer("0").weight == hw.layer("0").weight.round()).all()), hw.layer("1").integer
    (True, True)
    """
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"to_hardware expects a snnedge.SpikingNetwork. Got {type(snn).__name__}; "
                        f"convert an ANN with converters.convert(ann, calibration=...).")
    prof = get_profile(profile)
    if mismatch is not None:
        check_real(mismatch, param="mismatch", where="to_hardware", low=0.0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"The 'seed' parameter of to_hardware must be an int. Got {seed!r}.")
    shape = input_shape if input_shape is not None else snn.input_shape
    if shape is None:
        raise ValueError("to_hardware needs the shape of one input sample: pass input_shape=(1, 28, 28) "
                         "(for example), or build the network with input_shape=...")
    shape = tuple(int(s) for s in shape)
    format_figures(prof)  # a profile without a published format fails here, naming the figure
    m = map_network(snn, prof, shape)
    if not m.feasible:
        raise HardwareError(f"The network does not map onto {prof.name!r}, so it cannot run there: "
                            + "; ".join(m.problems))
    if prof.family == "dynap-se":
        return dynapse_network(snn, prof, m, shape, mismatch, seed)
    if mismatch not in (None, 0.0):
        raise ValueError(f"The 'mismatch' parameter of to_hardware applies to analog chips; "
                         f"{prof.name!r} is digital (its arithmetic is exact). Got {mismatch!r}; "
                         f"leave it None.")
    return integer_network(snn, number_format(prof), shape, prof)


def integer_network(snn: SpikingNetwork, fmt: NumberFormat, shape: tuple[int, ...],
                    prof: Profile | None = None) -> SpikingNetwork:
    """``snn`` in ``fmt``'s integers (no mapping check; :func:`to_hardware` is the entry)."""
    info = HardwareInfo(prof.name if prof else fmt.name, prof.family if prof else "",
                        fmt.describe())
    shapes = snn.shapes(shape)
    groups = format_groups(snn, shape)
    replace: dict[str, nn.Module] = {}
    for g in groups:
        check_group_neuron(snn, g, fmt, error=HardwareError, check_reset=False)
        ints = quantize_group(fmt, group_values(snn, g, shape), per_row=g.per_row)
        key = g.neuron or "readout"
        info.scales[key] = _plain(ints.scale)
        if ints.exponent is not None:
            info.exponents[key] = ints.exponent
        for name in g.layers:
            replace[name] = _weighted(snn.layer(name), ints.weights[name])
        for name in g.pools:
            replace[name] = _sum_pool(name, snn.layer(name), shapes, snn, shape)
        if g.neuron is None:
            _readout_bias(snn, g, replace, ints.bias)
        else:
            replace[g.neuron] = _chip_neuron(snn, g, fmt, ints, len(shapes[g.target]), info)
    nodes = [Node(n.name, replace[n.name] if n.name in replace else copy.deepcopy(n.module), n.inputs)
             for n in snn.nodes]
    hw = SpikingNetwork(nodes, input_shape=shape).to(torch.float64)
    hw.hardware_ = info
    return hw


def _plain(t: torch.Tensor) -> float | list[float]:
    return float(t) if t.dim() == 0 else [float(v) for v in t.reshape(-1)]


def _weighted(module: nn.Module, weight: torch.Tensor) -> nn.Module:
    new = copy.deepcopy(module)
    with torch.no_grad():
        new.weight = nn.Parameter(weight.to(torch.float64).reshape(module.weight.shape),
                                  requires_grad=False)
        if new.bias is not None:
            new.bias = None  # the bias reaches the neurons; the ChipNeuron adds it
    return new


def _sum_pool(name: str, module: nn.Module, shapes: dict, snn: SpikingNetwork,
              shape: tuple[int, ...]) -> nn.Module:
    if isinstance(module, nn.AvgPool2d):
        return SumPool2d(module.kernel_size, module.stride, module.padding)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        src = snn.inputs_of(name)[0]
        window = adaptive_window(name, module, shape if src == "input" else shapes[src])
        return SumPool2d(window, window, 0)
    raise HardwareError(f"Layer {name!r} ({type(module).__name__}) has no sum-pool equivalent "
                        f"here; use a 2-D average pool.")


def _readout_bias(snn: SpikingNetwork, g: FormatGroup, replace: dict, bias) -> None:
    with_bias = [n for n in g.layers if snn.layer(n).bias is not None]
    if not with_bias:
        return
    if with_bias != [g.target]:
        raise HardwareError(f"The readout's bias (layers {with_bias}) passes through "
                            f"{', '.join(n for n in g.nodes if n not in g.layers) or 'other layers'} "
                            f"before the output; a chip adds it at the neurons. Make the biased "
                            f"layer the network's last one.")
    replace[g.target].bias = nn.Parameter(bias.to(torch.float64), requires_grad=False)


def _chip_neuron(snn: SpikingNetwork, g: FormatGroup, fmt: NumberFormat, ints, rank: int,
                 info: HardwareInfo) -> ChipNeuron:
    module = snn.layer(g.neuron)
    reset = module.reset
    if reset not in fmt.resets:
        info.notes.append(f"layer {g.neuron!r}: reset {reset!r} runs as the chip's reset "
                          f"{fmt.resets[0]!r} ({fmt.name} has {', '.join(fmt.resets)})")
        reset = fmt.resets[0]
    theta = ints.threshold
    if theta.dim() == 1:  # one per channel: broadcast against a sample (C, ...)
        theta = theta.view(-1, *([1] * (rank - 1)))
    decay = None
    if isinstance(module, LIF):
        beta = module.decay.detach().to(torch.float64)
        decay = decay_factor(fmt, beta)
        if decay.dim() == 1:
            decay = decay.view(-1, *([1] * (rank - 1)))
    lo, hi = fmt.state_range
    return ChipNeuron(theta, ints.bias, ints.state, reset, decay=decay,
                      decay_shift=fmt.decay_bits or 12, v_min=lo, v_max=hi,
                      current_bits=fmt.current_bits, strict=fmt.strict_threshold, integer=True)
