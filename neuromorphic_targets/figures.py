"""`Figure`: one hardware number with its unit, its source and whether it was verified.

Every number a profile holds is a :class:`Figure`. A figure that no published source gives
is *unknown*: its ``value`` is ``None`` and its ``source`` says why; estimates that need it
report the missing part instead of using a made-up number.

``verified`` follows ``shared/REFERENCES.md``: ``True`` when the value was read in the source
(or in code that states it), ``False`` when it is commonly cited but was not read there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Units a figure may carry. SI units for physics, count units for structure, ``"fraction"``
#: for a dimensionless ratio (an analog circuit's relative mismatch).
UNITS = frozenset({
    "J", "W", "s", "Hz", "V", "byte", "bit", "px",
    "core", "chip", "neuron", "axon", "synapse", "entry", "type", "destination", "channel",
    "fraction",
})


@dataclass(frozen=True)
class Figure:
    """A value with its unit and citation.

    Attributes
    ----------
    value:
        A non-negative number, a tuple of them (one per core, for instance), or ``None``
        when no published source gives it (unknown).
    unit:
        One of :data:`UNITS` (``"J"``, ``"W"``, ``"s"``, ``"neuron"``, ``"entry"``, ...).
    source:
        The citation (paper with DOI, table or page, or code path), or for an unknown figure
        why it is unknown.
    verified:
        ``True`` when the value was read in the source, ``False`` when it was not. For a
        derived figure, whether its inputs were.
    note:
        Conditions (supply voltage, operating point), derivations and caveats.
    derived:
        ``True`` when the value is computed from other published figures (a fit); the
        ``source`` and ``note`` give the computation.
    """

    value: float | int | tuple | None
    unit: str
    source: str
    verified: bool = False
    note: str = ""
    derived: bool = False

    @property
    def known(self) -> bool:
        """Whether a source gives this figure."""
        return self.value is not None

    def __str__(self) -> str:
        if self.value is None:
            return f"unknown {self.unit}"
        return f"{_fmt(self.value)} {self.unit}"


def _fmt(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


def figure_field(unit: str, doc: str, units: frozenset[str] = UNITS):
    """A dataclass field holding a :class:`Figure` in ``unit`` (one of ``units``); ``doc`` says
    what it is."""
    if unit not in units:
        raise ValueError(f"Unit {unit!r} is not one of {sorted(units)}.")
    return field(metadata={"unit": unit, "doc": doc})


def check_figure(key: str, fig: Any, unit: str, where: str) -> Figure:
    """Return ``fig`` if it is a valid :class:`Figure` in ``unit``; else raise naming ``key``."""
    if not isinstance(fig, Figure):
        raise TypeError(f"Figure {key!r} of {where} must be a neuromorphic_targets.Figure. "
                        f"Got {type(fig).__name__}; wrap the number as Figure(value, {unit!r}, "
                        f"source, verified).")
    if not isinstance(fig.unit, str) or not fig.unit:
        raise ValueError(f"Figure {key!r} of {where} has no unit; it must be given in {unit!r}.")
    if fig.unit != unit:
        raise ValueError(f"Figure {key!r} of {where} must be in {unit!r}. Got {fig.unit!r}; "
                         f"convert the value to {unit!r}.")
    if not isinstance(fig.source, str) or not fig.source.strip():
        raise ValueError(f"Figure {key!r} of {where} has no source; cite the paper (DOI, table "
                         f"or page), or say why the figure is unknown.")
    for flag in ("verified", "derived"):
        if not isinstance(getattr(fig, flag), bool):
            raise ValueError(f"Figure {key!r} of {where}: {flag!r} must be true or false. "
                             f"Got {getattr(fig, flag)!r}.")
    values = fig.value if isinstance(fig.value, tuple) else (fig.value,)
    if isinstance(fig.value, tuple) and not fig.value:
        raise ValueError(f"Figure {key!r} of {where} is an empty list; give one value per entry.")
    for v in values:
        if v is None and not isinstance(fig.value, tuple):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"Figure {key!r} of {where} must be a finite number (or a list of "
                             f"them, or unknown). Got {fig.value!r}.")
        if v < 0:
            raise ValueError(f"Figure {key!r} of {where} must be non-negative. Got {fig.value!r} "
                             f"{unit}.")
    return fig
