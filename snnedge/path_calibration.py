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
one factor per class: the geometric mean of break-even / rule over its probes. A calibrated limit is then
``min(CALIBRATED_CAP, factor x rule)`` (:meth:`Calibration.limit`). :func:`save` keeps it in
a JSON file (:func:`calibration_path`: ``$SNNEDGE_CALIBRATION``, else
``~/.cache/snnedge/path_calibration.json``), one entry per machine (CPU model and the flags
that matter, the kernels' instruction set, torch's version, the thread count), so that one
home folder serves several machines. The command ``snnedge calibrate`` does both.

Engine ``"auto"`` uses this machine's calibration at the current thread count where one is
kept (policy ``"calibrated"``, :mod:`snnedge.path_choice`), and the rule alone otherwise. The
choices then follow the file, not the load at run time: the same in every process on this
machine while the file stays. Between machines they differ, and the two paths add in
different orders, so float32 results can differ in their last bits from a run with the rule
alone; ``SNNEDGE_CALIBRATION=off`` (or ``SNNEDGE_AUTO_PATH=limit``) ignores the file. A file
that cannot be read, or that another version of this module wrote, is not used, with a
warning that says so; ``snnedge calibrate`` writes a new one.
"""
from __future__ import annotations

import functools
import json
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

from .events import (NARROW_INPUT_CHANNELS, apply_synaptic, event_apply, event_density_limit,
                     native_kernel)

#: The probe layers per class: (name, constructor, input shape of one row).
PROBES: dict[str, tuple[tuple[str, object, tuple[int, ...]], ...]] = {
    "conv": (("Conv2d 32->32 3x3, 28x28", lambda: nn.Conv2d(32, 32, 3, padding=1), (32, 28, 28)),
             ("Conv2d 64->128 3x3, 7x7", lambda: nn.Conv2d(64, 128, 3, padding=1), (64, 7, 7))),
    "strided": (("Conv2d 32->32 3x3 stride 2, 28x28", lambda: nn.Conv2d(32, 32, 3, 2, 1), (32, 28, 28)),
                ("Conv2d 64->64 3x3 stride 2, 14x14", lambda: nn.Conv2d(64, 64, 3, 2, 1), (64, 14, 14))),
    "narrow": (("Conv2d 16->16 3x3, 28x28", lambda: nn.Conv2d(16, 16, 3, padding=1), (16, 28, 28)),
               ("Conv2d 16->32 5x5, 14x14", lambda: nn.Conv2d(16, 32, 5, padding=2), (16, 14, 14))),
    "one_by_one": (("Conv2d 64->64 1x1, 14x14", lambda: nn.Conv2d(64, 64, 1), (64, 14, 14)),
                   ("Conv2d 256->64 1x1, 4x4", lambda: nn.Conv2d(256, 64, 1), (256, 4, 4))),
    "linear": (("Linear 1152->128", lambda: nn.Linear(1152, 128), (1152,)),
               ("Linear 256->10", lambda: nn.Linear(256, 10), (256,))),
}
#: The rows of each probe's input: one sample at T = 32, and a block of 4 steps x 100 samples.
ROWS = (32, 400)
#: The densities each probe is timed at (fraction of non-zero inputs).
DENSITIES = (0.005, 0.01, 0.02, 0.04, 0.08, 0.12, 0.16, 0.24, 0.32)
#: The highest limit a calibration gives (its grid's top: no break-even is measured above).
CALIBRATED_CAP = DENSITIES[-1]
#: Each side of one timing runs at least this long (seconds); the ratio is a median over
#: interleaved repeats.
MIN_TIME = 0.01
FILE_VERSION = 3


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
    the compiled kernels' instruction set, torch's version and the thread count."""
    model, flags = _cpu()
    kernel = native_kernel()
    return {"cpu": model, "flags": list(flags),
            "isa": kernel.isa() if kernel is not None else "scipy",
            "torch": torch.__version__.split("+")[0],
            "threads": int(threads or torch.get_num_threads())}


@dataclass
class Calibration:
    """One machine's measured break-evens and the factors fitted to them."""

    machine: dict
    factors: dict[str, float]  # class -> measured break-even / rule (geometric mean)
    break_even: dict[str, float]  # probe -> break-even density (geometric mean over rows)
    ratios: dict[str, list[list[float]]]  # probe -> per row count, dense / event time per density
    densities: list[float] = field(default_factory=lambda: list(DENSITIES))
    rows: list[int] = field(default_factory=lambda: list(ROWS))
    created: str = ""

    def limit(self, module: nn.Module, device: str | torch.device = "cpu") -> float:
        """The density below which the event path is taken for ``module`` on this machine:
        the rule's (:func:`snnedge.events.event_density_limit`) times its class's factor, at
        most ``CALIBRATED_CAP`` (0 where the rule gives 0: no event path there)."""
        rule = event_density_limit(module, device)
        if rule <= 0:
            return 0.0
        return min(CALIBRATED_CAP, rule * self.factors[layer_class(module)])

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
                                f"{n} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
        rows.append("")
        rows.append("factors (break-even / rule): " + ", ".join(
            f"{c} {f:.2f}" for c, f in self.factors.items()))
        return "\n".join(rows)


def break_even(densities, ratios) -> float:
    """The density where dense time / event time falls through 1 (log-interpolated between
    the grid points around the first crossing); half the grid's lowest density where the
    event path never wins, its highest where it always does."""
    if ratios[0] < 1.0:
        return densities[0] / 2
    for (d0, r0), (d1, r1) in zip(zip(densities, ratios), zip(densities[1:], ratios[1:])):
        if r1 < 1.0:
            w = math.log(r0) / (math.log(r0) - math.log(r1))  # r0 >= 1 > r1
            return math.exp(math.log(d0) + w * (math.log(d1) - math.log(d0)))
    return densities[-1]


def _seconds(fn) -> float:
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        spent = time.perf_counter() - start
        if spent >= MIN_TIME:
            return spent / n


def calibrate(rows: Sequence[int] = ROWS, repeats: int = 5, threads: int | None = None,
              progress: bool = True, seed: int = 0) -> Calibration:
    """Time the dense and event paths of the probe layers (:data:`PROBES`) on random binary
    inputs of each count of ``rows`` (the steps x samples of one block: 32 is one sample at
    T = 32, 400 four steps of 100 samples), channels-last as the engines pass them, at each
    density of :data:`DENSITIES`; medians of ``repeats`` interleaved timings, with
    ``threads`` torch threads (default: torch's setting). A probe's break-even is the
    geometric mean of its break-evens over ``rows``. About 20-60 s. The result is this
    machine's :class:`Calibration` (:func:`save` keeps it)."""
    rows = [int(n) for n in ([rows] if isinstance(rows, int) else rows)]
    if not rows or min(rows) < 1 or repeats < 1:
        raise ValueError(f"calibrate needs row counts >= 1 and repeats >= 1. Got rows={rows}, "
                         f"repeats={repeats}.")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    ratios, points, factors = {}, {}, {}
    bar = tqdm(total=sum(map(len, PROBES.values())) * len(DENSITIES) * len(rows), desc="calibrate",
               unit="point", leave=False, disable=not progress)
    try:
        with torch.no_grad():
            for cls, probes in PROBES.items():
                logs = []
                for name, build, shape in probes:
                    layer = build()
                    ratios[name] = [[] for _ in rows]
                    for n, out in zip(rows, ratios[name]):
                        for d in DENSITIES:
                            x = (torch.rand((n, *shape), generator=gen) < d).float()
                            if x.dim() == 4:
                                x = x.contiguous(memory_format=torch.channels_last)
                            dense, event = (lambda: apply_synaptic(layer, x)), (lambda: event_apply(layer, x))
                            dense(), event()  # first-call costs: weight layouts, oneDNN's primitives
                            out.append(statistics.median(
                                _seconds(dense) / _seconds(event) for _ in range(repeats)))
                            bar.update()
                    points[name] = math.exp(statistics.fmean(
                        math.log(break_even(DENSITIES, r)) for r in ratios[name]))
                    logs.append(math.log(points[name] / event_density_limit(layer, "cpu")))
                factors[cls] = math.exp(sum(logs) / len(logs))
    finally:
        bar.close()
        torch.set_num_threads(previous)
    return Calibration(machine(threads or previous), factors, points, ratios, list(DENSITIES),
                       rows, time.strftime("%Y-%m-%d %H:%M:%S"))


def calibration_path() -> Path | None:
    """The calibration file: ``$SNNEDGE_CALIBRATION`` when set (``off``: none), else
    ``$XDG_CACHE_HOME/snnedge/path_calibration.json`` (``~/.cache`` without it)."""
    env = os.environ.get("SNNEDGE_CALIBRATION")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "snnedge" / "path_calibration.json"


def _entries(path: Path) -> list[dict]:
    """The calibrations kept in ``path``; none, with a warning that says what to do, when the
    file cannot be read or was written by another version of this module (engine "auto"
    then falls back to the rule; :func:`save` writes a new file)."""
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
                      f"SNNEDGE_CALIBRATION=off.", stacklevel=3)
        return []


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


_LOADED: dict[tuple, Calibration | None] = {}


def load(path: str | os.PathLike | None = None, threads: int | None = None) -> Calibration | None:
    """This machine's calibration at ``threads`` (default: torch's setting) from the file
    (:func:`calibration_path`, or ``path``), or None where none is kept. Read once per file
    version (its modification time) and thread count."""
    target = Path(path) if path is not None else calibration_path()
    if target is None:
        return None
    here = machine(threads)
    try:
        stamp = target.stat().st_mtime_ns
    except OSError:
        return None
    key = (str(target), stamp, json.dumps(here, sort_keys=True))
    if key not in _LOADED:
        found = [e for e in _entries(target) if e.get("machine") == here]
        try:
            _LOADED[key] = Calibration(**found[-1]) if found else None
        except TypeError as err:  # an entry edited by hand, or cut short
            raise ValueError(f"The calibration file {target} holds a broken entry for this "
                             f"machine ({err}); run 'snnedge calibrate' again to replace it.") from None
    return _LOADED[key]


__all__ = ["PROBES", "ROWS", "DENSITIES", "CALIBRATED_CAP", "Calibration", "layer_class", "machine",
           "break_even", "calibrate", "calibration_path", "save", "load"]
