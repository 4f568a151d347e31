"""Measured baselines: the ANN timed on your own CPU or GPU, times a power figure.

The other baselines price the ANN from published figures (:mod:`~neuromorphic_targets.baselines`);
where a device is at hand, its latency can be measured instead::

    E = latency_s / batch_size x power_w        (joules per inference)

``latency_s`` is the median wall-clock time of one forward pass of ``batch_size`` inputs,
timed by :func:`time_inference` (warm-up passes first, under ``torch.no_grad()``, with CUDA
synchronised around each pass). ``power_w`` is a figure you give, with its source: a power
meter's reading, or the package TDP or board power from the vendor's sheet; or a cited figure
of a registered baseline (``power="gpu-jetson-tx2"`` takes its 15 W module TDP). Every row says
which: the estimate is only as good as that figure. A TDP is the package's thermal design
power, not what it draws during this inference (a small network at batch 1 leaves most of a
big device idle, and idle power is part of the bill); the timing includes the framework's
overhead, which that device really spends.

At ``batch_size=1`` this is the ``single`` accounting (one inference on the device, alone);
a larger batch is the device kept busy, the ``throughput`` accounting.
"""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from snnedge.errors import check_positive_int
from snnedge.ops import OpCount, count_ops

from .baselines import get_baseline
from .figures import Figure, check_figure
from .pricing import PRICED, EnergyTerm, PricedEstimate, figure_source, unknown, unknown_kinds

METHOD = "measured-latency"


@dataclass(frozen=True)
class MeasuredDevice:
    """A device the ANN is timed on, and the power charged for that time.

    Attributes
    ----------
    name:
        The row's name (``"my-laptop-cpu"``).
    power:
        Watts, a :class:`~neuromorphic_targets.Figure` whose ``source`` says where the number
        comes from (a meter, a TDP from the vendor's sheet, a cited baseline).
    device:
        Where to time: ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
    batch_size:
        Inputs per timed forward pass; 1 is one inference alone (``single`` accounting).
    """

    name: str
    power: Figure
    device: str = "cpu"
    batch_size: int = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"A MeasuredDevice needs a non-empty name. Got {self.name!r}.")
        check_figure("power", self.power, "W", f"measured device {self.name!r}")
        check_positive_int(self.batch_size, param="batch_size", where="MeasuredDevice")
        try:  # an unknown device string fails here, not after timing
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"The 'device' parameter of MeasuredDevice must be a torch device "
                             f"such as 'cpu', 'cuda' or 'cuda:1'. Got {self.device!r} "
                             f"instead.") from None

    @property
    def accounting(self) -> str:
        """``"single (timed)"`` at batch 1, ``"throughput (timed, batch N)"`` above."""
        return ("single (timed)" if self.batch_size == 1 else
                f"throughput (timed, batch {self.batch_size})")


def measured_device(name: str, power: float | str, source: str | None = None,
                    device: str = "cpu", batch_size: int = 1, note: str = "") -> MeasuredDevice:
    """A :class:`MeasuredDevice` from a number of watts and where it comes from, or from the
    name of a registered baseline whose published power figure is used.

    >>> measured_device("laptop", 15.0, "package TDP, vendor data sheet").power.value
    15.0
    >>> measured_device("tx2", "gpu-jetson-tx2", device="cpu").power.note
    'module TDP (SoC and LPDDR4 memory)'
    """
    if isinstance(power, str):
        fig = get_baseline(power).power_w
        if not fig.known:
            raise ValueError(f"measured_device: baseline {power!r} has no published power "
                             f"figure; give the watts and their source instead.")
        return MeasuredDevice(name, fig, device, batch_size)
    if not source:
        raise ValueError(f"measured_device {name!r}: say where the {power!r} W come from "
                         f"(source='package TDP, vendor data sheet', 'wall meter', ...).")
    return MeasuredDevice(name, Figure(float(power), "W", source, False, note), device, batch_size)


def time_inference(model: nn.Module, input_shape: Sequence[int], device: str = "cpu",
                   batch_size: int = 1, repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds of one forward pass of ``batch_size`` random inputs of ``input_shape``
    through ``model`` on ``device`` (the model is deep-copied there; yours is not moved).

    >>> t = time_inference(nn.Linear(8, 2), (8,), repeats=3, warmup=1)
    >>> t > 0
    True
    """
    check_positive_int(repeats, param="repeats", where="time_inference")
    check_positive_int(batch_size, param="batch_size", where="time_inference")
    dev = torch.device(device)
    net = copy.deepcopy(model).to(dev).eval()
    x = torch.rand(batch_size, *input_shape, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            net(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class MeasuredEstimate(PricedEstimate):
    """Joules per inference of the ANN timed on a device: latency x power.

    Attributes
    ----------
    profile, method:
        The device's name; ``"measured-latency"``.
    total_j, breakdown, complete, missing:
        As in the other estimates; one term, ``device``.
    latency_s:
        Seconds per inference: the timed pass over its batch size.
    macs:
        The ANN's MACs per inference (``None`` when not counted).
    device, batch_size, accounting:
        Where and how it was timed; ``accounting`` as in :attr:`MeasuredDevice.accounting`.
    notes:
        What the figure is and is not.
    """

    profile: str
    method: str
    total_j: float | None
    breakdown: dict[str, EnergyTerm]
    latency_s: float
    complete: bool
    missing: list[str]
    macs: float | None
    device: str
    batch_size: int
    accounting: str
    notes: list[str]

    def table(self) -> str:
        head = (f"{self.profile} ({self.method}, {self.accounting}): {self.headline()}, "
                f"latency {self.latency_s:.4g} s on {self.device}")
        return "\n".join([head] + self.breakdown_lines() + [f"  note: {n}" for n in self.notes])


def estimate_measured(ann: nn.Module, device: MeasuredDevice,
                      input_shape: Sequence[int] | None = None, latency_s: float | None = None,
                      ops: OpCount | None = None, repeats: int = 20) -> MeasuredEstimate:
    """Time ``ann`` on ``device`` (or take ``latency_s``, seconds per forward pass of
    ``device.batch_size`` inputs, measured elsewhere) and charge ``device.power`` for it.

    >>> dev = measured_device("bench", 10.0, "wall meter")
    >>> e = estimate_measured(nn.Linear(8, 2), dev, (8,), latency_s=2e-6)
    >>> round(e.total_j * 1e6, 6)   # 2 us x 10 W
    20.0
    """
    if not isinstance(device, MeasuredDevice):
        raise TypeError(f"estimate_measured expects a MeasuredDevice (measured_device(...)). Got "
                        f"{type(device).__name__}.")
    timed = latency_s is None
    if timed:
        if not isinstance(ann, nn.Module) or input_shape is None:
            raise ValueError(f"estimate_measured {device.name!r} times the ANN: pass the "
                             f"torch.nn.Module and input_shape=(1, 28, 28) (for example), or "
                             f"latency_s measured elsewhere.")
        latency_s = time_inference(ann, input_shape, device.device, device.batch_size, repeats)
    elif not latency_s > 0:
        raise ValueError(f"estimate_measured: latency_s must be positive. Got {latency_s!r}.")
    if ops is None and isinstance(ann, nn.Module) and input_shape is not None:
        ops = count_ops(ann, tuple(input_shape))
    per = latency_s / device.batch_size
    fig = device.power
    if fig.known:
        term = EnergyTerm("device", per, "s", fig.value, "power_w", per * fig.value, PRICED,
                          figure_source(fig), f"timed on {device.device}, batch "
                          f"{device.batch_size}: latency x power")
    else:
        term = unknown("device", f"no power figure for {device.name!r}", per, "s")
    breakdown = {"device": term}
    missing = unknown_kinds(breakdown)
    notes = [f"latency timed by snnedge on this machine's {device.device} (median of {repeats} "
             f"passes of batch {device.batch_size})" if timed else
             f"latency {latency_s:.4g} s per pass of batch {device.batch_size}, given",
             f"power: {fig.value} W from {fig.source}" + (f" ({fig.note})" if fig.note else "")
             + "; a TDP or board power is a rating, not this inference's draw"]
    return MeasuredEstimate(device.name, METHOD, term.joules, breakdown, per, not missing,
                            missing, None if ops is None else ops.macs / ops.batch_size,
                            device.device, device.batch_size, device.accounting,
                            notes)
