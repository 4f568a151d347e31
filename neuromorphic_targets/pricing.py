"""Energy terms: a count of events priced by one cited figure.

Both energy estimates are sums of terms, the SNN's on a neuromorphic target
(:func:`~neuromorphic_targets.estimate_energy`) and the ANN's on a conventional baseline
(:func:`~neuromorphic_targets.estimate_baseline`)::

    joules = count x value of the figure      (events x J/event, chip-seconds x W, accesses x J)

Each term keeps the figure's name and source. A term whose figure has no published source
(or whose count cannot be known) is *unknown*: its joules are ``None``, never zero, and the
estimate's total is the sum of the priced terms, a lower bound, with the unknown kinds listed
in ``missing``. A term whose cost is part of another term's figure is *included*.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .figures import Figure
from .profiles import Profile

PRICED, UNKNOWN, INCLUDED = "priced", "unknown", "included"


@dataclass(frozen=True)
class EnergyTerm:
    """One kind of cost per inference.

    ``count`` events (or seconds for static) x ``cost`` (J per event, or W) = ``joules``;
    ``status`` is ``"priced"``, ``"unknown"`` (no published figure: ``joules`` is ``None``) or
    ``"included"`` (part of another term's figure, ``joules`` is ``None``)."""

    kind: str
    count: float | None
    count_unit: str
    cost: float | None
    cost_name: str
    joules: float | None
    status: str
    source: str
    note: str = ""


def figure_source(fig: Figure) -> str:
    """``fig``'s citation, marked ``(unverified)`` and ``(derived)`` where that applies."""
    return fig.source + ("" if fig.verified or not fig.known else " (unverified)") + (
        " (derived)" if fig.derived else "")


def price(kind: str, count: float | None, count_unit: str, prof: Profile, cost_name: str,
          note: str = "") -> EnergyTerm:
    """``count`` x figure ``cost_name`` of ``prof``; unknown when either is unknown.

    >>> from neuromorphic_targets import get_profile
    >>> price("synaptic_events", 1e6, "events", get_profile("loihi"), "e_synop_j").joules
    2.36e-05
    >>> price("static", 1.0, "chip-s", get_profile("loihi"), "p_static_w").status
    'unknown'
    """
    fig: Figure = getattr(prof, cost_name)
    src = figure_source(fig)
    if not fig.known or count is None:
        why = note or (f"{cost_name} has no published source" if not fig.known else "")
        return EnergyTerm(kind, count, count_unit, None, cost_name, None, UNKNOWN, src, why)
    return EnergyTerm(kind, count, count_unit, fig.value, cost_name, count * fig.value, PRICED,
                      src, note)


def included(kind: str, into: str, count: float | None = None, unit: str = "") -> EnergyTerm:
    """A cost that is part of the figure of ``into`` (not priced again)."""
    return EnergyTerm(kind, count, unit, None, "-", None, INCLUDED, "-", f"included in {into}")


def unknown(kind: str, note: str, count: float | None = None, unit: str = "") -> EnergyTerm:
    """A cost no figure prices; ``note`` says why."""
    return EnergyTerm(kind, count, unit, None, "-", None, UNKNOWN, "-", note)


def sum_priced(terms: Mapping[str, EnergyTerm], skip: tuple[str, ...] = ()) -> float | None:
    """Sum of the priced terms (but the kinds in ``skip``); ``None`` when none is priced."""
    priced = [t.joules for k, t in terms.items() if t.status == PRICED and k not in skip]
    return sum(priced) if priced else None


def unknown_kinds(terms: Mapping[str, EnergyTerm]) -> list[str]:
    """The kinds whose cost is unknown."""
    return [k for k, t in terms.items() if t.status == UNKNOWN]


def format_joules(v: float | None) -> str:
    """Joules with a readable prefix (``"unknown"`` for ``None``).

    >>> format_joules(2.5e-7), format_joules(None)
    ('250 nJ', 'unknown')
    """
    if v is None:
        return "unknown"
    for unit, f in (("J", 1), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(v) >= f or unit == "pJ":
            return f"{v / f:.4g} {unit}"
    return f"{v} J"


class PricedEstimate:
    """What an estimate made of :class:`EnergyTerm` s offers, whatever it prices.

    For dataclasses with the fields ``breakdown`` (``{kind: EnergyTerm}``), ``total_j``,
    ``complete`` and ``missing`` (and optionally ``notes``), and a ``title()``: :meth:`table`
    (which ``str()`` returns) is the title, :meth:`breakdown_lines` and the notes.
    """

    @property
    def is_lower_bound(self) -> bool:
        """Whether some term is unknown, so that ``total_j`` only bounds the energy below."""
        return not self.complete

    def sources(self) -> list[str]:
        """Citations of the priced terms, in order, without repeats."""
        return list(dict.fromkeys(t.source for t in self.breakdown.values()
                                  if t.status == PRICED and t.source != "-"))

    def to_dict(self) -> dict:
        """JSON-ready fields, the breakdown as ``{kind: term fields}``."""
        d = {k: v for k, v in asdict(self).items() if k != "breakdown"}
        d["breakdown"] = {k: asdict(t) for k, t in self.breakdown.items()}
        return d

    def headline(self) -> str:
        """``"<total> per inference"``, with the unknown kinds when it is a lower bound."""
        return (f"{format_joules(self.total_j)} per inference"
                + ("" if self.complete else f" (lower bound; unknown: {', '.join(self.missing)})"))

    def breakdown_lines(self) -> list[str]:
        """One aligned line per term: kind, joules (or status), count, figure, note."""
        w = max(len(k) for k in self.breakdown)
        lines = []
        for k, t in self.breakdown.items():
            amount = format_joules(t.joules) if t.status == PRICED else t.status
            count = "-" if t.count is None else f"{t.count:,.4g} {t.count_unit}"
            lines.append(f"  {k:<{w}}  {amount:>12}  {count:>24}  {t.cost_name}  {t.note}".rstrip())
        return lines

    def table(self) -> str:
        """The breakdown as an aligned text table: title, one line per term, the notes."""
        notes = [f"  note: {n}" for n in getattr(self, "notes", ())]
        return "\n".join([self.title()] + self.breakdown_lines() + notes)

    def __str__(self) -> str:
        return self.table()


@dataclass(frozen=True)
class AcceleratorEstimate(PricedEstimate):
    """The fields every estimate of the ANN on a conventional device starts with (computed:
    :class:`~neuromorphic_targets.baselines.BaselineEstimate`; timed:
    :class:`~neuromorphic_targets.measured.MeasuredEstimate`), in this order.

    ``profile`` and ``method`` name the device and how the energy was found; ``total_j`` sums
    the priced terms of ``breakdown`` (``{kind: EnergyTerm}``), a lower bound when
    ``complete`` is false (``None`` when nothing is priced), with the unknown kinds in
    ``missing``; ``latency_s`` is seconds per inference (``None`` when unknown).
    """

    profile: str
    method: str
    total_j: float | None
    breakdown: dict[str, EnergyTerm]
    latency_s: float | None
    complete: bool
    missing: list[str]

    def title(self) -> str:
        """The table's first line: profile, method, headline, latency."""
        return (f"{self.profile} ({self.method}): {self.headline()}, latency "
                f"{'unknown' if self.latency_s is None else f'{self.latency_s:.4g} s'}")
