"""The seed paper's own analysis, redone with snnedge: five ImageNet networks as SNNs on chips.

Xu et al., "Scaling for edge inference of deep neural networks", Nature Electronics 1:216
(2018), doi:10.1038/s41928-018-0059-3, set the operations and memory accesses of AlexNet,
VGG-16, GoogLeNet, ResNet-50 and MobileNet against what edge accelerators offer (their Figs.
3 and 4). :func:`seed_report` asks the spiking question for the same networks::

    from snnedge.cli.seed import seed_report
    rep = seed_report(size=224, samples=2, timesteps=32)
    print(rep.to_markdown())
    rep.plot_ops_vs_performance_density(); rep.plot_memory_vs_energy_efficiency()
    rep.write("seed-report")          # report.md, report.json and the plots

For each network (:mod:`snnedge.cli.seed_models`: torchvision's architecture, or a stand-in
equal to it, random weights, BatchNorm statistics from a few train-mode passes):

1. the ANN's MACs and parameters per inference (:func:`snnedge.count_ops`; at 224 px and
   1000 classes they equal torchvision's own metadata, :data:`TORCHVISION_METADATA`);
2. the converted SNN (:func:`converters.convert`, calibrated on random images) simulated on
   a few more at ``T`` steps: neurons, spikes and synaptic events per inference at the
   measured activity;
3. mapped onto every target: TrueNorth cores (splitter cores included) and chips, DYNAP-SE
   chips and boards, DYNAP-CNN's verdict and its reasons, Loihi chips;
4. energy per inference on every target (both accountings, ``single`` and ``throughput``)
   and on every conventional baseline (the ANN), ``>=`` marking lower bounds
   (:func:`neuromorphic_targets.compare`).

The inputs are standard-normal images (what normalised ImageNet images look like to the
first layer), fed to the SNN as analog currents (``encoding="direct"``): the targets do not
price those first-layer MACs, so every target's energy is a lower bound. The weights are
random, so accuracy is not measured; activity and hardware use are what this report is for.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping as MappingABC, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import check_choice, check_positive_int
from ..ops import OpCount, count_ops
from .report import say, write_report
from .seed_models import DISPLAY_NAMES, SEED_NETWORKS, SOURCES, build_seed_model

#: torchvision's ``Weights.meta`` of the ImageNet weights (224 px, 1000 classes):
#: ``(num_params, _ops in GMACs)``; torchvision 0.29 (``models/alexnet.py``, ``vgg.py``,
#: ``googlenet.py``, ``resnet.py``, ``mobilenetv2.py``).
TORCHVISION_METADATA = {"alexnet": (61_100_840, 0.714), "vgg16": (138_357_544, 15.47),
                        "googlenet": (6_624_904, 1.498), "resnet50": (25_557_032, 4.089),
                        "mobilenet_v2": (3_504_872, 0.301)}
ACCOUNTING_NAMES = ("single", "throughput")


@dataclass(frozen=True)
class SeedRow:
    """One network of the report: its ANN counts, its SNN's activity, mappings and energies.

    ``energies[accounting][row name]`` is ``(joules per inference or None, complete)`` for
    every target (both accountings) and baseline (the same under both); ``mappings[target]``
    is :meth:`neuromorphic_targets.Mapping.to_dict` (cores, chips, boards, feasibility,
    problems, per-layer rows); ``seconds`` times each stage (build, count, convert, simulate,
    map and price)."""

    name: str
    source: str
    input_shape: tuple[int, ...]
    ops: OpCount = field(repr=False)
    neurons: int
    timesteps: int
    samples: int
    spikes: float
    synaptic_events: float
    mappings: dict[str, dict] = field(repr=False)
    energies: dict[str, dict[str, tuple[float | None, bool]]] = field(repr=False)
    seconds: dict[str, float] = field(repr=False)

    @property
    def display_name(self) -> str:
        return DISPLAY_NAMES.get(self.name, self.name)

    @property
    def macs(self) -> int:
        return self.ops.macs // self.ops.batch_size

    @property
    def params(self) -> int:
        return self.ops.params

    def matches_torchvision(self) -> bool | None:
        """Whether MACs and parameters equal torchvision's metadata (``None``: not at
        224 px and 1000 classes, where the metadata does not apply)."""
        ref = TORCHVISION_METADATA.get(self.name)
        if ref is None or tuple(self.input_shape) != (3, 224, 224):
            return None
        return self.params == ref[0] and round(self.macs / 1e9, 3) == round(ref[1], 3)

    def splitter_cores(self, target: str = "truenorth") -> int:
        return sum(r["splitter_cores"] for r in self.mappings[target]["per_layer"])

    def to_dict(self) -> dict:
        return {"network": self.name, "source": self.source, "input_shape": list(self.input_shape),
                "ann": {"macs": self.macs, "params": self.params,
                        "memory_bytes": self.ops.memory_bytes // self.ops.batch_size,
                        "torchvision_metadata": TORCHVISION_METADATA.get(self.name),
                        "matches_torchvision": self.matches_torchvision()},
                "snn": {"neurons": self.neurons, "timesteps": self.timesteps,
                        "samples": self.samples, "spikes_per_inference": self.spikes,
                        "synaptic_events_per_inference": self.synaptic_events},
                "mappings": self.mappings,
                "energy_j": {acc: {k: {"joules": v, "lower_bound": not ok}
                                   for k, (v, ok) in rows.items()}
                             for acc, rows in self.energies.items()},
                "seconds": self.seconds}


def seed_report(networks: Sequence[str] = SEED_NETWORKS, size: int = 224, samples: int = 2,
                calibration: int = 8, timesteps: int = 32, targets: Sequence[str] | None = None,
                baselines: Sequence[str] | None = None, source: str = "auto", seed: int = 0,
                convert_options: MappingABC | None = None, engine: str = "auto",
                progress: bool | Callable[[str], None] = False) -> SeedReport:
    """Build, count, convert, simulate, map and price each of ``networks`` (module docstring).

    Parameters
    ----------
    networks:
        Names from :data:`~snnedge.cli.seed_models.SEED_NETWORKS`.
    size:
        Input height and width in pixels (224: the networks' native size).
    samples, calibration:
        Random images simulated, and random images the conversion is calibrated on.
    timesteps:
        Steps per inference (and the steps the membranes are calibrated for).
    targets, baselines:
        Names of registered neuromorphic profiles and conventional baselines (default:
        every one).
    source:
        ``"auto"``, ``"torchvision"`` or ``"snnedge"`` (:func:`build_seed_model`).
    convert_options:
        More keyword arguments of :func:`converters.convert` (e.g.
        ``{"calibrate_membrane": False}``).
    engine:
        The simulation engine (``snnedge.simulate``'s ``engine``).
    progress:
        ``True`` to print a line per stage on stderr, or a function taking that line.
    """
    from neuromorphic_targets.baselines import BASELINES, get_baseline
    from neuromorphic_targets.profiles import PROFILES, get_profile

    networks = [networks] if isinstance(networks, str) else list(networks)
    for name in networks:
        check_choice(name, SEED_NETWORKS, param="networks", where="seed_report")
    check_choice(source, SOURCES, param="source", where="seed_report")
    for value, param in ((size, "size"), (samples, "samples"), (calibration, "calibration"),
                         (timesteps, "timesteps")):
        check_positive_int(value, param=param, where="seed_report")
    # unknown names fail here, before any network is built
    targets = [get_profile(t).name for t in (PROFILES if targets is None else targets)]
    baselines = [get_baseline(b).name for b in (BASELINES if baselines is None else baselines)]
    tell = say if progress is True else (progress or (lambda _msg: None))
    rows = [_network_row(name, size, samples, calibration, timesteps, targets, baselines, source,
                         seed, dict(convert_options or {}), engine, tell)
            for name in networks]
    notes = ["weights are random (nothing is downloaded): accuracy is not measured",
             f"inputs: standard-normal images, {calibration} for calibration and {samples} "
             f"simulated per network, fed as analog currents (direct encoding)"]
    if convert_options:
        notes.append("convert options: "
                     + ", ".join(f"{k}={v!r}" for k, v in convert_options.items()))
    return SeedReport(tuple(rows), tuple(targets), tuple(baselines), timesteps, size, tuple(notes))


def _network_row(name, size, samples, calibration, timesteps, targets, baselines, source, seed,
                 convert_options, engine, tell) -> SeedRow:
    import snnedge
    from converters import convert
    from neuromorphic_targets.compare import compare
    from neuromorphic_targets.energy import estimate_energy

    clock, seconds = time.perf_counter(), {}

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 2)
        clock = now

    built = build_seed_model(name, size, source, seed=seed)
    lap("build")
    ops = count_ops(built.model, built.input_shape)
    lap("count_ops")
    x = torch.randn(calibration + samples, *built.input_shape,
                    generator=torch.Generator().manual_seed(seed + 1))
    tell(f"{built.display_name}: {ops.macs:,} MACs, {ops.params:,} parameters; converting")
    snn = convert(built.model, calibration=x[:calibration], timesteps=timesteps,
                  seed=seed, **convert_options)
    lap("convert")
    res = snnedge.simulate(snn, x[calibration:], timesteps=timesteps, engine=engine,
                           batch_size=samples, progress=False)
    lap("simulate")
    tell(f"{built.display_name}: simulated in {seconds['simulate']:.1f} s; mapping onto "
         f"{', '.join(targets)}")
    comp = compare(res, snn=snn, ops=ops, targets=targets, baselines=baselines)
    energies = {"single": {}, "throughput": {}}
    for r in comp.rows:
        for acc in ACCOUNTING_NAMES:
            if r.kind != "neuromorphic" or acc == "single":
                energies[acc][r.name] = (r.energy_j, r.energy_complete)
    for target, m in comp.mappings.items():
        e = estimate_energy(res, m, accounting="throughput")
        energies["throughput"][target] = (e.total_j, e.complete)
    mappings = {t: m.to_dict() for t, m in comp.mappings.items()}
    lap("map and price")
    per = res.per_inference()
    tell(f"{built.display_name}: done in {sum(seconds.values()):.1f} s")
    return SeedRow(name, built.source, built.input_shape, ops, sum(res.neurons.values()),
                   timesteps, res.num_samples, per["spikes"], per["synaptic_events"], mappings,
                   energies, seconds)


@dataclass(frozen=True)
class SeedReport:
    """Rows of :func:`seed_report`, its targets, baselines and settings."""

    rows: tuple[SeedRow, ...]
    targets: tuple[str, ...]
    baselines: tuple[str, ...]
    timesteps: int
    size: int
    notes: tuple[str, ...] = ()

    def row(self, name: str) -> SeedRow:
        for r in self.rows:
            if name in (r.name, r.display_name):
                return r
        raise KeyError(f"No network {name!r}; the report has {[r.name for r in self.rows]}.")

    def table(self) -> list[dict]:
        """One plain dict per network (what ``report.json`` holds)."""
        return [r.to_dict() for r in self.rows]

    def to_markdown(self) -> str:
        """Networks and hardware, energy per inference under both accountings, mapping
        verdicts, notes."""
        lines = ["## Networks, activity and hardware", "", *self._structure_table(), "",
                 "TrueNorth cores include the splitter cores that copy spikes to more than one "
                 "core (in brackets). A mapping that does not fit still counts what it would "
                 "occupy; its problems are listed below.", ""]
        for acc in ACCOUNTING_NAMES:
            lines += [f"## Energy per inference, `{acc}` accounting", "",
                      *self._energy_table(acc), ""]
        lines += ["`>=`: a lower bound (a term without a published figure: the analog input "
                  "MACs of direct encoding on every target, and the terms each row's profile "
                  "does not know). Baselines run the ANN and are the same under both "
                  "accountings. `single`: whole chips for the inference's latency (one input "
                  "stream); `throughput`: the share of cores used, chips kept busy.", "",
                  "## Mapping verdicts", ""]
        for r in self.rows:
            for target, m in r.mappings.items():
                lines.append(f"- **{r.display_name} on {target}**: " + _verdict(m))
        lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines)

    def _structure_table(self) -> list[str]:
        head = ["network", "built by", "input", "ANN MACs", "ANN params", "= torchvision",
                "SNN neurons", "T", "spikes / inf.", "synaptic events / inf."]
        cols = {"truenorth": ["TrueNorth cores (splitters)", "TrueNorth chips"],
                "dynap-se": ["DYNAP-SE chips", "DYNAP-SE boards"], "dynap-cnn": ["DYNAP-CNN"],
                "loihi": ["Loihi chips"]}
        extra = [t for t in self.targets if t in cols]
        other = [t for t in self.targets if t not in cols]
        head += [c for t in extra for c in cols[t]] + [f"{t} chips" for t in other]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            match = {True: "yes", False: "NO", None: "-"}[r.matches_torchvision()]
            cells = [r.display_name, r.source, "x".join(map(str, r.input_shape[1:])),
                     f"{r.macs:,}", f"{r.params:,}", match, f"{r.neurons:,}", str(r.timesteps),
                     f"{r.spikes:,.0f}", f"{r.synaptic_events:,.0f}"]
            for t in extra:
                m = r.mappings[t]
                mark = "" if m["feasible"] else " (infeasible)"
                if t == "truenorth":
                    cells += [f"{m['cores']:,} ({r.splitter_cores(t):,}){mark}", f"{m['chips']:,}"]
                elif t == "dynap-se":
                    cells += [f"{m['chips']:,}{mark}", f"{m['boards']:,}"]
                elif t == "dynap-cnn":
                    cells.append("fits" if m["feasible"] else
                                 f"does not fit ({len(m['problems'])} problems)")
                else:
                    cells.append(f"{m['chips']:,}{mark}")
            cells += [f"{r.mappings[t]['chips']:,}" for t in other]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    def _energy_table(self, accounting: str) -> list[str]:
        names = [*self.targets, *self.baselines]
        lines = ["| network | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for r in self.rows:
            rows = r.energies[accounting]
            cells = [_joules(*rows[n]) for n in names]
            lines.append(f"| {r.display_name} | " + " | ".join(cells) + " |")
        return lines

    def gap_models(self) -> tuple[dict[str, float], dict[str, float]]:
        """``({network: ANN MACs}, {network SNN: synaptic events})`` per inference."""
        return ({r.display_name: float(r.macs) for r in self.rows},
                {f"{r.display_name} SNN": r.synaptic_events for r in self.rows
                 if r.synaptic_events > 0})

    def plot_ops_vs_performance_density(self, ax=None, snn: bool = True):
        """The seed's Fig. 3 with these networks: operations per inference against each
        device's operations per joule
        (:func:`~neuromorphic_targets.plots.plot_ops_vs_performance_density`).

        Lines: each ANN's MACs and (``snn``) each SNN's synaptic events at the measured
        activity; columns: each baseline's MACs per joule and each target's synaptic events
        per joule of its marginal energy per event (``1 / e_synop_j``: static power left
        out, so a target's crossing is the event energy alone, a lower bound)."""
        from neuromorphic_targets.baselines import get_baseline
        from neuromorphic_targets.plots import plot_ops_vs_performance_density
        from neuromorphic_targets.profiles import get_profile

        macs, events = self.gap_models()
        devices = {b: get_baseline(b).performance_density("W") for b in self.baselines}
        if snn:
            for t in self.targets:
                e = getattr(get_profile(t), "e_synop_j", None)
                value = e.value if e is not None else None
                devices[f"{t} (events, marginal)"] = 1.0 / value if value else None
        fig = plot_ops_vs_performance_density({**macs, **(events if snn else {})}, devices, ax=ax,
                                              title=f"Operations per inference vs performance "
                                                    f"density ({self.size} px)")
        fig.axes[0].set_xlabel("operations per joule (MAC/J; targets: synaptic events/J)")
        fig.axes[0].set_ylabel("per inference: ANN MACs; SNN synaptic events")
        return fig

    def plot_memory_vs_energy_efficiency(self, ax=None, level=("sram", "dram")):
        """The seed's Fig. 4 with these networks: each ANN's memory traffic per inference
        (weights read once, each layer's input read and output written, 32 bits) against
        each baseline's memory energy efficiency
        (:func:`~neuromorphic_targets.plots.plot_memory_vs_energy_efficiency`)."""
        from neuromorphic_targets.baselines import get_baseline
        from neuromorphic_targets.plots import plot_memory_vs_energy_efficiency

        return plot_memory_vs_energy_efficiency(
            {r.display_name: r.ops for r in self.rows}, [get_baseline(b) for b in self.baselines],
            level=level, ax=ax,
            title=f"Memory traffic vs memory energy efficiency ({self.size} px)")

    def to_dict(self) -> dict:
        return {"size": self.size, "timesteps": self.timesteps, "targets": list(self.targets),
                "baselines": list(self.baselines), "networks": self.table(),
                "notes": list(self.notes)}

    def write(self, out: str | Path) -> Path:
        """Write the report folder ``out`` (``report.md``, ``report.json``, the two gap plots),
        replacing it as a whole in one step."""
        out = Path(out)
        figures = {"ops_vs_performance_density.png": self.plot_ops_vs_performance_density(),
                   "memory_vs_energy_efficiency.png": self.plot_memory_vs_energy_efficiency()}
        title = [f"# The seed's networks as SNNs ({self.size} px, T = {self.timesteps})", "",
                 "Xu et al., Nature Electronics 1:216 (2018), doi:10.1038/s41928-018-0059-3, "
                 "redone with snnedge (`snnedge.cli.seed.seed_report`).", ""]
        write_report(out, self.to_dict(), title + self.to_markdown().splitlines() + [""], figures)
        return out

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def _joules(value: float | None, complete: bool) -> str:
    if value is None:
        return "unknown"
    return ("" if complete else ">= ") + f"{value:.3g} J"


def _verdict(m: dict) -> str:
    where = (f"{m['cores']:,} cores, {m['chips']:,} chip(s)"
             + (f", {m['boards']:,} board(s)" if m.get("boards") is not None else ""))
    if m["feasible"]:
        return f"fits ({where})" + ("" if m["weights_representable"] else
                                    "; weights need quantize_for")
    shown = "; ".join(m["problems"][:3])
    more = len(m["problems"]) - 3
    return f"does not fit ({where} if it did): {shown}" + (f"; and {more} more" if more > 0 else "")


def run_seed(args) -> None:
    """``snnedge seed``: :func:`seed_report` with the command's options, written to ``-o``."""
    from .errors import UsageError

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {str(out)!r} is a file; give a folder for the report.")
    options = {"calibrate_membrane": False} if args.no_membrane_calibration else None
    try:
        rep = seed_report(args.networks, size=args.size, samples=args.samples,
                          calibration=args.calibration, timesteps=args.timesteps,
                          targets=args.targets, baselines=args.baselines, source=args.source,
                          seed=args.seed, convert_options=options, progress=True)
    except (ValueError, KeyError) as e:
        raise UsageError(" ".join(str(e).strip("'\"").split())) from None
    rep.write(out)
    print(rep.to_markdown())
    say(f"wrote {out}/report.md")
