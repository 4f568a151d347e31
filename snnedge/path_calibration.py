"""Engine ``"auto"``'s break-even measured on this machine, once, and kept on disk.

``event_density_limit`` (:mod:`snnedge.events`) is a rule fitted on one CPU: below a density
that grows with a layer's work per event, the event path beats the dense one. Where it pays
depends on the CPU as much as on the layer. On an AVX-512 Xeon (the rule's CPU) a 3x3
convolution 16 -> 16 at 28 x 28 broke even at 2-4 % input density; on an AMD EPYC guest
that offers AVX2 and FMA but no AVX-512 (QEMU's "EPYC" model, Zen 1's feature set), where
oneDNN's convolutions are AVX2 ones, near 10 %, and a 1x1 convolution 64 -> 64 that never
broke even on the Xeon still won at 16 % (examples/benchmarks/RESULTS.md, issue 16, section
11). A rule fitted on one of them is off by a factor of 2 to 40 on the other.

:func:`calibrate` times both paths of a few probe layers per class of the rule (3x3
convolutions with 32 or more input channels, strided ones, narrower ones, 1x1 convolutions,
linear layers) over a grid of densities on this CPU, finds each probe's break-even and fits
one factor per class: the geometric mean of break-even / rule over its probes, a break-even
beyond the grid counting as the bound it is (:func:`class_factor`). A calibrated limit is then
``min(CALIBRATED_CAP, factor x rule)`` (:meth:`Calibration.limit`). Narrow convolutions (under
32 input channels) take their break-even from a plane in log input channels and log taps per
stride area fitted to the class's five probes (:data:`BY_SHAPE`, :func:`shape_plane`): on
the EPYC guest 3x3 ones broke even at 8-13 % from 4 to 24 input channels, which the rule's
square law in the channels, times any one factor, cannot follow. Engine ``"auto"`` then
times each narrow convolution it meets on its own shape, once, and keeps that break-even in
the same entry (:attr:`Calibration.layers`, :mod:`snnedge.layer_calibration`); the plane
stands in where a calibration measures no layers. :func:`save` keeps it in
a JSON file (:func:`calibration_path`: ``$SNNEDGE_CALIBRATION``, else
``~/.cache/snnedge/path_calibration.json``), one entry per machine (CPU model and the flags
that matter, the kernels' instruction set and revision, torch's version, the thread count),
so that one home folder serves several machines. The command ``snnedge calibrate`` does both.

Engine ``"auto"`` uses this machine's calibration at the current thread count where one is
kept (policy ``"calibrated"``, :mod:`snnedge.path_choice`), and the rule alone otherwise. The
choices then follow the file, not the load at run time: the same in every process on this
machine while the file stays. Between machines they differ, and the two paths add in
different orders, so float32 results can differ in their last bits from a run with the rule
alone; ``SNNEDGE_CALIBRATION=off`` (or ``SNNEDGE_AUTO_PATH=limit``) ignores the file. A file
that cannot be read, or that another version of this module wrote, is not used, with a
warning that says so; ``snnedge calibrate`` writes a new one.

On a machine without a calibration at the current thread count, the first ``"auto"`` choice
of a CPU layer measures one (:func:`for_auto`): a quicker one than ``snnedge calibrate``'s
(each probe's break-even found by bisection over the density grid, 4 of its 9 points;
medians of 3; about 12 s, against 40-60 s; a line on standard error says so), kept in the
file like the full one, so that later calls and processes reuse it. One measured while other
jobs load the CPU (:func:`busy`) is not kept: it serves its process, with a warning, and the
next process measures again. Processes that start at once measure one after another (a lock
beside the file), and each takes what the first one kept. ``SNNEDGE_CALIBRATION=off`` (the
rule, nothing measured or written) or ``snnedge calibrate`` beforehand (the full
measurement) avoid it. The rule alone missed ``"auto"``'s goal on the CPUs it was not fitted
on (issue 16: ``auto`` up to 1.36x the faster engine on an AVX2 EPYC; 1.09 with the
machine's full calibration, 1.10 with a first-use one, RESULTS.md sections 11 and 12).
"""
from __future__ import annotations

import contextlib
import functools
import json
import sys
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .break_evens import (DENSITIES, TIE, break_even, censoring, class_factor, first_crossing,
                          shape_plane, shape_point)
from .dense_paths import apply_synaptic
from .events import NARROW_INPUT_CHANNELS, NATIVE_REVISION, event_apply, event_density_limit, native_kernel

#: The probe layers per class: (name, constructor, input shape of one row).
PROBES: dict[str, tuple[tuple[str, object, tuple[int, ...]], ...]] = {
    "conv": (("Conv2d 32->32 3x3, 28x28", lambda: nn.Conv2d(32, 32, 3, padding=1), (32, 28, 28)),
             ("Conv2d 64->128 3x3, 7x7", lambda: nn.Conv2d(64, 128, 3, padding=1), (64, 7, 7))),
    "strided": (("Conv2d 32->32 3x3 stride 2, 28x28", lambda: nn.Conv2d(32, 32, 3, 2, 1), (32, 28, 28)),
                ("Conv2d 64->64 3x3 stride 2, 14x14", lambda: nn.Conv2d(64, 64, 3, 2, 1), (64, 14, 14))),
    "narrow": (("Conv2d 16->16 3x3, 28x28", lambda: nn.Conv2d(16, 16, 3, padding=1), (16, 28, 28)),
               ("Conv2d 8->16 3x3, 28x28", lambda: nn.Conv2d(8, 16, 3, padding=1), (8, 28, 28)),
               ("Conv2d 16->16 5x5, 14x14", lambda: nn.Conv2d(16, 16, 5, padding=2), (16, 14, 14)),
               ("Conv2d 8->16 5x5, 14x14", lambda: nn.Conv2d(8, 16, 5, padding=2), (8, 14, 14)),
               ("Conv2d 16->16 3x3 stride 2, 14x14", lambda: nn.Conv2d(16, 16, 3, 2, 1), (16, 14, 14))),
    "one_by_one": (("Conv2d 64->64 1x1, 14x14", lambda: nn.Conv2d(64, 64, 1), (64, 14, 14)),
                   ("Conv2d 256->64 1x1, 4x4", lambda: nn.Conv2d(256, 64, 1), (256, 4, 4))),
    "linear": (("Linear 1152->128", lambda: nn.Linear(1152, 128), (1152,)),
               ("Linear 256->10", lambda: nn.Linear(256, 10), (256,))),
}
#: The rows of each probe's input: one sample at T = 32, and a block of 4 steps x 100 samples.
ROWS = (32, 400)
#: The highest limit a calibration gives (its grid's top: no break-even is measured above).
CALIBRATED_CAP = DENSITIES[-1]
#: Each side of one timing runs at least this long (seconds); the ratio is a median over
#: interleaved repeats.
MIN_TIME = 0.01
FILE_VERSION = 3
#: How the factors are fitted to the probes' break-evens (part of :func:`machine`'s key, so that
#: a calibration fitted otherwise is measured again): 2, bounds taken as bounds
#: (:func:`class_factor`); 3, the narrow class's break-even a plane in log input channels and
#: log taps per stride area (:data:`BY_SHAPE`); 4, narrow layers' own break-evens measured
#: where engine "auto" meets them (:mod:`snnedge.layer_calibration`).
FIT_REVISION = 4
#: The first-use calibration of engine "auto" (:func:`for_auto`): its row counts (the full
#: calibration's) and timings per point; it searches by bisection.
QUICK_ROWS = ROWS
QUICK_REPEATS = 3


def layer_class(module: nn.Module) -> str:
    """The class of the rule ``module`` falls in (``"conv"``, ``"strided"``, ``"narrow"``,
    ``"one_by_one"``, ``"linear"``)."""
    if isinstance(module, nn.Linear):
        return "linear"
    if module.kernel_size[0] * module.kernel_size[1] == 1:
        return "one_by_one"
    if module.in_channels < NARROW_INPUT_CHANNELS:
        return "narrow"
    return "strided" if module.stride[0] * module.stride[1] > 1 else "conv"


@functools.lru_cache(maxsize=1)
def _cpu() -> tuple[str, tuple[str, ...]]:
    """This CPU's model name and the vector extensions among its flags (Linux: from
    /proc/cpuinfo; elsewhere the model from :mod:`platform` alone)."""
    model, flags = None, ()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = tuple(sorted(x for x in value.split() if x.startswith(("avx", "amx", "fma"))))
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def machine(threads: int | None = None) -> dict:
    """What a calibration holds for: the CPU (model name, the vector extensions that matter),
    the compiled kernels' instruction set and revision (:data:`snnedge.events.NATIVE_REVISION`:
    a calibration of earlier kernels is measured again), the revision of the fit
    (:data:`FIT_REVISION`), torch's version and the thread count."""
    model, flags = _cpu()
    kernel = native_kernel()
    return {"cpu": model, "flags": list(flags),
            "isa": kernel.isa() if kernel is not None else "scipy",
            "kernels": NATIVE_REVISION if kernel is not None else 0,
            "fit": FIT_REVISION,
            "torch": torch.__version__.split("+")[0],
            "threads": int(threads or torch.get_num_threads())}


#: Classes whose factor follows the input channels between their two probes (in the log of
#: both) instead of one factor for the class. The rule weights a 1x1 convolution's work per
#: event by (in / 128)^2, at most 4 (snnedge.events), a dependence fitted on one CPU: on the
#: EPYC guest without AVX-512 (examples/benchmarks/RESULTS.md, issue 16 section 13) the
#: 64-channel probe broke even at 13.5-13.9x its rule and the 256-channel one at 2.5x, and
#: their geometric mean (5.8-5.9) put MobileNetV2's projections from 384 and 576 channels on
#: events up to 32% density where they broke even near 16% (its "auto" ran 1.12x the dense
#: engine in one run).
BY_INPUT_CHANNELS = ("one_by_one",)
#: Classes whose break-even is a plane in the log of the input channels and the log of the
#: taps per stride step (kernel area / stride area), fitted by least squares to the class's
#: probes, instead of the rule times one factor (:func:`shape_plane`). The rule's narrow
#: convolutions break even at a density that grows with output channels x taps and falls with
#: the square of the input channels (fitted on an AVX-512 Xeon). On the EPYC guest without
#: AVX-512 (RESULTS.md, issue 16 section 17; 2 threads, grid of 9 densities, rows 32 and 400)
#: 3x3 convolutions broke even at 8-13 % from 4 to 24 input channels and 8 to 32 output
#: channels alike (rule x 2 to x 163), stride-2 ones near 6 %, 5x5 ones at 14-21 %: one factor
#: of the rule kept interop_cnn's Conv2d 8 -> 16 3x3 dense at 3.4 % where it ran 1.8x faster
#: on events, and a factor measured at 8 channels put lenet_w8's 8 -> 16 5x5 on events at
#: 22.5 %, where it ran 0.59x dense.
BY_SHAPE = ("narrow",)


@functools.lru_cache(maxsize=None)
def _probe_layers(cls: str) -> tuple[tuple[str, nn.Module], ...]:
    return tuple((name, build()) for name, build, _ in PROBES[cls])


def _probe_rules(cls: str) -> list[tuple[str, int, float]]:
    """``(name, input channels, the rule's limit now)`` of each probe of class ``cls``."""
    return [(name, layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels,
             event_density_limit(layer, "cpu")) for name, layer in _probe_layers(cls)]


@dataclass
class Calibration:
    """One machine's measured break-evens and the factors fitted to them."""

    machine: dict
    factors: dict[str, float]  # class -> measured break-even / rule (geometric mean; see factor())
    break_even: dict[str, float]  # probe -> break-even density (geometric mean over rows)
    ratios: dict[str, list[list[float | None]]]  # probe -> per row count, dense / event time
    # per density (None: a density the bisection did not visit)
    densities: list[float] = field(default_factory=lambda: list(DENSITIES))
    rows: list[int] = field(default_factory=lambda: list(ROWS))
    created: str = ""
    search: str = "grid"  # "grid": every density timed; "bisection": the first crossing's
    seconds: float = 0.0  # how long the measurement took
    # layer signature (snnedge.layer_calibration.layer_key) -> that layer's own break-even,
    # measured where engine "auto" first met it (None: this calibration measures none)
    layers: dict[str, float] | None = None

    def limit(self, module: nn.Module, device: str | torch.device = "cpu", large: bool = False) -> float:
        """The density below which the event path is taken for ``module`` on this machine:
        the rule's (:func:`snnedge.events.event_density_limit`, ``large`` passed on) times
        :meth:`factor`, at most ``CALIBRATED_CAP`` (0 where the rule gives 0: no event path
        there)."""
        rule = event_density_limit(module, device, large)
        if rule <= 0:
            return 0.0
        return min(CALIBRATED_CAP, rule * self.factor(module))

    def factor(self, module: nn.Module) -> float:
        """Measured break-even / rule for ``module``: its class's factor; for the classes of
        ``BY_INPUT_CHANNELS``, the two probes' own factors interpolated in the log of the
        input channels (the nearer probe's beyond them); for those of ``BY_SHAPE``, the
        break-even of the class's :func:`shape_plane` at ``module``'s shape over its rule."""
        cls = layer_class(module)
        if cls in BY_SHAPE:
            plane = self.plane(cls)
            rule = event_density_limit(module, "cpu")
            if plane is None or rule <= 0:
                return self.factors[cls]
            return plane(shape_point(module)) / rule
        if cls not in BY_INPUT_CHANNELS:
            return self.factors[cls]
        points = sorted((c, math.log(self.break_even[name] / rule))
                        for name, c, rule in _probe_rules(cls) if self.break_even.get(name, 0) > 0)
        if len(points) != 2 or points[0][0] == points[1][0]:
            return self.factors[cls]
        (c0, f0), (c1, f1) = points
        t = (math.log(module.in_channels) - math.log(c0)) / (math.log(c1) - math.log(c0))
        return math.exp(f0 + min(1.0, max(0.0, t)) * (f1 - f0))

    def plane(self, cls: str):
        """The :func:`shape_plane` of class ``cls``'s probes (kept while their break-evens
        stay as they are)."""
        points = tuple((shape_point(layer), self.break_even.get(name, 0.0))
                       for name, layer in _probe_layers(cls))
        planes = self.__dict__.setdefault("_planes", {})  # not a field: not saved
        if points not in planes:
            planes[points] = shape_plane(points)
        return planes[points]

    def table(self) -> str:
        """The measured ratios and break-evens as a Markdown table."""
        head = "| probe | class | rule | break-even | rows | " + " | ".join(
            f"{d:.1%}" for d in self.densities) + " |"
        rows = [head, "|---" * (5 + len(self.densities)) + "|"]
        for cls, probes in PROBES.items():
            for name, build, _ in probes:
                rule = event_density_limit(build(), "cpu")
                for n, ratios in zip(self.rows, self.ratios[name]):
                    rows.append(f"| {name} | {cls} | {rule:.1%} | {self.break_even[name]:.1%} | "
                                f"{n} | " + " | ".join("-" if r is None else f"{r:.2f}"
                                                       for r in ratios) + " |")
        if self.layers:
            rows += ["", "| layer met by engine 'auto' | its own break-even |", "|---|---|"]
            rows += [f"| {key} | {value:.1%} |" for key, value in sorted(self.layers.items())]
        rows.append("")
        rows.append("factors (break-even / rule): " + self.summary())
        return "\n".join(rows)

    def summary(self) -> str:
        """One line: each class's factor, and for the classes of ``BY_SHAPE`` the break-even
        of a 16 -> 16 3x3 convolution and the exponents of their plane."""
        parts = []
        for cls, f in self.factors.items():
            plane = self.plane(cls) if cls in BY_SHAPE else None
            if plane is not None:
                b, c = plane.exponents
                parts.append(f"{cls} {self.limit(nn.Conv2d(16, 16, 3)):.1%} at 16 -> 16 3x3, "
                             f"x (in / 16)^{b:.2f} x (taps / stride area / 9)^{c:.2f}")
            else:
                parts.append(f"{cls} {f:.2f}")
        return ", ".join(parts)


def _seconds(fn) -> float:
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        spent = time.perf_counter() - start
        if spent >= MIN_TIME:
            return spent / n


def time_ratio(layer: nn.Module, shape: tuple[int, ...], density: float, gen: torch.Generator,
               repeats: int, dtype: torch.dtype = torch.float32) -> float:
    """Dense time / event time of ``layer`` on random binary inputs of ``shape`` (rows first;
    channels-last where 4-d, as the engines pass them) with ``density`` non-zero: the median
    of ``repeats`` interleaved timings, after one untimed call of each path (first-call
    costs: weight layouts, oneDNN's primitives)."""
    x = (torch.rand(shape, generator=gen) < density).to(dtype)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    dense, event = (lambda: apply_synaptic(layer, x)), (lambda: event_apply(layer, x))
    dense(), event()
    return statistics.median(_seconds(dense) / _seconds(event) for _ in range(repeats))


def calibrate(rows: Sequence[int] = ROWS, repeats: int = 5, threads: int | None = None,
              progress: bool | None = True, seed: int = 0, search: str = "grid") -> Calibration:
    """Time the dense and event paths of the probe layers (:data:`PROBES`) on random binary
    inputs of each count of ``rows`` (the steps x samples of one block: 32 is one sample at
    T = 32, 400 four steps of 100 samples), channels-last as the engines pass them, at each
    density of :data:`DENSITIES` (``search="grid"``) or at those a bisection for the first
    crossing of 1 visits (``"bisection"``, :func:`first_crossing`: 3-4 of the 9); medians of
    ``repeats`` interleaved timings, with ``threads`` torch threads (default: torch's
    setting). A probe's break-even is the geometric mean of its break-evens over ``rows``.
    About 20-60 s on the grid. ``progress``: a progress bar (None: on a terminal only). The
    result is this machine's :class:`Calibration` (:func:`save` keeps it)."""
    rows = [int(n) for n in ([rows] if isinstance(rows, int) else rows)]
    if not rows or min(rows) < 1 or repeats < 1:
        raise ValueError(f"calibrate needs row counts >= 1 and repeats >= 1. Got rows={rows}, "
                         f"repeats={repeats}.")
    if search not in ("grid", "bisection"):
        raise ValueError(f"The 'search' parameter of calibrate must be 'grid' or 'bisection'. "
                         f"Got {search!r} instead.")
    previous, start = torch.get_num_threads(), time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    ratios, points, factors = {}, {}, {}
    per_probe = len(DENSITIES) if search == "grid" else math.ceil(math.log2(len(DENSITIES) + 1))
    bar = tqdm(total=sum(map(len, PROBES.values())) * per_probe * len(rows), desc="calibrate",
               unit="point", leave=False, disable=None if progress is None else not progress)

    def ratio(layer, shape, n, i) -> float:
        r = time_ratio(layer, (n, *shape), DENSITIES[i], gen, repeats)
        bar.update()
        return r

    try:
        with torch.no_grad():
            for cls, probes in PROBES.items():
                logs, bounds = [], []
                for name, build, shape in probes:
                    layer = build()
                    measure = [functools.partial(ratio, layer, shape, n) for n in rows]
                    ratios[name] = [[m(i) for i in range(len(DENSITIES))] if search == "grid"
                                    else first_crossing(m, len(DENSITIES)) for m in measure]
                    evens = [break_even(DENSITIES, r) for r in ratios[name]]
                    points[name] = math.exp(statistics.fmean(math.log(e) for e in evens))
                    logs.append(math.log(points[name] / event_density_limit(layer, "cpu")))
                    bounds.append(censoring(evens))
                factors[cls] = class_factor(logs, bounds)
    finally:
        bar.close()
        torch.set_num_threads(previous)
    return Calibration(machine(threads or previous), factors, points, ratios, list(DENSITIES),
                       rows, time.strftime("%Y-%m-%d %H:%M:%S"), search,
                       round(time.perf_counter() - start, 2), layers={})


def calibration_path() -> Path | None:
    """The calibration file: ``$SNNEDGE_CALIBRATION`` when set (``off``: none), else
    ``$XDG_CACHE_HOME/snnedge/path_calibration.json`` (``~/.cache`` without it)."""
    env = os.environ.get("SNNEDGE_CALIBRATION")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "snnedge" / "path_calibration.json"


def _read(path: Path) -> list[dict] | None:
    """The calibrations kept in ``path`` ([] where there is no file); None, with a warning
    that says what to do, when the file cannot be read or was written by another version of
    this module (engine "auto" then falls back to the rule; :func:`save` writes a new
    file)."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
            raise ValueError(f"not a version-{FILE_VERSION} snnedge calibration")
        return [e for e in data.get("machines", []) if isinstance(e, dict)]
    except (OSError, ValueError) as err:
        warnings.warn(f"The calibration file {path} is not used ({err}): engine 'auto' takes the "
                      f"fitted rule. Run 'snnedge calibrate' to write a new one, or set "
                      f"SNNEDGE_CALIBRATION=off.", stacklevel=4)
        return None


def _entries(path: Path) -> list[dict]:
    return _read(path) or []


def save(cal: Calibration, path: str | os.PathLike | None = None) -> Path:
    """Keep ``cal`` in the calibration file (:func:`calibration_path`, or ``path``), in place
    of an earlier one for the same machine; returns the file's path."""
    target = Path(path) if path is not None else calibration_path()
    if target is None:
        raise ValueError("SNNEDGE_CALIBRATION=off: no calibration file to write; pass a path "
                         "or unset SNNEDGE_CALIBRATION.")
    kept = [e for e in _entries(target) if e.get("machine") != cal.machine]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"version": FILE_VERSION, "machines": kept + [asdict(cal)]}, indent=1))
    os.replace(tmp, target)  # atomic: a process reading it never sees half a file
    _LOADED.clear()
    return target


def keep_layer(cal: Calibration, key: str, value: float) -> str | None:
    """Add a layer's own break-even (``key: value``, :mod:`snnedge.layer_calibration`) to the
    layers of ``cal``'s machine entry in the calibration file, under its lock; why not, where
    it cannot (else None)."""
    target = calibration_path()
    if target is None:
        return "SNNEDGE_CALIBRATION=off"
    try:
        with _locked(target):
            found = [e for e in _read(target) or () if e.get("machine") == cal.machine]
            if not found:
                return f"{target} holds no calibration for this machine"
            kept = Calibration(**found[-1])
            kept.layers = {**(kept.layers or {}), key: value}
            save(kept, target)
    except (OSError, TypeError) as err:
        return str(err)
    return None


# (file, its modification time, machine) -> its calibration, None (none kept for this
# machine) or False (the file cannot be read, or another version wrote it)
_LOADED: dict[tuple, Calibration | None | bool] = {}
# machine -> a first-use calibration this process measured but could not keep in a file
_UNKEPT: dict[str, Calibration] = {}


def _lookup(target: Path, threads: int | None) -> Calibration | None | bool:
    here = machine(threads)
    try:
        stamp = target.stat().st_mtime_ns
    except OSError:
        return None
    key = (str(target), stamp, json.dumps(here, sort_keys=True))
    if key not in _LOADED:
        entries = _read(target)
        found = [e for e in entries or () if e.get("machine") == here]
        try:
            if entries is None:
                _LOADED[key] = False
            else:
                _LOADED[key] = Calibration(**found[-1]) if found else None
        except TypeError as err:  # an entry edited by hand, or cut short
            raise ValueError(f"The calibration file {target} holds a broken entry for this "
                             f"machine ({err}); run 'snnedge calibrate' again to replace it.") from None
    return _LOADED[key]


def load(path: str | os.PathLike | None = None, threads: int | None = None) -> Calibration | None:
    """This machine's calibration at ``threads`` (default: torch's setting) from the file
    (:func:`calibration_path`, or ``path``), or None where none is kept. Read once per file
    version (its modification time) and thread count."""
    target = Path(path) if path is not None else calibration_path()
    found = _lookup(target, threads) if target is not None else None
    return found or None


@contextlib.contextmanager
def _locked(target: Path):
    """Hold an exclusive lock beside ``target`` (where the platform has ``fcntl`` and the
    folder can be written; else no lock)."""
    try:
        import fcntl
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(target.with_name(target.name + ".lock"), "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: Other processes' share of the machine's CPUs, while a first-use calibration measured,
#: above which it is not kept (:func:`busy`).
BUSY_SHARE = 0.25


def cpu_times() -> tuple[float, float, float] | None:
    """Now: (wall seconds, CPU seconds of every process on the machine, CPU seconds of this
    one), from ``/proc/stat`` (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        per_s = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    own = os.times()
    # user nice system idle iowait irq softirq steal: all but idle and iowait are work
    return time.monotonic(), (sum(ticks) - ticks[3] - ticks[4]) / per_s, own.user + own.system


def busy(since: tuple[float, float, float] | None = None) -> str | None:
    """Why timings taken since ``since`` (:func:`cpu_times`) were not this machine's own: a
    note when other processes used more than :data:`BUSY_SHARE` of its CPUs meanwhile; with
    no ``since`` (or no ``/proc/stat``), when the 1-minute load average exceeds the cores
    this process may use by more than one. None otherwise, or where neither can be read."""
    now = cpu_times() if since is not None else None
    if now is not None and now[0] > since[0]:
        share = ((now[1] - since[1]) - (now[2] - since[2])) / ((now[0] - since[0]) * (os.cpu_count() or 1))
        return f"other processes used {share:.0%} of the CPUs" if share > BUSY_SHARE else None
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return f"load average {load:.1f} on {cores} core(s)" if load > cores + 1 else None


def for_auto(threads: int | None = None, progress: bool | None = None) -> Calibration | None:
    """This machine's calibration for engine ``"auto"`` at ``threads`` (default: torch's
    setting): the one kept in the file; where none is, one measured now, the quick way
    (:data:`QUICK_ROWS`, :data:`QUICK_REPEATS`, bisection; a line on standard error says so;
    ``progress``: its bar, None: on a terminal only) and kept in the file for later calls and
    processes. None where the file is off (``SNNEDGE_CALIBRATION=off``) or cannot be read (the
    rule then, with a warning). A calibration measured while other jobs load the CPU
    (:func:`busy`), or where the file cannot be written, serves this process only, with a
    warning: the next process measures again. Processes that get here at once take turns (a
    lock beside the file): the first measures, the others read what it kept."""
    target = calibration_path()
    if target is None:
        return None
    found = _lookup(target, threads)
    if found is not None:
        return found or None
    m = machine(threads)
    here = json.dumps(m, sort_keys=True)
    if here in _UNKEPT:
        return _UNKEPT[here]
    with _locked(target):
        found = _lookup(target, threads)  # kept meanwhile by another process?
        if found is not None:
            return found or None
        print(f"snnedge: engine 'auto' has no calibration for this CPU ({m['cpu']}, kernels "
              f"{m['isa']}) at {m['threads']} thread(s); measuring one now, once (about 12 s; "
              f"'snnedge calibrate' measures a fuller one, SNNEDGE_CALIBRATION=off keeps the "
              f"fitted rule).", file=sys.stderr, flush=True)
        start = cpu_times()
        cal = calibrate(rows=QUICK_ROWS, repeats=QUICK_REPEATS, threads=threads,
                        progress=progress, search="bisection")
        loaded = busy(start)
        why = f"the CPU was busy while it measured, {loaded}" if loaded else None
        if why is None:
            try:
                save(cal, target)
            except OSError as err:
                why = str(err)
        if why is not None:
            warnings.warn(f"Engine 'auto' measured this machine's calibration but does not keep it "
                          f"in {target} ({why}): it serves this process only, and the next one "
                          f"measures again. Run 'snnedge calibrate' when the machine is quiet, set "
                          f"SNNEDGE_CALIBRATION to a file that can be written, or to 'off' for the "
                          f"fitted rule.", stacklevel=2)
            _UNKEPT[here] = cal
            return cal
        print(f"snnedge: calibrated in {cal.seconds:.1f} s, kept in {target} (factors: " +
              cal.summary() + ")",
              file=sys.stderr, flush=True)
        return cal


__all__ = ["time_ratio", "BY_SHAPE", "shape_point", "shape_plane", "censoring", "class_factor", "TIE", "FIT_REVISION", "PROBES", "ROWS", "DENSITIES", "CALIBRATED_CAP", "Calibration", "layer_class", "machine",
           "QUICK_ROWS", "QUICK_REPEATS", "break_even", "first_crossing", "calibrate",
           "BUSY_SHARE", "calibration_path", "save", "keep_layer", "load", "cpu_times", "busy", "for_auto"]
