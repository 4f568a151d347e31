"""`estimate_energy`: joules per inference from measured activity and a mapping.

Energy per inference = static power x latency + per-event costs::

    static  = p_static_w x chips x T x tick_s              (latency = T x tick_s)
    dynamic = sum over kinds of (events per inference) x (cost per event)

Events come from the :class:`~snnedge.SimulationResult` (spikes, synaptic events, neuron
counts, ``T``, ``N``) and from the :class:`~neuromorphic_targets.Mapping` (chips, and the cores
each neuron's spikes reach). Every term carries the figure it uses and its source. A term
whose figure has no published source is *unknown*, not zero: the total is then the sum of the
known terms, a lower bound, and ``missing`` names what is left out. A term folded into another
figure (TrueNorth's spikes and routing are part of its fitted marginal cost per synaptic event)
is marked *included*.

Per family:

* TrueNorth: static (42 mW per chip) + synaptic events x 11.18 pJ (fitted marginal, see
  :mod:`~neuromorphic_targets.power`) + splitter copies x the same cost; spikes, routing and
  neuron updates are included in those two figures.
* DYNAP-SE: spikes x 883 pJ + synaptic events x 324 pJ (pulse extension) + deliveries (spikes
  x destination cores) x (6.84 nJ broadcast + 360 pJ routing); static power and tick unknown.
* Loihi: synaptic events x 23.6 pJ (minimum) + neuron updates (neurons x T) x 52 pJ (the
  inactive cost, a lower bound; active updates cost 81 pJ) + deliveries x 1.7 pJ (within a
  tile); tile hops, static power and tick unknown.
* DYNAP-CNN: no published energy figure; every term unknown.

Analog input MACs (direct encoding) are not priced: neuromorphic chips take spikes, so encode
the input as spikes (``encoding="poisson"`` or ``"latency"``) to price the first layer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from snnedge import SimulationResult

from .figures import Figure
from .mapping import Mapping
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


@dataclass(frozen=True)
class EnergyEstimate:
    """Joules per inference with a breakdown by kind.

    Attributes
    ----------
    profile:
        Profile name.
    total_j, static_j, dynamic_j:
        Sum of the priced terms, the static term, the priced dynamic terms (``None`` where
        nothing is known). When ``complete`` is false the sums are lower bounds.
    breakdown:
        ``{kind: EnergyTerm}``.
    latency_s:
        ``T x tick_s`` (``None`` when the tick is unknown).
    complete:
        Whether every term is priced or included.
    missing:
        Kinds whose figures are unknown.
    timesteps, num_samples:
        From the simulation.
    """

    profile: str
    total_j: float | None
    static_j: float | None
    dynamic_j: float | None
    breakdown: dict[str, EnergyTerm]
    latency_s: float | None
    complete: bool
    missing: list[str]
    timesteps: int
    num_samples: int

    @property
    def total(self) -> float | None:
        """Joules per inference (a lower bound unless ``complete``)."""
        return self.total_j

    @property
    def static(self) -> float | None:
        return self.static_j

    @property
    def dynamic(self) -> float | None:
        return self.dynamic_j

    @property
    def is_lower_bound(self) -> bool:
        return not self.complete

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "breakdown"}
        d["breakdown"] = {k: asdict(t) for k, t in self.breakdown.items()}
        return d

    def table(self) -> str:
        """The breakdown as an aligned text table."""
        lines = [f"{self.profile}: {_j(self.total_j)} per inference"
                 + ("" if self.complete else f" (lower bound; unknown: {', '.join(self.missing)})")]
        w = max(len(k) for k in self.breakdown)
        for k, t in self.breakdown.items():
            amount = _j(t.joules) if t.status == PRICED else t.status
            count = "-" if t.count is None else f"{t.count:,.4g} {t.count_unit}"
            lines.append(f"  {k:<{w}}  {amount:>12}  {count:>24}  {t.cost_name}  {t.note}".rstrip())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _j(v: float | None) -> str:
    if v is None:
        return "unknown"
    for unit, f in (("J", 1), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(v) >= f or unit == "pJ":
            return f"{v / f:.4g} {unit}"
    return f"{v} J"


def _term(kind: str, count: float | None, count_unit: str, prof: Profile, cost_name: str,
          note: str = "") -> EnergyTerm:
    fig: Figure = prof.figures()[cost_name]
    src = fig.source + ("" if fig.verified or not fig.known else " (unverified)") + (
        " (derived)" if fig.derived else "")
    if not fig.known or count is None:
        return EnergyTerm(kind, count, count_unit, None, cost_name, None, UNKNOWN, src,
                          note or (f"{cost_name} has no published source" if not fig.known else ""))
    return EnergyTerm(kind, count, count_unit, fig.value, cost_name, count * fig.value, PRICED, src, note)


def _included(kind: str, into: str, count: float | None = None, unit: str = "") -> EnergyTerm:
    return EnergyTerm(kind, count, unit, None, "-", None, INCLUDED, "-", f"included in {into}")


def _unknown(kind: str, note: str, count: float | None = None, unit: str = "") -> EnergyTerm:
    return EnergyTerm(kind, count, unit, None, "-", None, UNKNOWN, "-", note)


def estimate_energy(result: SimulationResult, mapping: Mapping,
                    static_scope: str = "chips") -> EnergyEstimate:
    """Joules per inference of ``result``'s activity on ``mapping``'s hardware.

    Parameters
    ----------
    result:
        From ``snnedge.simulate`` on the mapped network.
    mapping:
        From :func:`~neuromorphic_targets.map_network`.
    static_scope:
        ``"chips"`` (default): every chip used draws its full static power; ``"cores"``:
        static power pro rata to the cores used (a chip shared with other work).
    """
    from snnedge.errors import check_choice

    check_choice(static_scope, ("chips", "cores"), param="static_scope", where="estimate_energy")
    if not isinstance(result, SimulationResult) or not isinstance(mapping, Mapping):
        raise TypeError(f"estimate_energy expects (SimulationResult, Mapping). Got "
                        f"({type(result).__name__}, {type(mapping).__name__}).")
    layers = set(mapping.neuron_layers)
    if set(result.neurons) != layers:
        raise ValueError(f"estimate_energy: the result's neuron layers {sorted(result.neurons)} differ "
                         f"from the mapping's {sorted(layers)}; simulate and map the same network.")
    prof, n, T = mapping.profile, result.num_samples, result.timesteps
    act = _activity(result, mapping)
    tick = prof.figures().get("tick_s")
    latency = T * tick.value if tick is not None and tick.known else None
    terms = {"static": _static(prof, mapping, latency, static_scope)}
    terms.update(FAMILY_TERMS[prof.family](prof, act, n, T))
    if prof.family == "dynap-se" and result.encoding != "direct":
        terms["input_routing"] = _unknown("input_routing", "broadcasts of input spikes: the result "
                                          "has no per-input spike counts")
    macs = sum(result.input_macs.values()) / n
    if macs:
        terms["input"] = _unknown("input", "analog input MACs of direct encoding are not spikes a chip "
                                  "takes; simulate with encoding='poisson' or 'latency' to price them",
                                  macs, "MACs")
    priced = [t.joules for t in terms.values() if t.status == PRICED]
    dyn = [t.joules for k, t in terms.items() if t.status == PRICED and k != "static"]
    missing = [k for k, t in terms.items() if t.status == UNKNOWN]
    return EnergyEstimate(prof.name, sum(priced) if priced else None, terms["static"].joules,
                          sum(dyn) if dyn else None, terms, latency, not missing, missing, T, n)


def _activity(result: SimulationResult, m: Mapping) -> dict[str, float]:
    """Per-inference counts: spikes, synaptic events, deliveries, splitter copies, neuron updates."""
    n = result.num_samples
    deliveries = splits = 0.0
    for layer, k in m.destinations.items():
        counts = result.neuron_spike_counts[layer].double().reshape(k.shape)
        kd = k.double()
        deliveries += float((counts * kd).sum())
        splits += float((counts * kd * (kd > 1)).sum())
    neurons = sum(r.neurons for r in m.per_layer)
    return {"spikes": result.total_spikes / n, "synaptic_events": result.total_synaptic_events / n,
            "deliveries": deliveries / n, "splitter_copies": splits / n,
            "neuron_updates": float(neurons) * result.timesteps}


def _static(prof: Profile, m: Mapping, latency: float | None, scope: str) -> EnergyTerm:
    share = m.chips if scope == "chips" else m.cores / prof.value("cores_per_chip")
    note = f"{share:.4g} chip(s) x latency" + ("" if latency is not None else " (tick unknown)")
    seconds = None if latency is None else share * latency
    return _term("static", seconds, "chip-s", prof, "p_static_w", note)


def _truenorth(prof: Profile, a: dict, n: int, T: int) -> dict[str, EnergyTerm]:
    return {
        "synaptic_events": _term("synaptic_events", a["synaptic_events"], "events", prof, "e_synop_j",
                                 "fitted marginal cost"),
        "splitters": _term("splitters", a["splitter_copies"], "copies", prof, "e_synop_j",
                           "one event per splitter copy, priced as a synaptic event"),
        "spikes": _included("spikes", "synaptic_events (fitted marginal cost)", a["spikes"], "spikes"),
        "routing": _included("routing", "synaptic_events (fitted marginal cost)", a["deliveries"],
                             "deliveries"),
        "neuron_updates": _included("neuron_updates", "static (1 kHz tick updates)",
                                    a["neuron_updates"], "updates"),
    }


def _dynap_se(prof: Profile, a: dict, n: int, T: int) -> dict[str, EnergyTerm]:
    return {
        "spikes": _term("spikes", a["spikes"], "spikes", prof, "e_spike_j"),
        "synaptic_events": _term("synaptic_events", a["synaptic_events"], "events", prof, "e_synop_j",
                                 "pulse extension"),
        "broadcast": _term("broadcast", a["deliveries"], "deliveries", prof, "e_broadcast_j",
                           "spikes x destination cores"),
        "routing": _term("routing", a["deliveries"], "deliveries", prof, "e_route_j"),
        "neuron_updates": _included("neuron_updates", "static (analog circuits, no updates)"),
    }


def _loihi(prof: Profile, a: dict, n: int, T: int) -> dict[str, EnergyTerm]:
    return {
        "synaptic_events": _term("synaptic_events", a["synaptic_events"], "events", prof, "e_synop_j",
                                 "minimum cost per op (lower bound)"),
        "neuron_updates": _term("neuron_updates", a["neuron_updates"], "updates", prof,
                                "e_neuron_update_inactive_j", "all at the inactive cost (lower bound)"),
        "spikes": _term("spikes", a["deliveries"], "deliveries", prof, "e_spike_tile_j",
                        "spikes x destination cores, within a tile"),
        "routing": _unknown("routing", "tile hops: the mesh placement of cores is not modelled"),
    }


def _dynap_cnn(prof: Profile, a: dict, n: int, T: int) -> dict[str, EnergyTerm]:
    return {
        "spikes": _term("spikes", a["spikes"], "spikes", prof, "e_spike_j"),
        "synaptic_events": _term("synaptic_events", a["synaptic_events"], "events", prof, "e_synop_j"),
    }


FAMILY_TERMS = {"truenorth": _truenorth, "dynap-se": _dynap_se, "loihi": _loihi, "dynap-cnn": _dynap_cnn}
