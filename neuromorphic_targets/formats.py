"""Each chip's number format, built from its profile's cited figures.

:func:`number_format` turns a profile's format figures into a
:class:`snnedge.formats.NumberFormat` (the core's description of a chip's arithmetic, which
:func:`snnedge.fit` and :func:`~neuromorphic_targets.to_hardware` apply). :func:`register`
puts the registered profiles' formats into the core's registry; it is the entry point of the
group ``snnedge.number_formats`` declared in ``pyproject.toml``, so ``fit(..., hardware=
"truenorth")`` finds the format without the core importing this package.

What each family's format is, and where each figure comes from (the profile's fields):

* DYNAP-CNN / Speck (sinabs ``discretize.py``): ``weight_bits`` (8) and ``bias_bits`` (8)
  signed, ``state_bits`` (16) signed saturating membrane from -2^15, thresholds in the state's
  range; one scale per layer (rule ``"layer"``); resets by subtraction or to zero (sinabs'
  ``MembraneSubtract`` / ``MembraneReset``).
* TrueNorth (Merolla et al. 2014, Cassidy et al. 2013): ``axon_types_per_core`` (4) signed
  ``weight_bits`` (9) weights per neuron, ``threshold_bits`` (18) unsigned, ``leak_bits`` (9),
  ``membrane_bits`` (20) signed saturating; a scale per neuron (rule ``"neuron"``); reset
  modes "normal" (to zero) and "linear" (subtract the threshold).
* Loihi (lava-dl, lava's bit-accurate LIF): ``weight_bits`` (8) mantissas on even steps times
  a power-of-two exponent per layer (rule ``"power-of-two"``), ``membrane_bits`` (24: v
  saturates, u wraps), ``threshold_bits`` (17, shifted by ``state_shift_bits`` = 6),
  ``decay_bits`` (12), ``bias_bits`` (13) << ``bias_exponent_bits`` (3); spikes when
  ``v > vth`` and resets to zero (lava's ``PyLifModelBitAcc`` sets ``v[spiked] = 0``; lava-dl's
  CUBA neuron ``v[t] (1 - s[t])``; neither has a reset by subtraction). Its synaptic current
  ``u`` decays by the 12-bit ``du`` (``u <- u * (4096 - (du + 1)) >> 12``, Loihi 1's
  ``ds_offset``); :func:`~neuromorphic_targets.to_hardware` uses it for layers that reset
  by subtraction with ``soft_reset="current"`` (:mod:`~neuromorphic_targets.hardware_cuba`);
  by default such layers take two compartments per neuron, as NxTF builds reset by
  subtraction (:mod:`~neuromorphic_targets.hardware_soft`).

DYNAP-SE is analog: no integer format (its mismatch model is in
:mod:`neuromorphic_targets.hardware_dynapse`).
"""
from __future__ import annotations

from snnedge.formats import NumberFormat, register_format
from snnedge.quantization import FormatError

from .profiles import PROFILES, Profile, get_profile

#: The figures each family's number format reads.
FORMAT_FIGURES: dict[str, tuple[str, ...]] = {
    "dynap-cnn": ("weight_bits", "bias_bits", "state_bits"),
    "truenorth": ("weight_bits", "axon_types_per_core", "threshold_bits", "leak_bits",
                  "membrane_bits"),
    "loihi": ("weight_bits", "membrane_bits", "threshold_bits", "decay_bits", "bias_bits",
              "bias_exponent_bits", "state_shift_bits"),
    "dynap-se": ("synapse_types", "mismatch_sigma_fraction"),
}


def format_figures(prof: Profile) -> dict[str, int | float]:
    """The values of ``prof``'s number-format figures, or a :class:`FormatError` naming the
    family without a format or each figure that no source gives."""
    needed = FORMAT_FIGURES.get(prof.family)
    if needed is None:
        raise FormatError(f"Profile {prof.name!r} (family {prof.family!r}) has no published number "
                          f"format: snnedge knows the formats of {', '.join(FORMAT_FIGURES)}.")
    figs = prof.figures()
    missing = [k for k in needed if k not in figs or not figs[k].known]
    if missing:
        raise FormatError(
            f"Profile {prof.name!r} has no published number format: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} unknown. Give {'it' if len(missing) == 1 else 'them'} "
            f"with a source in the profile (load_profile, or profile.replace({missing[0]}=Figure(...))).")
    return {k: figs[k].value for k in needed}


def number_format(profile: str | Profile) -> NumberFormat:
    """The :class:`~snnedge.formats.NumberFormat` of ``profile`` (its figures with their
    sources), or a :class:`FormatError` (a ``ValueError``) naming the missing figure."""
    prof = get_profile(profile)
    f = format_figures(prof)
    sources = tuple(dict.fromkeys(prof.figures()[k].source for k in f))
    if prof.family == "dynap-cnn":
        return NumberFormat(prof.name, "layer", weight_bits=int(f["weight_bits"]),
                            bias_bits=int(f["bias_bits"]), threshold_bits=int(f["state_bits"]),
                            threshold_signed=True, state_bits=int(f["state_bits"]),
                            resets=("subtract", "zero"), sources=sources)
    if prof.family == "truenorth":
        return NumberFormat(prof.name, "neuron", weight_bits=int(f["weight_bits"]),
                            weight_levels=int(f["axon_types_per_core"]),
                            bias_bits=int(f["leak_bits"]), threshold_bits=int(f["threshold_bits"]),
                            state_bits=int(f["membrane_bits"]), resets=("subtract", "zero"),
                            sources=sources)
    if prof.family == "loihi":
        return NumberFormat(prof.name, "power-of-two", weight_bits=int(f["weight_bits"]),
                            weight_even=True, bias_bits=int(f["bias_bits"]),
                            bias_exponent_bits=int(f["bias_exponent_bits"]),
                            threshold_bits=int(f["threshold_bits"]),
                            state_bits=int(f["membrane_bits"]), state_symmetric=True,
                            state_shift=int(f["state_shift_bits"]),
                            current_bits=int(f["membrane_bits"]), decay_bits=int(f["decay_bits"]),
                            strict_threshold=True, resets=("zero",), sources=sources)
    raise FormatError(f"Profile {prof.name!r} ({prof.family}) is an analog chip: it has no integer "
                      f"number format (to_hardware models its mismatch instead).")


def register() -> None:
    """Register the number format of every registered digital profile with
    :mod:`snnedge.formats` (idempotent; the entry point of ``snnedge.number_formats``)."""
    for prof in PROFILES.values():
        if prof.family in FORMAT_FIGURES and prof.family != "dynap-se":
            try:
                register_format(number_format(prof))
            except FormatError:
                continue  # a profile without its format figures has no format to register
