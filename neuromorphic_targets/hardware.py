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
* a reset the chip lacks: Loihi resets to zero only (lava's bit-accurate models set
  ``v[spiked] = 0``), so an IF layer that resets by subtraction runs as a reset to zero.
  Where such a layer is fed by spikes, it becomes a
  :class:`~neuromorphic_targets.hardware_cuba.CubaChipNeuron`: its input goes through
  Loihi's synaptic current ``u``, decaying by ``current_decay`` per step (default 1/2,
  ``du = 2047``), with threshold, bias and initial membrane multiplied by the current's gain
  (2) so that each input spike delivers the same charge, spread over the next steps; a reset
  to zero then loses less of it (chosen on the development network; measured in
  ``examples/benchmarks/RESULTS.md``). ``current_decay=1.0`` turns it off;
* DYNAP-SE (analog): :mod:`~neuromorphic_targets.hardware_dynapse` (4 shared weights per
  core, frozen Gaussian mismatch).

The network first goes through :func:`~neuromorphic_targets.map_network`: a network that
does not fit the chip is refused with the mapping's problems. What differs from the float
network (a reset mode the chip lacks, a rounded threshold) is listed in
``hw.hardware_.notes``; the scales per layer are in ``hw.hardware_.scales``, the current
decays in ``hw.hardware_.current_decays``.
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
from snnedge.quantization import (FormatGroup, GroupValues, adaptive_window, check_group_neuron,
                                  decay_factor, format_groups, group_values, quantize_group)

from .formats import format_figures, number_format
from .hardware_cuba import CubaChipNeuron
from .hardware_dynapse import dynapse_network
from .hardware_info import HardwareError, HardwareInfo
from .mapping import map_network
from .profiles import Profile, get_profile


#: Loihi's synaptic current decays by this fraction per step in layers whose reset it lacks
#: (``du = 2047``), chosen on the development network (interop_cnn, seed 0; 4,500 training
#: digits; examples/benchmarks/hardware_accuracy.py): without the current the chip keeps
#: 98.07 % of its float SNN's predictions; with decays 1/2, 1/4, 1/8 98.44, 98.42, 98.49 %,
#: a tie (3 digits), of which 1/2 delays each input's charge least (on average one step).
DEFAULT_CURRENT_DECAY = 0.5


def to_hardware(snn: SpikingNetwork, profile: str | Profile, *,
                input_shape: Sequence[int] | None = None, mismatch: float | None = None,
                seed: int = 0, current_decay: float | None = None) -> SpikingNetwork:
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
    current_decay:
        Chips with a synaptic current (Loihi): the fraction by which it decays per step in
        the IF layers fed by spikes whose reset the chip lacks (module docstring). ``None``:
        ``DEFAULT_CURRENT_DECAY`` (1/2); ``1.0``: no current, a plain reset to zero. Rounded
        to the chip's 12-bit ``du`` (``(du + 1) / 4096``). Other chips take ``None``.

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
        if current_decay is not None:
            raise ValueError(f"The 'current_decay' parameter of to_hardware applies to chips with a "
                             f"synaptic current register (Loihi); {prof.name!r} is analog. Got "
                             f"{current_decay!r}; leave it None.")
        return dynapse_network(snn, prof, m, shape, mismatch, seed)
    if mismatch not in (None, 0.0):
        raise ValueError(f"The 'mismatch' parameter of to_hardware applies to analog chips; "
                         f"{prof.name!r} is digital (its arithmetic is exact). Got {mismatch!r}; "
                         f"leave it None.")
    fmt = number_format(prof)
    return integer_network(snn, fmt, shape, prof, _current_factor(fmt, current_decay, prof.name))


def _current_factor(fmt: NumberFormat, current_decay: float | None, name: str = "") -> int | None:
    """The fixed-point factor ``d`` of ``fmt``'s synaptic current for ``current_decay``
    (``round((1 - current_decay) * 2^decay_bits)``; ``None`` for a format without a current
    register, where ``current_decay`` must be ``None``), or a ``ValueError``."""
    has_current = fmt.current_bits is not None and fmt.decay_bits is not None
    if not has_current:
        if current_decay is not None:
            raise ValueError(f"The 'current_decay' parameter of to_hardware applies to chips with a "
                             f"synaptic current register (Loihi); {name or fmt.name!r} has none. "
                             f"Got {current_decay!r}; leave it None.")
        return None
    delta = DEFAULT_CURRENT_DECAY if current_decay is None else check_real(
        current_decay, param="current_decay", where="to_hardware", low=0.0, high=1.0, low_open=True)
    top = 2 ** fmt.decay_bits
    return min(top - 1, round((1.0 - delta) * top))


def integer_network(snn: SpikingNetwork, fmt: NumberFormat, shape: tuple[int, ...],
                    prof: Profile | None = None, current: int | None = None) -> SpikingNetwork:
    """``snn`` in ``fmt``'s integers (no mapping check; :func:`to_hardware` is the entry);
    ``current``: the synaptic current's factor ``d`` for layers whose reset ``fmt`` lacks
    (:func:`_current_factor`), or ``None``."""
    info = HardwareInfo(prof.name if prof else fmt.name, prof.family if prof else "",
                        fmt.describe())
    shapes = snn.shapes(shape)
    groups = format_groups(snn, shape)
    replace: dict[str, nn.Module] = {}
    for g in groups:
        check_group_neuron(snn, g, fmt, error=HardwareError, check_reset=False)
        values = group_values(snn, g, shape)
        d = _current_for(snn, g, fmt, current)
        if d is not None:  # the same charge through the current: theta, bias, v0 times its gain
            gain = 2 ** fmt.decay_bits / (2 ** fmt.decay_bits - d)
            values = GroupValues(values.weights, *(None if t is None else t * gain for t in (
                values.bias, values.threshold, values.state)))
        ints = quantize_group(fmt, values, per_row=g.per_row)
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
            neuron = _chip_neuron(snn, g, fmt, ints, len(shapes[g.target]), info)
            if d is not None:
                neuron = CubaChipNeuron(neuron, d, fmt.decay_bits, fmt.current_bits)
                info.current_decays[g.neuron] = 1.0 - d / 2 ** fmt.decay_bits
                info.notes.append(
                    f"layer {g.neuron!r}: its input runs through the chip's synaptic current, "
                    f"decaying by {1 - d / 2 ** fmt.decay_bits:g} per step (du = "
                    f"{2 ** fmt.decay_bits - d - 1}), with threshold, bias and initial membrane "
                    f"x{neuron.gain:g}: each input delivers the same charge over the next steps, "
                    f"and the reset to zero loses less of it")
            replace[g.neuron] = neuron
    nodes = [Node(n.name, replace[n.name] if n.name in replace else copy.deepcopy(n.module), n.inputs)
             for n in snn.nodes]
    hw = SpikingNetwork(nodes, input_shape=shape).to(torch.float64)
    hw.hardware_ = info
    return hw


def _current_for(snn: SpikingNetwork, g: FormatGroup, fmt: NumberFormat,
                 current: int | None) -> int | None:
    """``current`` for an IF layer fed only by spikes whose reset ``fmt`` lacks, else None
    (a current of factor 0 is each step's input: the plain neuron)."""
    if current is None or current == 0 or g.neuron is None or g.analog_input:
        return None
    module = snn.layer(g.neuron)
    if isinstance(module, LIF) or module.reset in fmt.resets:
        return None
    return current


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
