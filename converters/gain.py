r"""Gain calibration: give each channel of a neuron layer the spike count its ANN activation
stands for, on average over the calibration samples, at every activation level.

In a deep converted network the spike count of a neuron after ``t`` steps is a *compressed*
copy of the count its ANN activation stands for, ``clip(t a / lambda, 0, t)``: fitting
``count = alpha x target + beta`` over calibration samples gives ``alpha`` near 1 in the
first layers and falling with depth (tv_mobilenet_v2 at ``t = 32``: 0.60 at its last neuron
layer; ``examples/benchmarks/RESULTS.md``, "Conversion defaults across the zoo and T").
Neurons whose input is near zero or negative fire a few spikes too early (their positive
inputs arrive before the negative ones), neurons of high activation fire too late, and the
initial-membrane calibration (:mod:`converters.membrane`) can only take the *mean* of the
two off: low activations keep an excess and high ones a deficit, and each layer passes
its compression on to the next.

Layer by layer in the one sweep of the membrane calibration (Li, Deng, Dong, Gong and Gu,
"A free lunch from ANN: towards efficient, accurate spiking neural networks calibration",
ICML 2021, arXiv:2106.06984: each layer calibrated on calibration data with the earlier
layers already corrected), this module fits per output channel ``c`` the least-squares slope
of the spike counts after ``T_g`` steps against their targets over the calibration samples
(and positions),

    ``alpha_c = cov(count, target) / var(target)``,

and multiplies the channel's threshold by ``alpha_c`` (clipped to ``[GAIN_MIN, GAIN_MAX]``),
which multiplies its counts by about ``1 / alpha_c``: the same as scaling the channel's
input weights and bias by ``1 / alpha_c``, the closed-form counterpart of Li et al.'s
weight calibration. The membrane calibration then takes the mean error left off the initial
membrane, as before. Part of the compression is a delay of a few steps, a fixed number of
spikes that matters less as ``T`` grows, so a gain fitted at ``T_g`` over-corrects for
``T`` well beyond it: ``T_g`` (``converters.pipeline.GAIN_TIMESTEPS`` = 32) was chosen on held-out
training digits (16, 32 and 64 compared on the deep networks). The SNN then no longer tends
to the ANN as ``T`` grows, which is why ``convert`` leaves it off by default.
"""
from __future__ import annotations

import math

import torch

from .calibration import target_batches
from .graph import Graph

# The gain per channel stays within these bounds (a channel with few samples or a flat
# response could otherwise get an extreme one).
GAIN_MIN, GAIN_MAX = 0.5, 2.0
# Memory for the per-sample targets (float16) of all calibrated layers: the gain is fitted
# on the first samples that fit, all of them in the zoo's networks.
GAIN_BYTES = 256 * 2**20


def gain_samples(graph: Graph, layers: list[str], n: int, budget: int | None = None) -> int:
    """Samples whose per-sample targets the gain fit keeps: at most ``n``, and at most as
    many as fit :data:`GAIN_BYTES` (float16 per neuron of every layer in ``layers``)."""
    per_sample = 2 * sum(math.prod(graph.op(name).shape) for name in layers)
    return max(1, min(n, (GAIN_BYTES if budget is None else budget) // max(1, per_sample)))


@torch.no_grad()
def sample_targets(graph: Graph, x: torch.Tensor, layers: list[str],
                   scales: dict[str, torch.Tensor], timesteps: int,
                   batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per sample of ``x`` and neuron of each layer in ``layers``: the count its ANN
    activation stands for after ``timesteps`` steps, ``clip(T a / lambda, 0, T)``, in
    float16 (``[N, ...]`` per layer; one ANN pass)."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for batch in target_batches(graph, x, layers, scales, timesteps, batch_size):
        for name, t in batch.items():
            out[name].append(t.to(torch.float16))
    return {name: torch.cat(parts) for name, parts in out.items()}


def _by_channel(t: torch.Tensor) -> torch.Tensor:
    """``[N, C, ...]`` -> ``[C, N x ...]`` in float64."""
    return t.to(torch.float64).transpose(0, 1).reshape(t.shape[1], -1)


def fit_gain(counts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per channel (dimension 1 of ``[N, C, ...]``), the least-squares slope of ``counts``
    against ``targets``, ``cov / var``, clipped to ``[GAIN_MIN, GAIN_MAX]``; 1 where the
    targets do not vary (a silent or saturated channel).

    >>> t = torch.tensor([[0.0, 2.0], [4.0, 2.0]])
    >>> fit_gain(torch.tensor([[1.0, 2.0], [3.0, 5.0]]), t)
    tensor([0.5000, 1.0000], dtype=torch.float64)
    """
    c, t = _by_channel(counts), _by_channel(targets.to(counts.device))
    dt = t - t.mean(1, keepdim=True)
    var = (dt * dt).mean(1)
    cov = ((c - c.mean(1, keepdim=True)) * dt).mean(1)
    flat = var <= 1e-9
    alpha = torch.where(flat, torch.ones_like(var), cov / torch.where(flat, torch.ones_like(var), var))
    return alpha.clamp(GAIN_MIN, GAIN_MAX)


def apply_gain(neuron: torch.nn.Module, alpha: torch.Tensor) -> None:
    """Multiply ``neuron``'s threshold by ``alpha`` per channel (a scalar threshold becomes
    one per channel); its initial membrane, in units of the threshold, scales with it."""
    theta = neuron.threshold.detach().to(torch.float64)
    theta = theta.expand(alpha.numel()) if theta.dim() == 0 else theta
    neuron.threshold = (theta * alpha.to(theta.device)).to(neuron.threshold.dtype).clone()
