"""What :func:`~neuromorphic_targets.to_hardware` returns besides the network, and its error."""
from __future__ import annotations

from dataclasses import dataclass, field

from snnedge.quantization import FormatError

__all__ = ["HardwareError", "HardwareInfo"]


class HardwareError(FormatError):
    """A network that a chip cannot run: it does not map, or its format cannot hold it."""


@dataclass
class HardwareInfo:
    """What :func:`to_hardware` did, stored on the result as ``hw.hardware_``.

    ``profile``, ``family``: the target; ``format``: the number format's description (empty
    for analog chips); ``scales``: per neuron layer (and ``"readout"``), chip units per float
    unit (one value, or one per channel); ``exponents``: the power-of-two rule's ``k``;
    ``notes``: what differs from the float network; ``mismatch``: the analog mismatch's
    sigma (relative) or ``None``; ``seed``: the mismatch's seed; ``current_decays``: per
    neuron layer run behind the chip's synaptic current, its decay per step (Loihi's
    ``(du + 1) / 4096``); ``compartments``: per neuron layer whose neurons take more than one
    compartment (Loihi's two-compartment reset by subtraction), how many; ``cores``: the cores
    the chip network occupies, those compartments counted (``None``: analog chips);
    ``rounded_to_zero``: per weighted layer (digital chips), the share of its non-zero float
    weights that are zero on the chip.
    """

    profile: str
    family: str
    format: str = ""
    scales: dict[str, float | list[float]] = field(default_factory=dict)
    exponents: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    mismatch: float | None = None
    seed: int = 0
    current_decays: dict[str, float] = field(default_factory=dict)
    compartments: dict[str, int] = field(default_factory=dict)
    cores: int | None = None
    rounded_to_zero: dict[str, float] = field(default_factory=dict)
