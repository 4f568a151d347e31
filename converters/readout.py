r"""Choosing how a converted network's readout weights its steps (``readout_exponent``).

:mod:`snnedge.readout` weights step ``t`` of ``T`` by ``(t / T) ** p``. A shallow network
settles within a step or two and reads best with every step counted the same (``p = 0``:
weighting late steps only throws resolution away); a deep one spends its first tens of
steps in a transient (torchvision's MobileNetV2 at 32 px: RESULTS.md, "Readout weighted over
time") and reads best with the late steps weighted up. The right ``p`` is a property of the
network, so :func:`choose_exponent` measures it on the calibration data: it simulates the
converted network on calibration samples for ``2 T_c`` steps (``T_c`` the membrane
calibration's steps), keeping each step's readout ``o(t)``, and for each candidate ``p`` in
:data:`EXPONENTS` compares the weighted mean readout after ``T_c`` and after ``2 T_c``
steps with the ANN's output ``z`` on the same samples:

    ``error(p) = sum_T mean_samples || m_T - z || / || z ||``,
    ``m_T = sum_{t <= T} w(t) o(t) / sum_{t <= T} w(t)``

(for a network whose output is a spiking layer, ``z`` is the ANN's output in that layer's
spikes per step, ``clip(a / lambda, 0, 1)``; where ``z = 0``, a ReLU readout the ANN leaves
silent, ``|| z ||`` is the mean over the other samples). The smallest ``p`` of least error wins.
A continuous error rather than the share of predictions that differ, because on a shallow
network too few calibration samples differ to tell the candidates apart.

On the zoo of ``examples/benchmarks/zoo.py`` (fifth session, aligned first-layer phases) it
chose ``p = 0`` for the shallow networks and the VGGs (lenet_w8, resnet8_f, vgg_max,
tv_alexnet), 1 to 3 for the residual, Inception and DenseNet networks of 7 to 121 weighted
layers, and 6 to 8 for resnet_deep, MobileNetV2 and ShuffleNetV2, whose transients last 20 to
60 steps; made from 64, 128 or 256 digits, the choice differed on one member of 17
(RESULTS.md, "Readout weighted over time"; with ordered phases resnet8_f gets 1). Made at
``T_c`` and ``2 T_c`` steps, it does not see longer runs: densenet_small (p = 1) loses 0.15
points at T = 64 where the plain sum gains 0.05 (RESULTS.md, the zoo section).
"""
from __future__ import annotations

import math

import torch

import snnedge
from snnedge.readout import step_weights

from .graph import Graph

# The candidate exponents: 0 (the plain sum) up to 8, where the last quarter of the steps
# holds 92% of the weight.
EXPONENTS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
# Calibration samples the choice simulates: at most READOUT_SAMPLES, and at most READOUT_PASSES
# ANN passes over the calibration samples' worth of sample-steps (2 T_c steps each), so that
# with few calibration samples (64 ImageNet images) the choice does not cost more than the
# membrane calibration (issue 17: convert <= 20 ANN passes): 64 of 1,000 samples at T_c = 16,
# 6 of 64.
READOUT_SAMPLES = 64
READOUT_PASSES = 3


def readout_samples(n: int, timesteps: int) -> int:
    """Samples the readout choice simulates for ``2 x timesteps`` steps out of ``n``
    calibration samples: ``min(READOUT_SAMPLES, n, max(1, ceil(READOUT_PASSES x n / (2 T))))``.

    >>> readout_samples(1000, 16), readout_samples(64, 16), readout_samples(20, 1)
    (64, 6, 20)
    """
    return min(READOUT_SAMPLES, n, max(1, math.ceil(READOUT_PASSES * n / (2 * timesteps))))


def exponent_errors(readout: torch.Tensor, target: torch.Tensor, checkpoints: tuple[int, ...],
                    exponents: tuple[float, ...] = EXPONENTS) -> dict[float, float]:
    """``error(p)`` of the module docstring for each ``p`` in ``exponents``: ``readout`` is
    each step's readout ``(T, N, C)`` (``T >= max(checkpoints)``), ``target`` what its mean
    should be, ``(N, C)``."""
    o = readout.to(torch.float64)
    o = o.reshape(o.shape[0], o.shape[1], -1)
    z = target.to(torch.float64).reshape(o.shape[1], -1)
    z_norm = z.norm(dim=1)
    # A sample whose target is 0 (a ReLU readout the ANN leaves silent) has no scale of its
    # own: its error is measured against the mean norm of the others' targets.
    silent = z_norm <= 0
    if bool(silent.any()):
        typical = z_norm[~silent].mean() if bool((~silent).any()) else z_norm.new_tensor(1.0)
        z_norm = torch.where(silent, typical, z_norm)
    errors = {}
    for p in exponents:
        total = 0.0
        for T in checkpoints:
            w = step_weights(p, 0, T, T, o)
            m = (w * o[:T]).sum(0) / w.sum()
            total += float(((m - z).norm(dim=1) / z_norm).mean())
        errors[float(p)] = total
    return errors


def pick_exponent(errors: dict[float, float]) -> float:
    """The smallest exponent whose error is the least (within float round-off)."""
    best = min(errors.values())
    return min(p for p, e in errors.items() if e <= best * (1 + 1e-9) + 1e-15)


@torch.no_grad()
def choose_exponent(snn: snnedge.SpikingNetwork, graph: Graph, x: torch.Tensor, timesteps: int,
                    batch_size: int = 256, seed: int = 0,
                    spike_scale: torch.Tensor | None = None,
                    exponents: tuple[float, ...] = EXPONENTS) -> tuple[float, dict[float, float]]:
    """``(p, {candidate: error})``: the readout exponent for ``snn`` (converted from
    ``graph``), measured on :func:`readout_samples` of the calibration samples ``x``
    at ``timesteps`` and ``2 x timesteps`` steps. ``spike_scale``: where the output is a
    spiking layer, its scale lambda (the ANN value of one spike per step); ``exponents``: the
    candidates (one, to measure the error of a given ``p``)."""
    n = readout_samples(x.shape[0], timesteps)
    pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    xs = x[pick.to(x.device)]
    target = torch.cat([graph.run(xs[i:i + batch_size])[0] for i in range(0, n, batch_size)])
    if spike_scale is not None:
        lam = spike_scale.to(target).reshape(-1, *([1] * (target.dim() - 2)))
        target = (target / lam).clamp(0.0, 1.0)
    # res.readout is each step's readout unweighted, whatever snn's own exponent
    res = snnedge.simulate(snn, xs, timesteps=2 * timesteps, batch_size=batch_size,
                           progress=False, keep_readout=True)
    errors = exponent_errors(res.readout, target.cpu(), (timesteps, 2 * timesteps), exponents)
    if not all(math.isfinite(e) for e in errors.values()):
        return 0.0, errors
    return pick_exponent(errors), errors
