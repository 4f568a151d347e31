"""`estimate_energy`: joules per inference from measured activity and a mapping;
`chip_power`: watts of one fully used chip at a mean rate.

Energy per inference = static power x time + per-event costs, under one of two accountings
(``accounting=``, :data:`~neuromorphic_targets.profiles.ACCOUNTINGS`)::

    single:      static = p_static_w x chips x T x tick_s                 (latency = T x tick_s)
    throughput:  static = p_static_w x cores / cores_per_chip x t_inference
                 t_inference = 1 / input_rate_hz, or T x tick_s (one input per T ticks)
    dynamic      = sum over kinds of (events per inference) x (cost per event)   (both)

``single`` (the default) answers "what does one inference cost on the chips it occupies": a
battery-powered device that serves one input stream pays every chip's whole static power for
as long as the inference lasts, however few of the chip's cores the network uses.
``throughput`` answers "what does an inference cost on chips kept busy": a chip filled with
copies of the network (or other work) and fed a steady stream of inputs shares its static
power among them, so each inference is charged the share of cores it occupies
(``cores / (chips x cores_per_chip)`` of its ``chips``' static power) for the time it holds
them. Published TrueNorth results report energy per image with the chip shared this way:
the ``throughput`` accounting lands within 2x of Esser et al.'s (NeurIPS 2015) MNIST figures,
``single`` more than 100x above the one-network figure
(:mod:`~neuromorphic_targets.published`, ``examples/benchmarks/RESULTS.md``). The older
``static_scope="cores"`` is the ``throughput`` accounting at the default input rate.

Events come from the :class:`~snnedge.SimulationResult` (spikes, synaptic events, neuron
counts, ``T``, ``N``) and from the :class:`~neuromorphic_targets.Mapping` (chips, and the cores
each neuron's spikes reach). Every term carries the figure it uses and its source. A term
whose figure has no published source is *unknown*, not zero: the total is then the sum of the
known terms, a lower bound, and ``missing`` names what is left out. A term folded into another
figure (TrueNorth's spikes and routing are part of its fitted marginal cost per synaptic event)
is marked *included* (:mod:`~neuromorphic_targets.pricing`, shared with the baselines).

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

Input events (spiking encodings, and ``encoding="sequence"`` inputs of event counts such as
:func:`snnedge.events_to_frames`' frames) are counted as each chip counts them, with the
mapping's :attr:`~neuromorphic_targets.Mapping.input_destinations`: on TrueNorth one axon
delivery per input spike and core whose axons take it (included in the fitted cost of the
synaptic events those axons drive); on DYNAP-CNN one event per input event and layer its
event input feeds; on Loihi one spike per input spike and core; on DYNAP-SE one broadcast per
destination core. Only TrueNorth's is priced (within its fit); the others have no published
figure and are unknown, with their counts. The synaptic events the input drives are in
``synaptic_events`` like any other.

An estimate is per inference; for a sequence that is one sequence.
:meth:`EnergyEstimate.per_second_of_input` divides by the input's duration (``T`` steps of
``step_s`` seconds each, the frames' bin width), the power needed to keep up with the stream;
with ``accounting="throughput", input_rate_hz=1 / (T * step_s)`` the static term is charged
for the stream's duration, one sequence after another.
"""
from __future__ import annotations

from dataclasses import dataclass

import warnings

from snnedge import SimulationResult
from snnedge.errors import check_choice, check_real

from .mapping_types import Mapping
from .pricing import (EnergyTerm, PricedEstimate, included, price, sum_priced, unknown,
                      unknown_kinds)
from .profiles import ACCOUNTINGS, Profile, get_profile


@dataclass(frozen=True)
class EnergyEstimate(PricedEstimate):
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
    accounting:
        ``"single"`` or ``"throughput"`` (see the module docstring): how the static term was
        charged.
    time_per_inference_s:
        The time the static term is charged for: the latency (``single``, and ``throughput``
        at its default input rate) or ``1 / input_rate_hz``; ``None`` when unknown.
    static_share_chips:
        Chips' worth of static power charged: the chips used (``single``) or cores /
        cores per chip (``throughput``).
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
    accounting: str = "single"
    time_per_inference_s: float | None = None
    static_share_chips: float | None = None

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

    def table(self) -> str:
        """The breakdown as an aligned text table."""
        return "\n".join([f"{self.profile} [{self.accounting} accounting]: {self.headline()}"]
                         + self.breakdown_lines())

    def per_second_of_input(self, step_s: float) -> float | None:
        """Joules per second of input, ``total_j / (timesteps * step_s)``, when each
        simulation step stands for ``step_s`` seconds of the input (an event frame's bin
        width): the average power of processing the stream as it arrives. ``None`` when
        the total is unknown; a lower bound when the estimate is."""
        check_real(step_s, param="step_s", where="per_second_of_input", low=0.0, low_open=True)
        return None if self.total_j is None else self.total_j / (self.timesteps * step_s)


def resolve_accounting(accounting: str, static_scope: str | None, where: str) -> str:
    """The accounting asked for, with the older ``static_scope`` folded into it
    (``"chips"`` is ``"single"``, ``"cores"`` is ``"throughput"``; a ``DeprecationWarning``
    says so). Both given and disagreeing is an error."""
    check_choice(accounting, ACCOUNTINGS, param="accounting", where=where)
    if static_scope is None:
        return accounting
    check_choice(static_scope, ("chips", "cores"), param="static_scope", where=where)
    scoped = "single" if static_scope == "chips" else "throughput"
    if accounting != "single" and accounting != scoped:
        raise ValueError(f"{where}: static_scope={static_scope!r} means accounting={scoped!r}, "
                         f"but accounting={accounting!r} was given; pass accounting only.")
    warnings.warn(f"{where}: static_scope={static_scope!r} is accounting={scoped!r}; pass "
                  f"accounting={scoped!r} instead.", DeprecationWarning, stacklevel=3)
    return scoped


def estimate_energy(result: SimulationResult, mapping: Mapping,
                    static_scope: str | None = None, accounting: str = "single",
                    input_rate_hz: float | None = None) -> EnergyEstimate:
    """Joules per inference of ``result``'s activity on ``mapping``'s hardware.

    Parameters
    ----------
    result:
        From ``snnedge.simulate`` on the mapped network.
    mapping:
        From :func:`~neuromorphic_targets.map_network`.
    static_scope:
        Kept for older code: ``"chips"`` is ``accounting="single"``, ``"cores"`` is
        ``accounting="throughput"``.
    accounting:
        ``"single"`` (default): one inference on the chips it occupies, each chip's whole
        static power for the latency ``T x tick_s``. ``"throughput"``: chips kept busy, static
        power by the share of cores used, ``cores / cores_per_chip``, for the time per
        inference at the input rate. Per-event energy is the same in both (module docstring).
    input_rate_hz:
        ``throughput`` only: inputs per second fed to the network (default: one input per
        ``T`` ticks, the fastest a copy of the network takes them). A slower rate charges the
        cores' idle time between inputs to each inference.

    Examples
    --------
    A network on ``k`` TrueNorth cores pays ``k / 4096`` of the chip's 42 mW under
    ``throughput`` and the whole 42 mW under ``single``:

    >>> import torch, snnedge
    >>> from neuromorphic_targets import map_network
    >>> net = snnedge.sequential(torch.nn.Linear(4, 3), snnedge.IF(), torch.nn.Linear(3, 2),
    ...                          input_shape=(4,))
    >>> res = snnedge.simulate(net, torch.rand(2, 4), timesteps=10, encoding="poisson")
    >>> m = map_network(net, "truenorth")
    >>> one = estimate_energy(res, m)
    >>> busy = estimate_energy(res, m, accounting="throughput")
    >>> round(one.static_j / busy.static_j) == 4096 // m.cores
    True
    """
    accounting = resolve_accounting(accounting, static_scope, "estimate_energy")
    if input_rate_hz is not None:
        if accounting != "throughput":
            raise ValueError("estimate_energy: input_rate_hz applies to accounting='throughput' "
                             "(an inference under 'single' lasts its latency); pass "
                             "accounting='throughput' with it.")
        check_real(input_rate_hz, param="input_rate_hz", where="estimate_energy", low=0.0,
                   low_open=True)
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
    seconds, share = _charged(prof, mapping, latency, accounting, input_rate_hz)
    terms = [_static(prof, seconds, share, accounting, mapping),
             *FAMILY_TERMS[prof.family](prof, act)]
    inputs = _input_deliveries(result, mapping)
    if prof.family == "dynap-se" and result.encoding != "direct":
        terms.append(unknown("input_routing", "broadcasts of input spikes: the result has no "
                                              "per-input spike counts") if inputs is None else
                     unknown("input_routing", "input spikes x destination cores: no published figure "
                                              "for off-chip input", inputs, "deliveries"))
    elif inputs is not None:
        terms.append(_input_term(prof, inputs))
    macs = sum(result.input_macs.values()) / n
    if macs:
        terms.append(unknown("input", "analog input MACs of direct encoding are not spikes a chip "
                                      "takes; simulate with encoding='poisson' or 'latency' to "
                                      "price them", macs, "MACs"))
    breakdown = {t.kind: t for t in terms}
    missing = unknown_kinds(breakdown)
    return EnergyEstimate(prof.name, sum_priced(breakdown), breakdown["static"].joules,
                          sum_priced(breakdown, skip=("static",)), breakdown, latency, not missing,
                          missing, T, n, accounting, seconds, share)


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


def _input_deliveries(result: SimulationResult, m: Mapping) -> float | None:
    """Input events per inference as the chip counts them (see the module docstring), or
    ``None`` when the input was not events."""
    counts = result.input_spike_counts
    if counts is None:
        return None
    dest = m.input_destinations
    per_event = dest.double() if dest is not None and tuple(dest.shape) == tuple(counts.shape) else 1.0
    return float((counts.double() * per_event).sum()) / result.num_samples


def _input_term(prof: Profile, deliveries: float) -> EnergyTerm:
    if prof.family == "truenorth":
        return included("input_events", "synaptic_events (fitted marginal cost)", deliveries,
                        "axon deliveries")
    if prof.family == "dynap-cnn":
        return unknown("input_events", "events through the chip's event input into the layers it "
                                       "feeds: no published energy figure", deliveries, "events")
    return unknown("input_events", "input spikes sent to the cores from off the mesh: no published "
                                   "figure", deliveries, "deliveries")


def _charged(prof: Profile, m: Mapping, latency: float | None, accounting: str,
             rate_hz: float | None) -> tuple[float | None, float]:
    """``(seconds per inference, chips' worth of static power)`` charged under ``accounting``."""
    if accounting == "single":
        return latency, float(m.chips)
    share = m.cores / prof.value("cores_per_chip")
    if rate_hz is None:
        return latency, share
    if latency is not None and 1.0 / rate_hz < latency * (1 - 1e-12):
        raise ValueError(f"estimate_energy: input_rate_hz={rate_hz:g} is faster than the network "
                         f"takes inputs on {prof.name!r}: each input holds its cores for "
                         f"{latency:g} s (T x tick), so at most {1.0 / latency:g} inputs/s per "
                         f"copy of the network. Lower the rate, or leave it out for that maximum.")
    return 1.0 / rate_hz, share


def _static(prof: Profile, seconds: float | None, share: float, accounting: str,
            m: Mapping) -> EnergyTerm:
    what = (f"{share:.4g} chip(s)" if accounting == "single" else
            f"{m.cores} cores / {prof.value('cores_per_chip')} per chip = {share:.4g} chip(s)")
    note = (f"{what} x " + ("latency" if accounting == "single" else "time per inference")
            + ("" if seconds is not None else " (tick unknown)"))
    return price("static", None if seconds is None else share * seconds, "chip-s", prof,
                 "p_static_w", note)


def _truenorth(prof: Profile, a: dict) -> list[EnergyTerm]:
    return [
        price("synaptic_events", a["synaptic_events"], "events", prof, "e_synop_j",
              "fitted marginal cost"),
        price("splitters", a["splitter_copies"], "copies", prof, "e_synop_j",
              "one event per splitter copy, priced as a synaptic event"),
        included("spikes", "synaptic_events (fitted marginal cost)", a["spikes"], "spikes"),
        included("routing", "synaptic_events (fitted marginal cost)", a["deliveries"], "deliveries"),
        included("neuron_updates", "static (1 kHz tick updates)", a["neuron_updates"], "updates"),
    ]


def _dynap_se(prof: Profile, a: dict) -> list[EnergyTerm]:
    return [
        price("spikes", a["spikes"], "spikes", prof, "e_spike_j"),
        price("synaptic_events", a["synaptic_events"], "events", prof, "e_synop_j", "pulse extension"),
        price("broadcast", a["deliveries"], "deliveries", prof, "e_broadcast_j",
              "spikes x destination cores"),
        price("routing", a["deliveries"], "deliveries", prof, "e_route_j"),
        included("neuron_updates", "static (analog circuits, no updates)"),
    ]


def _loihi(prof: Profile, a: dict) -> list[EnergyTerm]:
    return [
        price("synaptic_events", a["synaptic_events"], "events", prof, "e_synop_j",
              "minimum cost per op (lower bound)"),
        price("neuron_updates", a["neuron_updates"], "updates", prof, "e_neuron_update_inactive_j",
              "all at the inactive cost (lower bound)"),
        price("spikes", a["deliveries"], "deliveries", prof, "e_spike_tile_j",
              "spikes x destination cores, within a tile"),
        unknown("routing", "tile hops: the mesh placement of cores is not modelled"),
    ]


def _dynap_cnn(prof: Profile, a: dict) -> list[EnergyTerm]:
    return [
        price("spikes", a["spikes"], "spikes", prof, "e_spike_j"),
        price("synaptic_events", a["synaptic_events"], "events", prof, "e_synop_j"),
    ]


#: The per-event terms of each family, from the activity per inference (see the module docstring).
FAMILY_TERMS = {"truenorth": _truenorth, "dynap-se": _dynap_se, "loihi": _loihi, "dynap-cnn": _dynap_cnn}


def chip_power(prof: Profile | str, rate_hz: float = 20.0, active_synapses: float = 128) -> float:
    """Watts drawn by one fully used chip at mean rate ``rate_hz`` per neuron and
    ``active_synapses`` per neuron (synaptic events per spike).

    ``P = p_static_w + neurons_per_chip * rate_hz * (e_spike_j + active_synapses * e_synop_j)``
    where a profile's per-spike cost is absent or folded into its marginal synaptic cost
    (TrueNorth: see :mod:`neuromorphic_targets.power` for the fit and its limits). Raises a
    ``ValueError`` naming the figures that have no published source for this profile.

    >>> round(chip_power(get_profile("truenorth"), 20.0, 128) * 1e3, 1)
    72.0
    >>> round(chip_power(get_profile("truenorth"), 0.0) * 1e3, 1)
    42.0
    """
    prof = get_profile(prof)
    check_real(rate_hz, param="rate_hz", where="chip_power", low=0.0)
    check_real(active_synapses, param="active_synapses", where="chip_power", low=0.0)
    figs = prof.figures()
    needed = ["p_static_w", "e_synop_j"] + (["e_spike_j"] if "e_spike_j" in figs else [])
    missing = [k for k in needed if k not in figs or not figs[k].known]
    if "neurons_per_core" not in figs or "cores_per_chip" not in figs:
        missing.append("neurons_per_core and cores_per_chip")
    if missing:
        raise ValueError(f"chip_power cannot price profile {prof.name!r}: {', '.join(missing)} "
                         f"{'has' if len(missing) == 1 else 'have'} no published source "
                         f"(unknown). Load a profile with these figures (load_profile) to use it.")
    neurons = figs["neurons_per_core"].value * figs["cores_per_chip"].value
    per_spike = active_synapses * figs["e_synop_j"].value + (
        figs["e_spike_j"].value if "e_spike_j" in figs else 0.0)
    return float(figs["p_static_w"].value + neurons * rate_hz * per_spike)
