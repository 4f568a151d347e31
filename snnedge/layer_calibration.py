"""Engine ``"auto"``'s break-even of a layer measured on the layer's own shape, once per machine.

A calibration (:mod:`snnedge.path_calibration`) times a few probe layers per class and
carries their break-evens over to every layer of the class, by the rule's dependence on the
layer's shape or, for narrow convolutions, by a plane fitted to five probes. Narrow
convolutions (under 32 input channels) follow neither closely: on the EPYC guest without
AVX-512 (examples/benchmarks/RESULTS.md, issue 16 section 17; 2 threads, grid of 9
densities, rows 32 and 400) 3x3 convolutions broke even at 8-13 % from 4 to 24 input channels
and 8 to 32 output channels alike, 5x5 ones at 14 % for 16 -> 16 channels and beyond 32 %
for 16 -> 32. A plane through the probes kept lenet_w8's 8 -> 16 5x5 layer dense at its
trained activity (right: 0.57x on events there) but also lif_heldout's 16 -> 32 5x5 layer
at 25 % input density, where events ran 1.36x faster.

So where engine ``"auto"`` first meets a layer of a class in :data:`MEASURED_CLASSES` on a
CPU, under this machine's calibration, it times a fresh layer of the same geometry (random
weights: the user's layer is not touched) on random binary inputs of the layer's sample
shape, finds its break-even by bisection over the calibration's densities
(:func:`measure_layer`; about 0.5-1 s) and keeps it in the calibration file beside the
probes (:attr:`snnedge.path_calibration.Calibration.layers`, keyed by :func:`layer_key`):
later calls and processes on this machine read it, so choices still follow the file. A
measurement taken while other jobs load the CPU (:func:`snnedge.path_calibration.busy`) serves
this process only, with a warning. ``snnedge calibrate`` writes a calibration that measures
layers as they come; ``SNNEDGE_CALIBRATION=off`` (the rule) measures nothing.
"""
from __future__ import annotations

import math
import statistics
import sys
import time
import warnings

import torch
from torch import nn

from . import path_calibration as pc
from .break_evens import DENSITIES, break_even, first_crossing
from .events import event_density_limit

#: Classes of layers (:func:`snnedge.path_calibration.layer_class`) whose own break-even is
#: measured per shape.
MEASURED_CLASSES = ("narrow",)
#: Values one timing's input holds at most (rows x sample size): a sample of 16 x 112 x 112
#: is timed on 20 rows rather than 400 (4 M values, 16 MB in float32).
LAYER_TIMING_VALUES = 2**22


def measures(cal: pc.Calibration | None, module: nn.Module, device: torch.device | str = "cpu") -> bool:
    """Whether engine ``"auto"`` takes ``module``'s own break-even under ``cal``: a CPU layer of
    a class in :data:`MEASURED_CLASSES` with an event path, and a calibration that measures
    layers (``cal.layers`` not None)."""
    return (cal is not None and cal.layers is not None and torch.device(device).type == "cpu"
            and isinstance(module, (nn.Conv2d, nn.Linear)) and pc.layer_class(module) in MEASURED_CLASSES
            and event_density_limit(module, device) > 0)


def layer_key(module: nn.Module, sample_shape: tuple[int, ...], dtype: torch.dtype) -> str:
    """The signature a layer's own break-even is kept under: its type and geometry, the shape
    of one sample of its input, and the dtype."""
    if isinstance(module, nn.Linear):
        geometry = f"{module.in_features}->{module.out_features}"
    else:
        geometry = (f"{module.in_channels}->{module.out_channels} kernel {module.kernel_size} stride "
                    f"{module.stride} padding {module.padding} dilation {module.dilation}")
    shape = "x".join(map(str, sample_shape))
    return f"{type(module).__name__} {geometry}, input {shape}, {str(dtype).removeprefix('torch.')}"


def _twin(module: nn.Module) -> nn.Module:
    """A fresh layer of ``module``'s geometry (random weights)."""
    if isinstance(module, nn.Linear):
        return nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    return nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                     module.padding, module.dilation, module.groups, bias=module.bias is not None,
                     padding_mode=module.padding_mode)


def measure_layer(module: nn.Module, sample_shape: tuple[int, ...], dtype: torch.dtype = torch.float32,
                  repeats: int = pc.QUICK_REPEATS, seed: int = 0) -> float:
    """The break-even density of a layer of ``module``'s geometry on inputs of one sample of
    ``sample_shape``: a bisection over the calibration's densities
    (:func:`snnedge.break_evens.first_crossing`) at each of the quick calibration's row
    counts (fewer where a timing's input would exceed :data:`LAYER_TIMING_VALUES` values),
    medians of ``repeats`` timings per point, the geometric mean over the row counts."""
    layer = _twin(module).to(dtype)
    numel = math.prod(sample_shape)
    rows = sorted({max(1, min(n, LAYER_TIMING_VALUES // max(numel, 1))) for n in pc.QUICK_ROWS})
    gen = torch.Generator().manual_seed(seed)
    evens = []
    with torch.no_grad():
        for n in rows:
            ratios = first_crossing(lambda i, n=n: pc.time_ratio(layer, (n, *sample_shape), DENSITIES[i],
                                                                 gen, repeats, dtype), len(DENSITIES))
            evens.append(break_even(DENSITIES, ratios))
    return math.exp(statistics.fmean(map(math.log, evens)))


def layer_limit(cal: pc.Calibration, module: nn.Module, sample_shape: tuple[int, ...],
                dtype: torch.dtype = torch.float32) -> float:
    """The density below which engine ``"auto"`` takes ``module``'s event path on inputs of
    one sample of ``sample_shape``: its own break-even kept in ``cal`` (at most
    ``CALIBRATED_CAP``), measured now where ``cal`` has none (:func:`measure_layer`) and kept
    in the calibration file for later calls and processes, unless the CPU was busy meanwhile or
    the file cannot take it (then in ``cal`` for this process, with a warning)."""
    key = layer_key(module, sample_shape, dtype)
    if key not in cal.layers:
        start, began = pc.cpu_times(), time.perf_counter()
        value = measure_layer(module, sample_shape, dtype)
        cal.layers[key] = value
        loaded = pc.busy(start)
        why = f"the CPU was busy while it measured, {loaded}" if loaded else pc.keep_layer(cal, key, value)
        if why is None:
            print(f"snnedge: engine 'auto' timed {key} on this CPU once: break-even {value:.1%} "
                  f"({time.perf_counter() - began:.1f} s), kept in {pc.calibration_path()}",
                  file=sys.stderr, flush=True)
        else:
            warnings.warn(f"Engine 'auto' timed {key} on this CPU (break-even {value:.1%}) but does "
                          f"not keep it ({why}): it serves this process only. Run again on a quiet "
                          f"machine, or set SNNEDGE_CALIBRATION=off for the fitted rule.", stacklevel=3)
    return min(pc.CALIBRATED_CAP, cal.layers[key])


__all__ = ["MEASURED_CLASSES", "LAYER_TIMING_VALUES", "measures", "layer_key", "measure_layer", "layer_limit"]
