"""Conventional baselines: what the ANN costs on a CPU, GPU, TPU-like or Eyeriss-like processor.

A baseline profile is a frozen dataclass of cited :class:`~neuromorphic_targets.Figure` s, in
the style of the neuromorphic profiles. Its ``method`` says how energy per inference is
computed from the ANN's operation counts (:func:`snnedge.count_ops`):

* ``"energy-table"`` (``cpu``, ``cpu-int8``, also named ``horowitz-45nm-bound`` and
  ``horowitz-45nm-bound-int8``): per-operation energies of a 45 nm process (Horowitz, ISSCC
  2014), an **arithmetic-and-memory lower bound**, not a measurement of a CPU::

      E >= MACs x e_mac_j  +  sum over levels (accesses at that level x e_<level>_access_j)

  The table prices the arithmetic and the data accesses only; instruction fetch and decode,
  control, and caches beyond the table are an unknown ``overhead`` term, so the estimate is
  never complete (``>=``). A real processor spends one to two orders of magnitude more per
  operation (commonly cited from Horowitz's keynote, unverified here); time the ANN on your
  own CPU or GPU (:mod:`~neuromorphic_targets.measured`) for a measured figure. The table stays
  the basis of the gap plots of Xu et al. (2018), as in the seed paper.

  weights and activations each come from one memory level (``weights_from``,
  ``activations_from``; an assumption of the profile, stated in the result), with
  ``accesses = traffic bits / access_bits`` and the traffic from ``count_ops`` (each weight
  read once, each layer's input read and output written once per inference).
* ``"throughput-power"`` (``gpu-jetson-tx2``, ``gpu-v100``, ``tpu-v1``): only the device's
  peak throughput and power are published, so ``E = power_w x latency``. Memory energy is
  inside ``power_w`` when the power figure covers the DRAM (``power_covers_dram``), else an
  extra DRAM term (unknown where no per-access energy is published).
* ``"measured"`` (``eyeriss``): energy per MAC measured on a real workload (chip power /
  MAC rate), which includes the on-chip memory hierarchy, plus off-chip DRAM accesses.

Latency per inference is ``max(MACs / (throughput_macs_per_s x utilisation), DRAM traffic /
dram_bandwidth_bytes_per_s)``: the compute time at a stated utilisation (1.0 = peak, a best
case) or, where the bandwidth is known, the time to stream the DRAM traffic, whichever is
longer. A figure no source gives is unknown, and the estimate says which term is missing
(its total is then a lower bound), as :func:`~neuromorphic_targets.estimate_energy` does.

References
----------
Horowitz, ISSCC 2014, doi:10.1109/ISSCC.2014.6757323; Han et al., NeurIPS 2015, Fig. 1,
arXiv:1506.02626; Chen et al., IEEE JSSC 52:127 (2017), doi:10.1109/JSSC.2016.2616357;
Chen et al., ISSCC 2016, doi:10.1109/ISSCC.2016.7418007; Chen et al., ISCA 2016,
doi:10.1109/ISCA.2016.40; Jouppi et al., ISCA 2017, doi:10.1145/3079856.3080246.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from snnedge.errors import check_choice, check_real
from snnedge.ops import OpCount, count_ops

from .figures import UNITS, Figure, figure_field
from .pricing import (AcceleratorEstimate, EnergyTerm, included, price, sum_priced, unknown,
                      unknown_kinds)
from .profiles import Profile
from .registry import Registry

#: Units a baseline figure may carry: the neuromorphic ones plus throughput, bandwidth, area
#: and dimensionless ratios (``"x"``, relative to the energy of one MAC).
BASELINE_UNITS = UNITS | {"MAC/s", "byte/s", "mm^2", "x"}
METHODS = ("energy-table", "throughput-power", "measured")
LEVELS = ("rf", "sram", "dram")

HOROWITZ = "Horowitz, ISSCC 2014, doi:10.1109/ISSCC.2014.6757323, 45 nm energy table"
HAN = ("Han et al., NeurIPS 2015, arXiv:1506.02626, Fig. 1 (45 nm, 32-bit access energies "
       "after Horowitz 2014)")
EYERISS_JSSC = "Chen et al., IEEE JSSC 52:127 (2017), doi:10.1109/JSSC.2016.2616357, abstract"
EYERISS_ISSCC = "Chen et al., ISSCC 2016, doi:10.1109/ISSCC.2016.7418007, abstract"
EYERISS_ISCA = ("Chen et al., ISCA 2016, doi:10.1109/ISCA.2016.40, normalized energy per data "
                "access (commonly cited)")
JOUPPI = "Jouppi et al., ISCA 2017, doi:10.1145/3079856.3080246"
TX2 = "NVIDIA Jetson TX2 module specifications (secondary sources)"
V100 = "NVIDIA Tesla V100 specifications (secondary sources)"
NO_SOURCE = "unknown: no published figure in our sources"
NO_AREA = "unknown: no die area in our sources"
NO_TABLE = "unknown: only the device's throughput and power are published"
OVERHEAD = ("instruction fetch and decode, control and caches beyond the table: not in a "
            "per-operation energy table, so this is an arithmetic-and-memory lower bound; a "
            "processor spends one to two orders of magnitude more per operation (commonly "
            "cited from Horowitz, ISSCC 2014; unverified). Measure instead: "
            "neuromorphic_targets.measured")

#: Other names of registered baselines: the 45 nm energy table is a lower bound, and these
#: names say so; ``cpu`` and ``cpu-int8`` stay its registered names.
BASELINE_ALIASES: dict[str, str] = {"horowitz-45nm-bound": "cpu",
                                    "horowitz-45nm-bound-int8": "cpu-int8"}

#: What each method's energy per inference is: the ``accounting`` column of a comparison
#: (``neuromorphic_targets.compare``) for baseline rows.
METHOD_ACCOUNTING: dict[str, str] = {
    "energy-table": "ops lower bound",
    "throughput-power": "throughput (peak)",
    "measured": "throughput (measured)",
}


def baseline_field(unit: str, doc: str):
    """A dataclass field holding a :class:`Figure` in ``unit`` (one of :data:`BASELINE_UNITS`)."""
    return figure_field(unit, doc, BASELINE_UNITS)


@dataclass(frozen=True)
class BaselineProfile(Profile):
    """A conventional processor running the ANN: cited figures plus the modelling choices.

    Attributes (plain, not figures)
    -------------------------------
    method:
        ``"energy-table"``, ``"throughput-power"`` or ``"measured"`` (see the module docstring).
    precision:
        Number format of the MACs (``"fp32"``, ``"fp16"``, ``"int16"``, ``"int8"``).
    weights_from, activations_from:
        Memory level (``"rf"``, ``"sram"``, ``"dram"``) that weights and activations are read
        from at batch 1: an assumption, stated in every estimate; change it with
        ``profile.replace(weights_from="sram")``.
    power_covers_dram:
        Whether ``power_w`` includes the off-chip DRAM (module or board power) or not (chip).
    """

    method: str
    precision: str
    weights_from: str
    activations_from: str
    power_covers_dram: bool
    family: ClassVar[str] = "baseline"
    precision_bits: Figure = baseline_field("bit", "bits of each weight and activation")
    e_mac_j: Figure = baseline_field("J", "energy of one multiply-accumulate at this precision")
    throughput_macs_per_s: Figure = baseline_field("MAC/s", "peak MAC rate (measured for Eyeriss)")
    power_w: Figure = baseline_field("W", "device power while computing at that rate")
    access_bits: Figure = baseline_field("bit", "bits moved by one memory access")
    e_rf_access_j: Figure = baseline_field("J", "energy of one register-file access")
    e_sram_access_j: Figure = baseline_field("J", "energy of one on-chip SRAM access")
    e_dram_access_j: Figure = baseline_field("J", "energy of one off-chip DRAM access")
    dram_bandwidth_bytes_per_s: Figure = baseline_field("byte/s", "off-chip memory bandwidth")
    onchip_memory_bytes: Figure = baseline_field("byte", "on-chip memory capacity")
    die_area_mm2: Figure = baseline_field("mm^2", "die area (for performance density)")

    def __post_init__(self):
        super().__post_init__()
        where = f"baseline profile {self.name!r}"
        check_choice(self.method, METHODS, param="method", where=where)
        check_choice(self.weights_from, LEVELS, param="weights_from", where=where)
        check_choice(self.activations_from, LEVELS, param="activations_from", where=where)
        if not isinstance(self.power_covers_dram, bool):
            raise TypeError(f"The 'power_covers_dram' parameter of {where} must be a bool. "
                            f"Got {self.power_covers_dram!r} instead.")
        if not isinstance(self.precision, str) or not self.precision:
            raise ValueError(f"The 'precision' parameter of {where} must be a name such as "
                             f"'fp32' or 'int8'. Got {self.precision!r} instead.")

    def performance_density(self, per: str = "W") -> float | None:
        """MACs per second per watt (= MACs per joule) or per mm^2 of die; ``None`` if unknown.

        ``per="W"``: ``throughput / power`` where both are known, else ``1 / e_mac_j`` (the
        compute-only efficiency of an energy table). ``per="mm^2"``: ``throughput / die area``.
        """
        check_choice(per, ("W", "mm^2"), param="per", where="performance_density")
        rate = self.throughput_macs_per_s.value
        if per == "mm^2":
            area = self.die_area_mm2.value
            return rate / area if rate and area else None
        if rate and self.power_w.value:
            return rate / self.power_w.value
        return 1.0 / self.e_mac_j.value if self.e_mac_j.value else None

    def memory_energy_efficiency(self, level: str = "dram") -> float | None:
        """Bytes moved per joule at memory ``level`` (``access_bits / 8 / e_<level>_access_j``)."""
        check_choice(level, LEVELS, param="level", where="memory_energy_efficiency")
        bits, e = self.access_bits.value, getattr(self, f"e_{level}_access_j").value
        return bits / 8 / e if bits and e else None


@dataclass(frozen=True)
class EyerissProfile(BaselineProfile):
    """Eyeriss-like spatial accelerator (row-stationary dataflow) with its normalized memory
    hierarchy: energy per access relative to one MAC in the PE's ALU (1x)."""

    family: ClassVar[str] = "eyeriss"
    rel_rf_access_x: Figure = baseline_field("x", "register file access / MAC energy")
    rel_pe_access_x: Figure = baseline_field("x", "inter-PE (array) access / MAC energy")
    rel_buffer_access_x: Figure = baseline_field("x", "global buffer access / MAC energy")
    rel_dram_access_x: Figure = baseline_field("x", "DRAM access / MAC energy")


BASELINE_FAMILIES: dict[str, type[BaselineProfile]] = {
    c.family: c for c in (BaselineProfile, EyerissProfile)}


def _cpu(int8: bool) -> BaselineProfile:
    table = HOROWITZ + " (as reproduced by Han et al. 2015, Fig. 1, and Sze et al. 2017)"
    e_mac = Figure(0.23e-12, "J", table, False, "8-bit int multiply 0.2 pJ + add 0.03 pJ",
                   derived=True) if int8 else Figure(
        4.6e-12, "J", table, False, "32-bit float multiply 3.7 pJ + add 0.9 pJ", derived=True)
    no_rate = ("unknown: the energy table gives per-operation energies, not a processor's "
               "throughput")
    return BaselineProfile(
        name="cpu-int8" if int8 else "cpu",
        description=("arithmetic-and-memory lower bound of a 45 nm processor (Horowitz's "
                     "energy table, " + ("8-bit integer" if int8 else "32-bit float")
                     + " MACs): instruction overhead not included, not a CPU measurement"),
        method="energy-table", precision="int8" if int8 else "fp32",
        weights_from="dram", activations_from="sram", power_covers_dram=False,
        precision_bits=Figure(8 if int8 else 32, "bit", table, False),
        e_mac_j=e_mac,
        throughput_macs_per_s=Figure(None, "MAC/s", no_rate),
        power_w=Figure(None, "W", no_rate),
        access_bits=Figure(32, "bit", HAN, False, "32-bit words; 8-bit data packs 4 per access"),
        e_rf_access_j=Figure(1e-12, "J", HAN, False, "32-bit register file"),
        e_sram_access_j=Figure(5e-12, "J", HAN, False,
                               "32-bit SRAM cache; Horowitz's 64-bit reads: 8 KB 10 pJ, 32 KB "
                               "20 pJ, 1 MB 100 pJ"),
        e_dram_access_j=Figure(640e-12, "J", HAN, False,
                               "32-bit DRAM; Horowitz: 1.3-2.6 nJ per 64 bits"),
        dram_bandwidth_bytes_per_s=Figure(None, "byte/s", NO_SOURCE),
        onchip_memory_bytes=Figure(None, "byte", NO_SOURCE),
        die_area_mm2=Figure(None, "mm^2", NO_AREA),
    )


def _throughput_power(name, description, precision, bits, rate, power, source, power_note,
                      covers_dram, **extra) -> BaselineProfile:
    figures = dict(
        precision_bits=Figure(bits, "bit", source, False),
        e_mac_j=Figure(None, "J", NO_TABLE),
        throughput_macs_per_s=rate,
        power_w=Figure(power, "W", source, False, power_note),
        access_bits=Figure(None, "bit", NO_SOURCE),
        e_rf_access_j=Figure(None, "J", NO_TABLE),
        e_sram_access_j=Figure(None, "J", NO_TABLE),
        e_dram_access_j=Figure(None, "J", NO_TABLE),
        dram_bandwidth_bytes_per_s=Figure(None, "byte/s", NO_SOURCE),
        onchip_memory_bytes=Figure(None, "byte", NO_SOURCE),
        die_area_mm2=Figure(None, "mm^2", NO_AREA),
    )
    figures.update(extra)
    return BaselineProfile(name=name, description=description, method="throughput-power",
                           precision=precision, weights_from="dram", activations_from="sram",
                           power_covers_dram=covers_dram, **figures)


def _tx2() -> BaselineProfile:
    return _throughput_power(
        "gpu-jetson-tx2", "NVIDIA Jetson TX2 module, FP32 on the GPU (0.75 TFLOPS, 15 W)",
        "fp32", 32, Figure(0.375e12, "MAC/s", TX2, False,
                           "0.75 TFLOPS FP32 / 2 FLOPs per MAC; FP16 1.5 TFLOPS", derived=True),
        15.0, TX2, "module TDP (SoC and LPDDR4 memory)", True)


def _v100() -> BaselineProfile:
    return _throughput_power(
        "gpu-v100", "NVIDIA Tesla V100, FP32 CUDA cores (15.7 TFLOPS, 300 W)",
        "fp32", 32, Figure(7.85e12, "MAC/s", V100, False,
                           "15.7 TFLOPS FP32 / 2 FLOPs per MAC; tensor cores 125 TFLOPS",
                           derived=True),
        300.0, V100, "board power (GPU and HBM2 memory)", True)


def _tpu() -> BaselineProfile:
    secondary = JOUPPI + " (secondary: reports of the paper)"
    return _throughput_power(
        "tpu-v1", "Google TPU v1, 65,536 8-bit MACs, 92 TOPS peak, 28 MiB on chip, DDR3",
        "int8", 8, Figure(46e12, "MAC/s", JOUPPI + ", abstract", True,
                          "92 TOPS peak / 2 ops per MAC (65,536 MACs x 700 MHz)", derived=True),
        40.0, secondary, "about 40 W busy: the chip, not its DDR3 memory", False,
        dram_bandwidth_bytes_per_s=Figure(34e9, "byte/s", secondary, False,
                                          "DDR3 weight memory"),
        onchip_memory_bytes=Figure(28 * 2**20, "byte", JOUPPI + ", abstract", True,
                                   "28 MiB software-managed"),
    )


def _eyeriss() -> EyerissProfile:
    macs, fps, power = 666e6, 35.0, 0.278
    measured = (f"derived: {EYERISS_JSSC} (AlexNet conv layers 35 frames/s at 278 mW, batch 4) "
                f"and {EYERISS_ISSCC} (666M MACs per 227x227 image)")
    rel = "relative to one MAC; the absolute energy of that MAC is not in our sources"
    return EyerissProfile(
        name="eyeriss", description="Eyeriss (65 nm, 168 PEs, row stationary), measured on "
                                    "AlexNet's conv layers",
        method="measured", precision="int16", weights_from="dram", activations_from="sram",
        power_covers_dram=False,
        precision_bits=Figure(16, "bit", EYERISS_ISSCC, True,
                              "2.3M AlexNet weights take 4.6 MB: 16 bits each", derived=True),
        e_mac_j=Figure(power / (macs * fps), "J", measured, True,
                       "278 mW / (666e6 MACs x 35 /s) = 11.93 pJ per MAC, chip only (RF, PE "
                       "array and global buffer accesses included, DRAM excluded); VGG-16 conv "
                       "layers: 236 mW / (15.3e9 x 0.7 /s) = 22.0 pJ per MAC", derived=True),
        throughput_macs_per_s=Figure(macs * fps, "MAC/s", measured, True,
                                     "measured on AlexNet's conv layers (not a peak): "
                                     "utilisation 1.0 means that rate", derived=True),
        power_w=Figure(power, "W", EYERISS_JSSC, True, "AlexNet conv layers, chip only"),
        access_bits=Figure(16, "bit", EYERISS_ISSCC, True, "one 16-bit word per access",
                           derived=True),
        e_rf_access_j=Figure(None, "J", "unknown: absolute energy not published; included "
                                        "in the measured e_mac_j"),
        e_sram_access_j=Figure(None, "J", "unknown: absolute energy not published; included "
                                          "in the measured e_mac_j"),
        e_dram_access_j=Figure(None, "J", "unknown: only normalized (200x a MAC, "
                                          + EYERISS_ISCA + ", unverified) in our sources",
                               note="JSSC abstract: 0.0029 DRAM accesses per MAC on AlexNet "
                                    "(batch 4), 0.0035 on VGG-16 (batch 3)"),
        dram_bandwidth_bytes_per_s=Figure(None, "byte/s", NO_SOURCE),
        onchip_memory_bytes=Figure(None, "byte", NO_SOURCE),
        die_area_mm2=Figure(None, "mm^2", NO_AREA),
        rel_rf_access_x=Figure(1.0, "x", EYERISS_ISCA, False, rel),
        rel_pe_access_x=Figure(2.0, "x", EYERISS_ISCA, False, rel),
        rel_buffer_access_x=Figure(6.0, "x", EYERISS_ISCA, False, rel),
        rel_dram_access_x=Figure(200.0, "x", EYERISS_ISCA, False, rel),
    )


BASELINE_REGISTRY: Registry[BaselineProfile] = Registry(
    "baseline", BaselineProfile, "get_baseline", "register_baseline", "start from one with "
    "get_baseline('cpu').replace(name=..., ...)",
    (_cpu(False), _cpu(True), _tx2(), _v100(), _tpu(), _eyeriss()))
#: The registered baselines by name.
BASELINES: dict[str, BaselineProfile] = BASELINE_REGISTRY.entries


def get_baseline(name: str | BaselineProfile) -> BaselineProfile:
    """The registered baseline ``name`` (a :class:`BaselineProfile` is returned as is); the
    names of :data:`BASELINE_ALIASES` work too.

    >>> get_baseline("cpu").e_mac_j.value
    4.6e-12
    >>> get_baseline("horowitz-45nm-bound") is get_baseline("cpu")
    True
    """
    if isinstance(name, str) and name in BASELINE_ALIASES and name not in BASELINES:
        name = BASELINE_ALIASES[name]
    return BASELINE_REGISTRY.get(name)


def register_baseline(profile: BaselineProfile, overwrite: bool = False) -> BaselineProfile:
    """Make ``profile`` available to :func:`get_baseline` under its name."""
    return BASELINE_REGISTRY.register(profile, overwrite)


@dataclass(frozen=True)
class BaselineEstimate(AcceleratorEstimate):
    """Joules and seconds per inference of the ANN on a baseline.

    Attributes
    ----------
    profile, method:
        Baseline name and how the energy was computed (see the module docstring).
    total_j:
        Sum of the priced terms; a lower bound when ``complete`` is false (``None`` when no
        term is priced).
    breakdown:
        ``{kind: EnergyTerm}`` (``macs``, ``weights``, ``activations``, ``device``, ``chip``,
        ``dram``, as the method uses them).
    latency_s:
        ``max(compute time, DRAM streaming time)``; ``None`` when the throughput is unknown.
    complete, missing:
        Whether every term is priced or included; the kinds that are unknown.
    macs, weight_bytes, activation_bytes:
        Per inference, at the profile's precision.
    utilisation:
        Fraction of the throughput assumed.
    notes:
        Assumptions made (memory levels, what the power figure covers, memory-bound latency).
    """

    macs: float
    weight_bytes: float
    activation_bytes: float
    precision_bits: int
    utilisation: float
    notes: list[str]


def _traffic(ops: OpCount, bits: int) -> tuple[float, float, float]:
    """``(macs, weight bytes, activation bytes)`` per inference at ``bits`` per element."""
    batch = ops.batch_size
    act_elements = ops.activation_bytes * 8 / ops.precision_bits
    return (ops.macs / batch, ops.params * bits / 8 / batch, act_elements * bits / 8 / batch)


def estimate_baseline(ann: nn.Module | OpCount, profile: str | BaselineProfile,
                      input_shape: tuple[int, ...] | None = None,
                      utilisation: float = 1.0) -> BaselineEstimate:
    """Joules and seconds per inference of ``ann`` on ``profile``.

    Parameters
    ----------
    ann:
        The ANN (counted with :func:`snnedge.count_ops` at the profile's precision) or an
        :class:`~snnedge.OpCount` already made (its traffic is rescaled to the precision).
    profile:
        A registered baseline name (``"cpu"``, ``"cpu-int8"``, ``"gpu-jetson-tx2"``,
        ``"gpu-v100"``, ``"tpu-v1"``, ``"eyeriss"``) or a :class:`BaselineProfile`.
    input_shape:
        One sample's shape, needed when ``ann`` is a module.
    utilisation:
        Fraction of ``throughput_macs_per_s`` sustained, in (0, 1]; 1.0 is the best case.

    Examples
    --------
    >>> from torch import nn
    >>> e = estimate_baseline(nn.Linear(100, 10, bias=False), "cpu", input_shape=(100,))
    >>> # 1,000 MACs x 4.6 pJ + 1,000 weights from DRAM x 640 pJ + 110 activations x 5 pJ
    >>> round(e.total_j * 1e12, 1)
    645150.0
    """
    prof = get_baseline(profile)
    util = check_real(utilisation, param="utilisation", where="estimate_baseline", low=0.0,
                      high=1.0, low_open=True)
    bits = int(prof.precision_bits.value)
    if isinstance(ann, OpCount):
        ops = ann
    elif isinstance(ann, nn.Module):
        if input_shape is None:
            raise ValueError("estimate_baseline needs the shape of one input sample to count the "
                             "ANN's operations: pass input_shape=(1, 28, 28) (for example).")
        ops = count_ops(ann, tuple(input_shape), precision_bits=bits)
    else:
        raise TypeError(f"The 'ann' parameter of estimate_baseline must be a torch.nn.Module or "
                        f"a snnedge.OpCount. Got {type(ann).__name__} instead.")
    macs, w_bytes, a_bytes = _traffic(ops, bits)
    streams = {"weights": (w_bytes, prof.weights_from), "activations": (a_bytes, prof.activations_from)}
    dram_bytes = sum(b for b, level in streams.values() if level == "dram")
    notes = [f"weights read from {prof.weights_from.upper()}, activations from "
             f"{prof.activations_from.upper()} (profile assumption), {bits}-bit data"]

    rate, bw = prof.throughput_macs_per_s.value, prof.dram_bandwidth_bytes_per_s.value
    compute_s = macs / (rate * util) if rate else None
    memory_s = dram_bytes / bw if bw else None
    latency = None if compute_s is None else max(compute_s, memory_s or 0.0)
    if memory_s is not None and compute_s is not None and memory_s > compute_s:
        notes.append(f"memory-bound: streaming {dram_bytes:,.0f} B of DRAM traffic takes "
                     f"{memory_s:.3g} s, longer than the {compute_s:.3g} s of compute")
    if compute_s is not None:
        notes.append(f"compute at {util:g} x {rate:.4g} MAC/s")

    if prof.method == "energy-table":
        compute = price("macs", macs, "MACs", prof, "e_mac_j")
    elif prof.method == "throughput-power":
        compute = price("device", latency, "s", prof, "power_w",
                        "device power x latency" if latency is not None else
                        "throughput unknown: no latency")
        notes.append("energy = device power x latency: memory, static and idle power inside "
                     "power_w" + ("" if prof.power_covers_dram else " (chip only)"))
    else:  # measured
        compute = price("chip", macs, "MACs", prof, "e_mac_j",
                        "measured chip energy per MAC (on-chip memory included)")
    terms = {compute.kind: compute}
    for kind, (nbytes, level) in streams.items():
        if prof.method == "energy-table" or (level == "dram" and not prof.power_covers_dram):
            terms[kind] = _access_term(kind, nbytes, level, prof)
        elif level != "dram":
            terms[kind] = included(kind, f"{compute.kind} ({level.upper()})", nbytes, "bytes")
        else:
            terms[kind] = included(kind, "device power (covers DRAM)", nbytes, "bytes")
    if prof.method == "energy-table":
        terms["overhead"] = unknown("overhead", OVERHEAD)
        notes.append("an arithmetic-and-memory lower bound (45 nm energy table): a processor's "
                     "instruction overhead is not priced")
    missing = unknown_kinds(terms)
    return BaselineEstimate(prof.name, prof.method, sum_priced(terms), terms, latency,
                            not missing, missing, macs, w_bytes, a_bytes, bits, util, notes)


def _access_term(kind: str, nbytes: float, level: str, prof: BaselineProfile) -> EnergyTerm:
    bits = prof.access_bits.value
    key = f"e_{level}_access_j"
    if not bits:
        return price(kind, nbytes, "bytes", prof, key, f"{level.upper()}: {key} unknown")
    accesses = math.ceil(nbytes * 8 / bits)
    return price(kind, accesses, f"{level.upper()} accesses", prof, key,
                 f"{nbytes:,.0f} B / {bits:g}-bit accesses")
