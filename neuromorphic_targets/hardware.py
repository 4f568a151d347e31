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
* a reset the chip's compartments lack: Loihi's compartments reset to zero only (lava's
  bit-accurate models set ``v[spiked] = 0``). A layer that resets by subtraction becomes, by
  default (``soft_reset="two-compartment"``), NxTF's two-compartment neuron
  (:class:`~neuromorphic_targets.hardware_soft.TwoCompartmentChipNeuron`: a dendrite that
  keeps the sum, a soma that fires, a recurrent synapse of weight minus the threshold; two
  compartments per neuron, counted in ``hw.hardware_.compartments`` and ``hw.hardware_.cores``;
  each spike crosses the recurrent synapse, one more synaptic event, counted in a simulation's
  ``synaptic_events`` and so priced by :func:`~neuromorphic_targets.estimate_energy`).
  With ``soft_reset="current"`` (or a ``current_decay``) such a layer runs as a reset to zero
  instead, and where it is fed by spikes it becomes a
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
from snnedge.errors import check_choice, check_real
from snnedge.formats import NumberFormat
from snnedge.network import Node
from snnedge.neurons import LIF
from snnedge.quantization import (FormatGroup, GroupValues, adaptive_window, check_group_neuron,
                                  decay_factor, format_groups, group_values, quantize_group)

from .formats import format_figures, number_format
from .hardware_cuba import CubaChipNeuron
from .hardware_dynapse import dynapse_network
from .hardware_info import HardwareError, HardwareInfo
from .hardware_soft import TwoCompartmentChipNeuron, reset_weight
from .mapping import map_network
from .profiles import Profile, get_profile


#: Loihi's synaptic current decays by this fraction per step in layers whose reset it lacks
#: (``du = 2047``), chosen on the development network (interop_cnn, seed 0; 4,500 training
#: digits; examples/benchmarks/hardware_accuracy.py): without the current the chip keeps
#: 98.07 % of its float SNN's predictions; with decays 1/2, 1/4, 1/8 98.44, 98.42, 98.49 %,
#: a tie (3 digits), of which 1/2 delays each input's charge least (on average one step).
DEFAULT_CURRENT_DECAY = 0.5

#: How Loihi runs a layer that resets by subtraction: ``"two-compartment"`` (NxTF's
#: published soft reset, :mod:`~neuromorphic_targets.hardware_soft`) or ``"current"`` (a
#: reset to zero behind the synaptic current, ``current_decay``).
SOFT_RESETS = ("two-compartment", "current")
#: The default, chosen on the development network (interop_cnn, seed 0, default conversion;
#: 4,500 training digits outside the calibration sample; examples/benchmarks/
#: hardware_accuracy.py): the chip keeps 99.62 % of its float SNN's predictions with two
#: compartments, 97.96 % behind the current (decay 1/2).
DEFAULT_SOFT_RESET = "two-compartment"


def to_hardware(snn: SpikingNetwork, profile: str | Profile, *,
                input_shape: Sequence[int] | None = None, mismatch: float | None = None,
                seed: int = 0, current_decay: float | None = None,
                soft_reset: str | None = None) -> SpikingNetwork:
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
        to the chip's 12-bit ``du`` (``(du + 1) / 4096``). Giving it selects
        ``soft_reset="current"``. Other chips take ``None``.
    soft_reset:
        Loihi: how a layer that resets by subtraction runs. ``"two-compartment"`` (NxTF's
        neuron, two compartments each), ``"current"`` (a reset to zero, behind the synaptic
        current of ``current_decay``), or ``None``: ``"current"`` when ``current_decay`` is
        given, else ``DEFAULT_SOFT_RESET``. Other chips take ``None``.

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
        if soft_reset is not None:
            raise ValueError(f"The 'soft_reset' parameter of to_hardware applies to Loihi (chips "
                             f"whose compartments reset to zero); {prof.name!r} is analog. Got "
                             f"{soft_reset!r}; leave it None.")
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
    mode = _soft_reset_mode(fmt, soft_reset, current_decay, prof.name)
    if mode == "two-compartment":
        hw = integer_network(snn, fmt, shape, prof, soft_reset=True)
        if hw.hardware_.compartments:  # the compartments it needs, counted by the mapping
            m = map_network(hw, prof, shape)
            if not m.feasible:
                raise HardwareError(
                    f"The network does not map onto {prof.name!r} with two compartments per neuron "
                    f"in layers {sorted(hw.hardware_.compartments)} (NxTF's reset by subtraction): "
                    + "; ".join(m.problems) + ". Pass soft_reset='current' (one compartment each).")
        hw.hardware_.cores = m.cores
        return hw
    hw = integer_network(snn, fmt, shape, prof, _current_factor(fmt, current_decay, prof.name))
    hw.hardware_.cores = m.cores
    return hw


def _soft_reset_mode(fmt: NumberFormat, soft_reset: str | None, current_decay: float | None,
                     name: str) -> str | None:
    """``soft_reset`` checked against ``fmt`` (a chip with a synaptic current register, i.e.
    Loihi, has both modes), with its default; ``None`` for the other chips."""
    has_current = fmt.current_bits is not None and fmt.decay_bits is not None
    if soft_reset is None:
        if not has_current:
            return None
        return "current" if current_decay is not None else DEFAULT_SOFT_RESET
    if not has_current:
        raise ValueError(f"The 'soft_reset' parameter of to_hardware applies to Loihi (chips whose "
                         f"compartments reset to zero); {name!r} runs its own reset. Got "
                         f"{soft_reset!r}; leave it None.")
    mode = check_choice(soft_reset, SOFT_RESETS, param="soft_reset", where="to_hardware")
    if mode == "two-compartment" and current_decay is not None:
        raise ValueError(f"The 'current_decay' parameter of to_hardware applies to "
                         f"soft_reset='current'; the two-compartment neuron has no synaptic "
                         f"current decay. Got current_decay={current_decay!r}; leave it None, or "
                         f"pass soft_reset='current'.")
    return mode


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
                    prof: Profile | None = None, current: int | None = None,
                    soft_reset: bool = False) -> SpikingNetwork:
    """``snn`` in ``fmt``'s integers (no mapping check; :func:`to_hardware` is the entry);
    ``current``: the synaptic current's factor ``d`` for layers whose reset ``fmt`` lacks
    (:func:`_current_factor`), or ``None``; ``soft_reset``: such layers become NxTF's
    two-compartment neurons instead."""
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
            info.rounded_to_zero[name] = _share_zeroed(values.weights[name], ints.weights[name])
        for name in g.pools:
            replace[name] = _sum_pool(name, snn.layer(name), shapes, snn, shape)
        if g.neuron is None:
            _readout_bias(snn, g, replace, ints.bias)
        else:
            module = snn.layer(g.neuron)
            if soft_reset and module.reset == "subtract" and "subtract" not in fmt.resets:
                replace[g.neuron] = _two_compartment(g.neuron, module, fmt, ints,
                                                     len(shapes[g.target]), info)
                continue
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
    _note_rounded(info, fmt)
    nodes = [Node(n.name, replace[n.name] if n.name in replace else copy.deepcopy(n.module), n.inputs)
             for n in snn.nodes]
    hw = SpikingNetwork(nodes, input_shape=shape,
                        readout_exponent=snn.readout_exponent).to(torch.float64)
    hw.hardware_ = info
    return hw


def _share_zeroed(weight: torch.Tensor, chip: torch.Tensor) -> float:
    """The share of ``weight``'s non-zero entries that are zero in ``chip`` (0 when none)."""
    nonzero = weight != 0
    n = int(nonzero.sum())
    return 0.0 if n == 0 else int((nonzero & (chip == 0)).sum()) / n


def _note_rounded(info: HardwareInfo, fmt: NumberFormat) -> None:
    """A note naming the layer that lost the largest share of its weights to rounding."""
    if not info.rounded_to_zero:
        return
    name, share = max(info.rounded_to_zero.items(), key=lambda kv: kv[1])
    if share == 0:
        return
    hint = ("" if not fmt.one_grid_per_layer else
            f"; the chip rounds a layer's weights on one grid, so a network converted with "
            f"channel-wise scales keeps more of them when converted for it "
            f"(converters.convert(..., hardware={fmt.name!r}))")
    info.notes.append(f"layer {name!r}: {share:.0%} of its non-zero weights round to zero on the "
                      f"chip, the largest share of any layer (hardware_.rounded_to_zero){hint}")


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


def _two_compartment(name: str, module: nn.Module, fmt: NumberFormat, ints, rank: int,
                     info: HardwareInfo) -> TwoCompartmentChipNeuron:
    """Layer ``name`` (reset by subtraction) as NxTF's two-compartment neuron: the dendrite
    is the layer's ChipNeuron (which never resets), the soma's spikes subtract
    :func:`~neuromorphic_targets.hardware_soft.reset_weight` one step later."""
    dendrite = _membrane(module, fmt, ints, rank, fmt.resets[0])
    theta = dendrite.threshold
    w = reset_weight(theta, fmt.state_shift)
    info.compartments[name] = TwoCompartmentChipNeuron.compartments_per_neuron
    info.notes.append(f"layer {name!r}: reset by subtraction as NxTF's two-compartment neuron "
                      f"(a dendrite that keeps the sum, a soma that fires, a recurrent synapse of "
                      f"weight minus the threshold, one step later): 2 compartments per neuron, "
                      f"and each spike one more synaptic event (counted in synaptic_events)")
    if not torch.equal(w, theta):
        off = float((w - theta).abs().max())
        info.notes.append(f"layer {name!r}: the recurrent synapse's 8-bit mantissa and exponent "
                          f"subtract up to {off:g} chip units away from the threshold (NxTF's "
                          f"rounding of vThMant)")
    return TwoCompartmentChipNeuron(dendrite, w)


def _chip_neuron(snn: SpikingNetwork, g: FormatGroup, fmt: NumberFormat, ints, rank: int,
                 info: HardwareInfo) -> ChipNeuron:
    module = snn.layer(g.neuron)
    reset = module.reset
    if reset not in fmt.resets:
        info.notes.append(f"layer {g.neuron!r}: reset {reset!r} runs as the chip's reset "
                          f"{fmt.resets[0]!r} ({fmt.name} has {', '.join(fmt.resets)})")
        reset = fmt.resets[0]
    return _membrane(module, fmt, ints, rank, reset)


def _membrane(module: nn.Module, fmt: NumberFormat, ints, rank: int, reset: str) -> ChipNeuron:
    """The ChipNeuron of ``module`` from its group's integers ``ints``, resetting by ``reset``."""
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
