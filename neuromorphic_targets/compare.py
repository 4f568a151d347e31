"""`compare`: the SNN on neuromorphic targets next to the ANN on conventional baselines.

One row per (target, simulation) and one per baseline::

    rep = compare(res, ann=ann, snn=snn, targets=["truenorth", "dynap-se", "dynap-cnn"],
                  baselines=["cpu", "gpu-jetson-tx2", "tpu-v1", "eyeriss"])
    rep.table(); rep.to_markdown(); rep.to_csv("report.csv"); rep.plot()

Target rows come from :func:`~neuromorphic_targets.map_network` and
:func:`~neuromorphic_targets.estimate_energy` on the simulated activity; baseline rows from
:func:`~neuromorphic_targets.baselines.estimate_baseline` on the ANN's operation counts
(:func:`snnedge.count_ops`). Every number in a row comes from a cited figure; a row whose
energy misses a term (an unknown figure) says so in ``energy_complete`` and ``missing``, and
its energy is then a lower bound (written ``>=`` in the markdown). Several simulations of the
same network at different ``T`` give one target row per ``T`` and feed
:meth:`Comparison.plot_accuracy_vs_energy`.

Every row says how its energy counts (the ``accounting`` column, in the table, the CSV, the
markdown and the plots): target rows under ``accounting="single"`` (default: one inference on
the chips it occupies, whole chips' static power for its latency) or ``"throughput"`` (chips
kept busy: static power by the share of cores used), see
:func:`~neuromorphic_targets.estimate_energy`; baseline rows by their method (``ops lower
bound`` for the 45 nm energy table, ``throughput (peak)`` for power x time at peak throughput,
``throughput (measured)`` for Eyeriss's measured energy per MAC), and rows timed on your own
device (``measured=``) ``single (timed)``.

With ``hardware_data=(x, y)`` each target's network is also run in the chip's own arithmetic
(:func:`~neuromorphic_targets.to_hardware`) on ``x`` at every ``T``: the row gains
``hardware_accuracy`` (beside the float network's ``accuracy``) and its activity and energy
come from that simulation's own counts.
"""
from __future__ import annotations

import csv
import io
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from snnedge import SimulationResult, SpikingNetwork, simulate
from snnedge.errors import check_real
from snnedge.ops import OpCount, count_ops

from .baselines import METHOD_ACCOUNTING, BaselineEstimate, estimate_baseline, get_baseline
from .compare_hardware import hardware_data_pair, on_chip
from .energy import EnergyEstimate, estimate_energy, resolve_accounting
from .mapping import Mapping, map_network
from .measured import MeasuredDevice, MeasuredEstimate, estimate_measured
from .profiles import ACCOUNTINGS, get_profile

DEFAULT_TARGETS = ("truenorth", "dynap-se", "dynap-cnn")
DEFAULT_BASELINES = ("cpu", "gpu-jetson-tx2", "tpu-v1", "eyeriss")

#: Columns of :meth:`Comparison.table`, in order.
COLUMNS = ("name", "kind", "model", "accuracy", "hardware_accuracy", "timesteps", "energy_j",
           "energy_complete", "energy_method", "accounting", "latency_s", "spikes",
           "synaptic_events", "macs", "cores", "chips",
           "feasible", "weights_representable", "missing", "problems", "sources")


@dataclass(frozen=True)
class ComparisonRow:
    """One target (at one ``T``) or one baseline. Per-inference counts; ``None`` = not
    applicable or unknown (``missing`` says which energy terms are unknown)."""

    name: str
    kind: str  # "neuromorphic" or "baseline"
    model: str  # "SNN" or "ANN"
    accuracy: float | None
    timesteps: int | None
    energy_j: float | None
    energy_complete: bool
    energy_method: str
    latency_s: float | None
    spikes: float | None
    synaptic_events: float | None
    macs: float | None
    cores: int | None
    chips: int | None
    feasible: bool | None
    weights_representable: bool | None
    missing: tuple[str, ...]
    problems: tuple[str, ...]
    sources: tuple[str, ...]
    estimate: EnergyEstimate | BaselineEstimate | MeasuredEstimate = field(repr=False,
                                                                            compare=False)
    #: How the energy counts: ``"single"`` / ``"throughput"`` for targets, the method's
    #: label for baselines (module docstring). A row whose ``energy_complete`` is false is a
    #: lower bound whatever its accounting.
    accounting: str = "single"
    hardware_accuracy: float | None = None  # the network in the chip's arithmetic (hardware_data)

    @property
    def label(self) -> str:
        return self.name if self.timesteps is None else f"{self.name} (T={self.timesteps})"

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in COLUMNS}


@dataclass(frozen=True, eq=False)
class Comparison:
    """Rows of a comparison, the mappings and the ANN's operation counts behind them."""

    rows: tuple[ComparisonRow, ...]
    mappings: dict[str, Mapping]
    ops: OpCount | None
    results: tuple[SimulationResult, ...]
    notes: tuple[str, ...] = ()
    #: The accounting of the target rows (``"single"`` or ``"throughput"``).
    accounting: str = "single"

    def table(self) -> list[dict]:
        """One dict per row with the keys of :data:`COLUMNS`."""
        return [r.as_dict() for r in self.rows]

    def row(self, name: str, timesteps: int | None = None) -> ComparisonRow:
        """The row of target or baseline ``name`` (at ``timesteps`` for targets; default: the
        longest simulation)."""
        rows = [r for r in self.rows if r.name == name
                and (timesteps is None or r.timesteps == timesteps)]
        if not rows:
            raise KeyError(f"No row {name!r}" + (f" at T={timesteps}" if timesteps else "")
                           + f"; rows are {[r.label for r in self.rows]}.")
        return max(rows, key=lambda r: r.timesteps or 0)

    def sources(self) -> list[str]:
        """Every citation used by some row, numbered in :meth:`to_markdown` in this order."""
        return list(dict.fromkeys(s for r in self.rows for s in r.sources))

    def to_markdown(self) -> str:
        """A markdown table (energies in J, ``>=`` marking lower bounds), then the notes and the
        numbered sources each row cites."""
        refs = {s: i + 1 for i, s in enumerate(self.sources())}
        on_chip = any(r.hardware_accuracy is not None for r in self.rows)
        head = ["row", "model", "accuracy"] + (["on-chip accuracy"] if on_chip else []) + [
            "T", "energy / inference", "accounting", "latency", "spikes", "synaptic events",
            "MACs", "cores", "chips", "feasible", "unknown terms", "sources"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            chip = [_pct(r.hardware_accuracy)] if on_chip else []
            cells = [r.name, r.model, _pct(r.accuracy), *chip, _int(r.timesteps), _energy(r),
                     r.accounting, _sec(r.latency_s), _num(r.spikes), _num(r.synaptic_events), _num(r.macs),
                     _int(r.cores), _int(r.chips), _feasible(r), ", ".join(r.missing) or "-",
                     " ".join(f"[{refs[s]}]" for s in r.sources) or "-"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("`>=`: a lower bound (some energy term has no published figure; see unknown "
                     "terms). `-`: not applicable."
                     + (" On-chip accuracy: the network in the chip's own arithmetic "
                        "(to_hardware), whose simulation also gives the row's activity and "
                        "energy." if on_chip else ""))
        lines.append(accounting_legend(self.accounting))
        lines += [f"- {n}" for n in self.notes]
        for name, m in self.mappings.items():
            lines += [f"- {name} infeasible: {p}" for p in m.problems[:3]]
            if len(m.problems) > 3:
                lines.append(f"- {name}: {len(m.problems) - 3} more problem(s) in "
                             f"comparison.mappings[{name!r}].problems")
        lines.append("")
        lines += [f"[{i}] {s}" for s, i in refs.items()]
        return "\n".join(lines)

    def to_csv(self, path: str | Path | None = None) -> str:
        """The table as CSV (lists joined with ``"; "``); written to ``path`` when given."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.table():
            writer.writerow({k: "; ".join(v) if isinstance(v, tuple) else
                             ("" if v is None else v) for k, v in row.items()})
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    def plot(self, ax=None):
        """Log-scale bars of energy per inference; infeasible rows hatched, lower bounds and
        unknown energies marked (see
        :func:`neuromorphic_targets.plots.plot_energy_comparison`)."""
        from .plots import plot_energy_comparison

        return plot_energy_comparison(self, ax=ax)

    def plot_accuracy_vs_energy(self, ax=None):
        """Accuracy against energy per inference, one line per target across ``T``."""
        from .plots import plot_accuracy_vs_energy

        return plot_accuracy_vs_energy(self, ax=ax)

    def __repr__(self) -> str:
        return f"Comparison({len(self.rows)} rows: {[r.label for r in self.rows]})"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def accounting_table(single: Comparison, throughput: Comparison) -> str:
    """A markdown table of every target row's energy under both accountings, from two
    comparisons of the same results (``accounting="single"`` and ``"throughput"``).

    ``single / throughput`` is how many times more one inference costs on chips of its own
    than on chips kept busy: about ``chips x cores per chip / cores`` when static power
    dominates."""
    def energy(r) -> str:
        if r.energy_j is None:
            return "unknown"
        return ("" if r.energy_complete else ">= ") + f"{r.energy_j:.3g} J"

    busy = {(r.name, r.timesteps): r for r in throughput.rows if r.kind == "neuromorphic"}
    lines = ["| target | T | cores | chips | single: whole chips x latency | throughput: share of "
             "cores, busy chips | single / throughput |", "|---|---|---|---|---|---|---|"]
    for r in single.rows:
        b = busy.get((r.name, r.timesteps))
        if r.kind != "neuromorphic" or b is None:
            continue
        ratio = f"{r.energy_j / b.energy_j:,.0f}x" if r.energy_j and b.energy_j else "-"
        lines.append(f"| {r.name} | {r.timesteps} | {r.cores} | {r.chips} | {energy(r)} | "
                     f"{energy(b)} | {ratio} |")
    return "\n".join(lines)


def accounting_legend(accounting: str) -> str:
    """One line saying what the accounting column means, for a comparison's target rows
    under ``accounting``."""
    return (f"Accounting: targets `{accounting}`: {ACCOUNTINGS[accounting]}. Baselines: `ops "
            f"lower bound` = arithmetic and memory only (45 nm energy table, no instruction "
            f"overhead); `throughput (peak)` = device power x time at peak throughput x "
            f"utilisation; `throughput (measured)` = measured chip energy per MAC on a busy "
            f"chip; `single (timed)` = the ANN timed on this machine x the power given.")


def _num(v) -> str:
    return "-" if v is None else f"{v:,.4g}" if isinstance(v, float) and v != int(v) else f"{v:,.0f}"


def _int(v) -> str:
    return "-" if v is None else f"{v:,}"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def _sec(v) -> str:
    return "unknown" if v is None else f"{v:.3g} s"


def _energy(r: ComparisonRow) -> str:
    if r.energy_j is None:
        return "unknown"
    return ("" if r.energy_complete else ">= ") + f"{r.energy_j:.3g} J"


def _feasible(r: ComparisonRow) -> str:
    if r.feasible is None:
        return "-"
    text = "yes" if r.feasible else "no"
    if r.weights_representable is False:
        text += " (weights need quantize_for)"
    return text


def _accuracy(result: SimulationResult, y) -> float | None:
    if y is None and result.labels is None:
        return None
    return result.accuracy(y)


def _network_of(result: SimulationResult, snn) -> SpikingNetwork | None:
    for candidate in (snn, getattr(result, "network", None), result.extra.get("network")):
        if isinstance(candidate, weakref.ref):  # a result may hold its network weakly
            candidate = candidate()
        if candidate is not None:
            return candidate
    return None


class RateEquivalentANN(nn.Module):
    """The ANN a spiking network approximates: each neuron layer becomes a ReLU, the rest
    runs as is. Used to count a directly trained SNN's MACs for the baselines when no ANN is
    given (the synaptic layers are shared with ``snn``, never changed)."""

    def __init__(self, snn: SpikingNetwork):
        super().__init__()
        self.snn = snn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vals = {"input": x}
        for node in self.snn.nodes:
            xs = [vals[i] for i in node.inputs]
            if self.snn.kind(node.name) == "temporal":
                module = self.snn.layer(node.name)
                # neurons fire at a rate ~ ReLU of their input; other temporal modules
                # (spiking max-pool gates) run one step to keep their shape
                vals[node.name] = torch.relu(xs[0]) if module.emits_spikes else module(
                    xs[0].unsqueeze(0))[0]
            else:
                vals[node.name] = self.snn.layer(node.name)(*xs)
        return vals[self.snn.output_name]


def compare(result: SimulationResult | Sequence[SimulationResult], ann: nn.Module | None = None,
            targets: Sequence[str] = DEFAULT_TARGETS, baselines: Sequence[str] = DEFAULT_BASELINES,
            snn: SpikingNetwork | None = None, input_shape: Sequence[int] | None = None,
            accuracy_ann: float | None = None, y=None, utilisation: float = 1.0,
            static_scope: str | None = None, ops: OpCount | None = None,
            accounting: str = "single", input_rate_hz: float | None = None,
            measured: Sequence[MeasuredDevice] = (), hardware_data=None) -> Comparison:
    """Compare the SNN on neuromorphic ``targets`` with the ANN on conventional ``baselines``.

    Parameters
    ----------
    result:
        ``snnedge.simulate`` output, or several of them (the same network at different ``T``:
        one target row per result).
    ann:
        The ANN for the baseline rows (its MACs and memory traffic by
        :func:`snnedge.count_ops`). Default: the SNN's :class:`RateEquivalentANN` (neurons as
        ReLU), said in the notes.
    targets, baselines:
        Registered profile and baseline names (or profile objects).
    snn:
        The simulated network, needed to map it onto the targets (default: the result's
        ``network`` attribute where the result carries one).
    input_shape:
        One sample's shape (default: ``snn.input_shape``).
    accuracy_ann:
        The ANN's accuracy, shown in the baseline rows (``None``: not shown).
    y:
        Labels for the SNN's accuracy when the results carry none.
    utilisation:
        Fraction of the baselines' throughput sustained, in (0, 1] (1.0: peak, a best case).
    static_scope:
        Kept for older code: ``"chips"`` is ``accounting="single"``, ``"cores"`` is
        ``accounting="throughput"``.
    ops:
        The ANN's operation counts (:func:`snnedge.count_ops`) when the ANN itself is not at
        hand, e.g. the counts ``snnedge convert`` stores beside the network; used instead of
        counting ``ann``.
    accounting:
        How the target rows count static power (:func:`~neuromorphic_targets.estimate_energy`):
        ``"single"`` (default), one inference on the chips it occupies (whole chips x latency:
        a battery-powered device serving one input stream); ``"throughput"``, chips kept busy
        (static power by the share of cores used, as published chip results count: a server
        filled with work). The baseline rows are the same under both; their ``accounting``
        column says what each one is.
    input_rate_hz:
        With ``accounting="throughput"``: inputs per second (default: one per ``T`` ticks).
    measured:
        Devices to time the ANN on (:func:`~neuromorphic_targets.measured.measured_device`):
        one row each, latency measured here x the power figure given (labelled with its
        source). Needs ``ann`` (or the SNN, whose rate-equivalent ANN is then timed).
    hardware_data:
        ``(x, y)``: run each target's network in the chip's own arithmetic
        (:func:`~neuromorphic_targets.to_hardware`) on the samples ``x`` at every ``T`` of the
        results (their encoding, seed 0); each target row gains ``hardware_accuracy`` on the
        labels ``y`` (``None`` for labels) and takes its activity and energy from that
        simulation. A target the network cannot run on keeps the float simulation's counts
        and the notes say why.
    """
    results = (result,) if isinstance(result, SimulationResult) else tuple(result)
    if ops is not None and not isinstance(ops, OpCount):
        raise TypeError(f"The 'ops' parameter of compare must be a snnedge.OpCount (from "
                        f"snnedge.count_ops or OpCount.from_dict). Got {type(ops).__name__} instead.")
    if not results or not all(isinstance(r, SimulationResult) for r in results):
        raise TypeError("The 'result' parameter of compare must be a snnedge.SimulationResult or "
                        "a list of them (the same network simulated at different T). Got "
                        f"{type(result).__name__} instead.")
    check_real(utilisation, param="utilisation", where="compare", low=0.0, high=1.0, low_open=True)
    accounting = resolve_accounting(accounting, static_scope, "compare")
    measured = list(measured)
    for dev in measured:
        if not isinstance(dev, MeasuredDevice):
            raise TypeError(f"The 'measured' parameter of compare must be a list of "
                            f"MeasuredDevice (measured_device(name, watts, source)). Got "
                            f"{type(dev).__name__} instead.")
    if accuracy_ann is not None:
        check_real(accuracy_ann, param="accuracy_ann", where="compare", low=0.0, high=1.0)
    targets = [targets] if isinstance(targets, str) else list(targets)
    baselines = [baselines] if isinstance(baselines, str) else list(baselines)
    profiles = [get_profile(t) for t in targets]  # unknown names fail here, before any work
    base_profiles = [get_baseline(b) for b in baselines]
    net = _network_of(results[0], snn)
    if net is not None and not isinstance(net, SpikingNetwork):
        raise TypeError(f"The 'snn' parameter of compare must be a snnedge.SpikingNetwork. Got "
                        f"{type(net).__name__} instead.")
    if profiles and net is None:
        raise ValueError("compare needs the simulated network to map it onto the targets: pass "
                         "snn=<the SpikingNetwork you simulated>, or targets=[] to compare only "
                         "the baselines.")
    shape = input_shape if input_shape is not None else (net.input_shape if net is not None else None)
    if shape is None and (profiles or (base_profiles and ann is not None)):
        raise ValueError("compare needs the shape of one input sample: pass input_shape=(1, 28, 28) "
                         "(for example), or build the network with input_shape=...")
    shape = None if shape is None else tuple(int(s) for s in shape)
    ordered = sorted(results, key=lambda r: r.timesteps)

    hw_x, hw_y = hardware_data_pair(hardware_data)
    rows: list[ComparisonRow] = []
    mappings: dict[str, Mapping] = {}
    notes = []
    for prof in profiles:
        m = mappings[prof.name] = map_network(net, prof, input_shape=shape)
        hw_net = on_chip(net, prof, shape, notes) if hw_x is not None else None
        for res in ordered:
            hw_res = None if hw_net is None else simulate(
                hw_net, hw_x, timesteps=res.timesteps, encoding=res.encoding, labels=hw_y,
                progress=False)
            counted = hw_res if hw_res is not None else res
            e = estimate_energy(counted, m, accounting=accounting, input_rate_hz=input_rate_hz)
            per = counted.per_inference()
            rows.append(ComparisonRow(
                name=prof.name, kind="neuromorphic", model="SNN", accuracy=_accuracy(res, y),
                timesteps=res.timesteps, energy_j=e.total_j, energy_complete=e.complete,
                energy_method="static + per-event costs" + (
                    " (on-chip simulation)" if hw_res is not None else ""),
                latency_s=e.latency_s,
                spikes=per["spikes"], synaptic_events=per["synaptic_events"],
                macs=per["input_macs"], cores=m.cores, chips=m.chips, feasible=m.feasible,
                weights_representable=m.weights_representable, missing=tuple(e.missing),
                problems=tuple(m.problems), sources=tuple(e.sources()), estimate=e,
                accounting=accounting,
                hardware_accuracy=None if hw_res is None or hw_y is None else hw_res.accuracy()))

    if base_profiles and ops is None:
        model = ann
        if model is None:
            if net is None:
                raise ValueError("compare needs the ANN (ann=...) or the SNN (snn=...) to count the "
                                 "operations of the baselines.")
            model = RateEquivalentANN(net)
            notes.append("baselines run the SNN's rate-equivalent ANN (neurons as ReLU): no ANN "
                         "was given")
        if shape is None:
            raise ValueError("compare needs input_shape=... to count the ANN's operations.")
        ops = count_ops(model, shape)
    if base_profiles:
        for prof in base_profiles:
            e = estimate_baseline(ops, prof, utilisation=utilisation)
            rows.append(ComparisonRow(
                name=prof.name, kind="baseline", model="ANN", accuracy=accuracy_ann,
                timesteps=None, energy_j=e.total_j, energy_complete=e.complete,
                energy_method=prof.method, latency_s=e.latency_s, spikes=None,
                synaptic_events=None, macs=e.macs, cores=None, chips=None, feasible=True,
                weights_representable=None, missing=tuple(e.missing), problems=(),
                sources=tuple(e.sources()), estimate=e,
                accounting=METHOD_ACCOUNTING[prof.method]))
        notes.append(f"baselines: {ops.macs:,} MACs and {ops.memory_bytes:,} B of 32-bit traffic "
                     f"per inference (count_ops), rescaled to each baseline's precision; "
                     f"utilisation {utilisation:g} of peak throughput; feasibility not checked "
                     f"(weights stream from off-chip DRAM)")
    if measured:
        rows += _measured_rows(measured, ann, net, shape, ops, accuracy_ann, notes)
    if accounting == "throughput":
        notes.append("targets under the throughput accounting: static power charged by the "
                     "share of cores the network occupies for "
                     + ("one input per T ticks" if input_rate_hz is None else
                        f"1 / {input_rate_hz:g} s per inference")
                     + " (chips kept busy with other work); accounting='single' charges whole "
                       "chips for the latency")
    if any(r.macs for r in rows if r.kind == "neuromorphic"):
        notes.append("SNN rows: MACs are the analog input MACs of direct encoding, which the "
                     "targets do not price (an unknown 'input' term)")
    return Comparison(tuple(rows), mappings, ops, tuple(ordered), tuple(notes), accounting)


def _measured_rows(devices: list[MeasuredDevice], ann, net, shape, ops, accuracy_ann,
                   notes: list[str]) -> list[ComparisonRow]:
    """One row per device: the ANN (or the SNN's rate-equivalent ANN) timed there."""
    model = ann if ann is not None else (RateEquivalentANN(net) if net is not None else None)
    if model is None or shape is None:
        raise ValueError("compare(measured=...) times the ANN: pass ann=<the torch.nn.Module> "
                         "(or snn=...) and input_shape=(1, 28, 28) (for example).")
    if ann is None:
        notes.append("measured rows time the SNN's rate-equivalent ANN (neurons as ReLU): no "
                     "ANN was given")
    rows = []
    for dev in devices:
        e = estimate_measured(model, dev, shape, ops=ops)
        rows.append(ComparisonRow(
            name=dev.name, kind="baseline", model="ANN", accuracy=accuracy_ann, timesteps=None,
            energy_j=e.total_j, energy_complete=e.complete, energy_method=e.method,
            latency_s=e.latency_s, spikes=None, synaptic_events=None, macs=e.macs, cores=None,
            chips=None, feasible=True, weights_representable=None, missing=tuple(e.missing),
            problems=(), sources=tuple(e.sources()), estimate=e, accounting=e.accounting))
    notes.append("measured rows: " + "; ".join(
        f"{d.name}: latency timed on this machine's {d.device} (batch {d.batch_size}) x "
        f"{d.power.value} W ({d.power.source})" for d in devices))
    return rows
