"""Break-evens from timings: where the event path stops beating the dense one.

:mod:`snnedge.path_calibration` times both paths of probe layers over a grid of input
densities; the functions here turn those ratios into break-even densities
(:func:`break_even`, :func:`first_crossing` for a bisection over the grid), say which of them
are bounds rather than values (:func:`censoring`), and fit them across probes: one factor of
the rule per class (:func:`class_factor`) or, for narrow convolutions, a plane in log input
channels and log taps per stride area (:func:`shape_plane` at :func:`shape_point`).
"""
from __future__ import annotations

import math
import statistics

import torch
from torch import nn

#: The densities each probe is timed at (fraction of non-zero inputs).
DENSITIES = (0.005, 0.01, 0.02, 0.04, 0.08, 0.12, 0.16, 0.24, 0.32)
#: A probe whose event path is less than this much faster at the grid's lowest density never
#: wins (its break-even: half that density). Tiny layers, such as Linear 256 -> 10, time
#: within a few percent of 1 at every low density: their first crossing is noise, and
#: moved a class's factor by up to 2x between runs on one machine.
TIE = 0.05


def shape_point(module: nn.Conv2d) -> tuple[float, float]:
    """``(log input channels, log taps per stride step)`` of a convolution: the coordinates of
    :func:`shape_plane`."""
    taps = module.kernel_size[0] * module.kernel_size[1] / (module.stride[0] * module.stride[1])
    return math.log(module.in_channels), math.log(taps)


def shape_plane(points):
    """The break-even as a function of :func:`shape_point`, from ``(point, break-even)`` pairs
    of a class's probes: ``log break-even = a + b log(in) + c log(taps / stride area)``, fitted
    by least squares; a point outside the probes' range of either coordinate is taken to the
    nearest end of it first (no extrapolation). A break-even beyond the grid enters as the
    bound it is (it lowers the plane there: towards the dense path). None where the probes do
    not span a plane (fewer than three with a break-even, or all on one line)."""
    pts = [(u, v, math.log(e)) for (u, v), e in points if e > 0]
    if len(pts) < 3:
        return None
    a = torch.tensor([[1.0, u, v] for u, v, _ in pts], dtype=torch.float64)
    if torch.linalg.matrix_rank(a) < 3:
        return None
    coef = torch.linalg.lstsq(a, torch.tensor([[w] for *_, w in pts], dtype=torch.float64)).solution[:, 0]
    (u0, u1), (v0, v1) = ((min(c), max(c)) for c in zip(*[(u, v) for u, v, _ in pts]))

    def plane(point: tuple[float, float]) -> float:
        u, v = min(u1, max(u0, point[0])), min(v1, max(v0, point[1]))
        return math.exp(float(coef[0] + coef[1] * u + coef[2] * v))
    plane.exponents = (float(coef[1]), float(coef[2]))  # of input channels, of taps / stride area
    return plane


def break_even(densities, ratios) -> float:
    """The density where dense time / event time falls through 1 (log-interpolated between
    the timed points around the first crossing; ``None`` ratios, densities not timed, are
    skipped); half the grid's lowest density where the event path never wins (not by
    :data:`TIE` at the lowest density), its highest where it always does."""
    timed = [(d, r) for d, r in zip(densities, ratios) if r is not None]
    if not timed:
        raise ValueError("break_even needs at least one timed density; every ratio is None.")
    low, top = densities[0], densities[-1]
    densities, ratios = [d for d, _ in timed], [r for _, r in timed]
    if densities[0] == low and ratios[0] < 1.0 + TIE:
        return low / 2
    if ratios[0] < 1.0:
        raise ValueError(f"the event path lost at the lowest density timed, "
                         f"{densities[0]:.1%}, which is not the grid's lowest ({low:.1%}).")
    for (d0, r0), (d1, r1) in zip(zip(densities, ratios), zip(densities[1:], ratios[1:])):
        if r1 < 1.0:
            w = math.log(r0) / (math.log(r0) - math.log(r1))  # r0 >= 1 > r1
            return math.exp(math.log(d0) + w * (math.log(d1) - math.log(d0)))
    return top


def censoring(evens: list[float]) -> int:
    """Whether a probe's break-evens (one per row count, from :func:`break_even` on the grid
    ``DENSITIES``) are bounds: 1 where the event path still won at the grid's top density for
    some row count (the break-even lies at or above it), -1 where it never won for some (at or
    below half the lowest), 0 where every one was measured (or both happened)."""
    high = any(e >= DENSITIES[-1] for e in evens)
    low = any(e <= DENSITIES[0] / 2 for e in evens)
    return 0 if high == low else (1 if high else -1)


def class_factor(logs: list[float], bounds: list[int]) -> float:
    """A class's factor from its probes' ``log(break-even / rule)`` and :func:`censoring`
    flags: the geometric mean, where a lower bound (1) counts as the mean of the measured
    probes if that is larger, and an upper bound (-1) as that mean if it is smaller. A bound
    is not a value: on the EPYC guest the narrow class's Conv2d 16->32 5x5 probe won on events
    at every density timed (its factor, >= 4.8, a lower bound) beside Conv2d 16->16 3x3's
    measured 9.6, and their plain mean, 6.8, kept lenet_w8's 8 -> 16 5x5 layer dense at 6.4 %
    input density where it ran 1.28x faster on events (RESULTS.md, issue 16 section 16)."""
    measured = [v for v, b in zip(logs, bounds) if b == 0]
    if measured:
        mean = statistics.fmean(measured)
        logs = [v if b == 0 else max(v, mean) if b > 0 else min(v, mean) for v, b in zip(logs, bounds)]
    return math.exp(statistics.fmean(logs))


def first_crossing(measure, count: int) -> list[float | None]:
    """The ratios a bisection for the first crossing of 1 visits, ``measure(i)`` being the
    ratio at grid point ``i`` of ``count`` (taken to fall with ``i``); None at the points
    it skips. Where the grid's ratios fall monotonically, :func:`break_even` of the result
    equals that of the whole grid; it times about log2(count + 1) points instead of
    ``count``."""
    ratios: list[float | None] = [None] * count
    lo, hi = 0, count  # the crossing lies in [lo, hi]: ratios[lo - 1] >= 1 > ratios[hi]
    while lo < hi:
        mid = (lo + hi) // 2
        ratios[mid] = measure(mid)
        if ratios[mid] < 1.0:
            hi = mid
        else:
            lo = mid + 1
    return ratios
