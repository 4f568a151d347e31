"""Number formats of neuromorphic chips: how a chip holds weights, thresholds and membranes.

A :class:`NumberFormat` is plain data: the bits of each quantity, the rule that scales a
network's float values into the chip's integers, and the chip's neuron arithmetic (saturating
membrane, wrapping current register, fixed-point decay, strict or non-strict threshold, reset
modes). The arithmetic that applies a format lives in :mod:`snnedge.quantization` (shared by
:func:`snnedge.fit`'s ``hardware=`` option and ``neuromorphic_targets.to_hardware``) and in
:class:`snnedge.ChipNeuron` (the engines' exact integer path).

The core holds no chip's figures. The formats are registered by the package that holds the
cited figures (``neuromorphic_targets`` builds them from its hardware profiles) through the
entry-point group :data:`ENTRY_POINT_GROUP`, declared in ``pyproject.toml``::

    [project.entry-points."snnedge.number_formats"]
    neuromorphic_targets = "neuromorphic_targets.formats:register"

so ``fit(net, ..., hardware="truenorth")`` finds the TrueNorth format without the core
importing ``neuromorphic_targets`` (the same mechanism as :mod:`snnedge.io_registry`). A
format of your own registers with :func:`register_format`.

Scale rules (``NumberFormat.scale_rule``), each applied per *group* (the weighted layers that
feed one neuron layer, see :func:`snnedge.quantization.format_groups`):

``"layer"``
    sinabs' discretization for DYNAP-CNN / Speck (``backend/dynapcnn/discretize.py``): one
    scale per group, the smallest of the weight, bias, threshold and membrane scales, each
    ``(2^(b-1) - 1) / max x`` (or ``2^(b-1) / |min x|`` when the negative extreme is the
    larger in the signed range), then rounding.
``"power-of-two"``
    lava-dl's ``quantize_8bit`` for Loihi (``slayer/utils/quantize.py``, ``netx``): weights
    are even 8-bit mantissas in ``[-256, 254]`` times one power-of-two exponent per group;
    voltages are mantissas shifted left by ``state_shift`` (6) bits.
``"neuron"``
    TrueNorth: each neuron (output channel) keeps ``weight_levels`` (4, one per axon type)
    distinct non-zero signed ``weight_bits`` weights and its own scale.
"""
from __future__ import annotations

import dataclasses

from .errors import check_choice
from .plugins import call_entry_points

__all__ = ["NumberFormat", "FORMATS", "SCALE_RULES", "ENTRY_POINT_GROUP", "register_format",
           "get_format"]

#: Entry-point group of the functions that register chips' number formats.
ENTRY_POINT_GROUP = "snnedge.number_formats"

#: The scale rules :mod:`snnedge.quantization` implements (see the module docstring).
SCALE_RULES = ("layer", "power-of-two", "neuron")

RESETS = ("subtract", "zero")


@dataclasses.dataclass(frozen=True)
class NumberFormat:
    """One chip's number format (all counts in bits; every integer is signed two's complement
    unless said otherwise).

    Attributes
    ----------
    name:
        The format's name, the profile's (``"dynap-cnn"``, ``"truenorth"``, ``"loihi"``).
    scale_rule:
        ``"layer"``, ``"power-of-two"`` or ``"neuron"`` (module docstring).
    weight_bits:
        Bits of a weight (of its mantissa for ``"power-of-two"``).
    weight_even:
        Mantissas on even steps: ``2^b`` values in ``[-2^b, 2^b - 2]`` (lava-dl's 8-bit
        weights are ``-256, -254, ..., 254``).
    weight_levels:
        Distinct non-zero weights per neuron (TrueNorth's 4 axon types), or ``None``.
    bias_bits, bias_exponent_bits:
        Bits of a bias (TrueNorth's leak); with an exponent (Loihi: a 13-bit mantissa shifted
        left by a 3-bit exponent, 0..7), the bias is ``mantissa << exponent``.
    threshold_bits, threshold_signed:
        The threshold is an integer in ``[1, 2^threshold_bits - 1]`` (unsigned) or
        ``[1, 2^(threshold_bits - 1) - 1]`` (signed: DYNAP-CNN's thresholds live in the state).
    state_bits, state_symmetric:
        The membrane saturates at ``[-2^(b-1), 2^(b-1) - 1]``, or at ``[-(2^(b-1) - 1),
        2^(b-1) - 1]`` when symmetric (lava's Loihi model clips there).
    state_shift:
        Weights, thresholds and the membrane count in units of ``2^-state_shift`` mantissa
        steps (Loihi MSB-aligns activations and thresholds by 6 bits).
    current_bits:
        Bits of a current register that wraps around (Loihi's ``u``, 24), or ``None``.
    decay_bits:
        Bits of a fixed-point decay (Loihi: ``v <- sign(v) * (|v| * (2^12 - dv) >> 12)``, 12),
        or ``None`` when the chip has no multiplicative leak (IF neurons only).
    strict_threshold:
        The neuron spikes when ``v > theta`` (Loihi) instead of ``v >= theta``.
    resets:
        The reset modes the chip has (``"subtract"``, ``"zero"``); a network whose neurons
        use another one runs with the first of these.
    sources:
        Where each figure comes from (the profile's citations).
    """

    name: str
    scale_rule: str
    weight_bits: int
    threshold_bits: int
    state_bits: int
    weight_even: bool = False
    weight_levels: int | None = None
    bias_bits: int = 0
    bias_exponent_bits: int = 0
    threshold_signed: bool = False
    state_symmetric: bool = False
    state_shift: int = 0
    current_bits: int | None = None
    decay_bits: int | None = None
    strict_threshold: bool = False
    resets: tuple[str, ...] = RESETS
    sources: tuple[str, ...] = ()

    def __post_init__(self):
        where = f"NumberFormat {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"A NumberFormat needs a non-empty name. Got {self.name!r}.")
        check_choice(self.scale_rule, SCALE_RULES, param="scale_rule", where=where)
        for key in ("weight_bits", "threshold_bits", "state_bits"):
            _check_bits(getattr(self, key), key, where, low=2)
        for key in ("bias_bits", "bias_exponent_bits", "state_shift"):
            _check_bits(getattr(self, key), key, where, low=0)
        for key in ("current_bits", "decay_bits"):
            if getattr(self, key) is not None:
                _check_bits(getattr(self, key), key, where, low=2)
        if self.weight_levels is not None:
            _check_bits(self.weight_levels, "weight_levels", where, low=1)
        if not self.resets or any(r not in RESETS for r in self.resets):
            raise ValueError(f"The 'resets' of {where} must be a non-empty tuple of {RESETS}. "
                             f"Got {self.resets!r}.")

    @property
    def one_grid_per_layer(self) -> bool:
        """Whether the rule rounds all the weights into a neuron layer on one grid (``"layer"``,
        ``"power-of-two"``), rather than each neuron's on its own (``"neuron"``)."""
        return self.scale_rule != "neuron"

    # -- ranges of the chip's integers --------------------------------------------------
    @property
    def weight_max(self) -> int:
        """Largest weight (mantissa): ``2^(b-1) - 1``, or ``2^b - 2`` on even steps."""
        return 2 ** self.weight_bits - 2 if self.weight_even else 2 ** (self.weight_bits - 1) - 1

    @property
    def weight_min(self) -> int:
        """Smallest weight (mantissa): ``-2^(b-1)``, or ``-2^b`` on even steps."""
        return -(2 ** self.weight_bits) if self.weight_even else -(2 ** (self.weight_bits - 1))

    @property
    def threshold_max(self) -> int:
        """Largest integer threshold (before the ``state_shift``)."""
        bits = self.threshold_bits - 1 if self.threshold_signed else self.threshold_bits
        return 2 ** bits - 1

    @property
    def state_range(self) -> tuple[int, int]:
        """``(lowest, highest)`` membrane value; the membrane saturates there."""
        top = 2 ** (self.state_bits - 1) - 1
        return (-top if self.state_symmetric else -top - 1), top

    @property
    def bias_max(self) -> int:
        """Largest bias magnitude (in state units): ``(2^(b-1) - 1) << (2^e - 1)``."""
        if self.bias_bits == 0:
            return 0
        return (2 ** (self.bias_bits - 1) - 1) * 2 ** (2 ** self.bias_exponent_bits - 1)

    def describe(self) -> str:
        """The format as readable lines (used in errors and reports)."""
        lo, hi = self.state_range
        parts = [f"{self.name}: rule {self.scale_rule!r}, {self.weight_bits}-bit weights "
                 f"[{self.weight_min}, {self.weight_max}]" + (" on even steps" if self.weight_even else "")
                 + (f", {self.weight_levels} per neuron" if self.weight_levels else ""),
                 f"threshold <= {self.threshold_max}" + (f" << {self.state_shift}" if self.state_shift else ""),
                 f"membrane [{lo}, {hi}] (saturating)",
                 f"resets {', '.join(self.resets)}"]
        if self.decay_bits:
            parts.append(f"{self.decay_bits}-bit decay")
        if self.current_bits:
            parts.append(f"{self.current_bits}-bit current (wraps)")
        return "; ".join(parts)


def _check_bits(value, key: str, where: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"The {key!r} of {where} must be an integer >= {low}. Got {value!r}.")


#: The registered formats by name.
FORMATS: dict[str, NumberFormat] = {}
_called_entry_points: set[str] = set()


def register_format(fmt: NumberFormat) -> NumberFormat:
    """Make ``fmt`` available to :func:`get_format` (and ``fit(..., hardware=fmt.name)``)
    under its name, replacing a format of that name."""
    if not isinstance(fmt, NumberFormat):
        raise TypeError(f"register_format expects a snnedge.formats.NumberFormat. Got "
                        f"{type(fmt).__name__}.")
    FORMATS[fmt.name] = fmt
    return fmt


def _call_entry_points() -> list[str]:
    return call_entry_points(ENTRY_POINT_GROUP, _called_entry_points)


def get_format(name: str | NumberFormat, where: str = "get_format") -> NumberFormat:
    """The registered number format ``name`` (a :class:`NumberFormat` is returned as is).

    A name not registered yet makes the functions of :data:`ENTRY_POINT_GROUP` register
    theirs first; a name still unknown is a ``ValueError`` listing the known ones.
    """
    if isinstance(name, NumberFormat):
        return name
    if not isinstance(name, str):
        raise TypeError(f"The 'hardware' parameter of {where} must be a format name such as "
                        f"'truenorth'. Got {type(name).__name__}.")
    if name not in FORMATS:
        failed = _call_entry_points()
        if name not in FORMATS:
            known = ", ".join(repr(k) for k in sorted(FORMATS)) or "none"
            note = (" Registration failed: " + "; ".join(failed) + ".") if failed else ""
            raise ValueError(
                f"{where}: no number format {name!r} is registered (known: {known}). The chips' "
                f"formats come from neuromorphic_targets through the entry-point group "
                f"{ENTRY_POINT_GROUP!r}: reinstall snnedge (pip install -e .) if it is missing, or "
                f"register your own with snnedge.formats.register_format.{note}")
    return FORMATS[name]
