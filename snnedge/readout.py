r"""The readout's weighting over time: later steps count more in a deep network's output.

A converted network's readout (its last synaptic layer, with no neuron after it) receives
at step ``t`` a value ``o(t)`` whose mean over the steps tends to the ANN's output. In a deep
network the first steps are a transient: the neurons of each layer need a few steps before
their rates settle, and the layers after them inherit the disorder. On torchvision's
MobileNetV2 converted at 32 px (53 weighted layers; first 1,000 MNIST test digits), the sum
of ``o(t)`` over steps 1-8 alone is 57 points less accurate than the ANN, over steps 25-32
5.5 points, and over any 8 steps after step 56 at most 1 (``examples/benchmarks/RESULTS.md``,
"Readout weighted over time").

Evaluating the readout only after a delay discards that transient ("delayed evaluation":
Hwang et al., "Low-latency spiking neural networks using pre-charged membrane potential and
delayed evaluation", Frontiers in Neuroscience 15:629000, 2021, doi:10.3389/fnins.2021.629000).

snnedge weights the steps instead of cutting them: the readout after ``T`` steps is

    ``output(T) = T * sum_t w(t) o(t) / sum_t w(t)``,  ``w(t) = (t / T) ** p``,

with ``p`` the network's :attr:`~snnedge.SpikingNetwork.readout_exponent` (0: the plain
sum of every step, as without weighting). The weights' shape is the same at every ``T``
(relative to ``T``), so the prediction after each step (``res.step_predictions``) is the
argmax of ``sum_{s <= t} s ** p o(s)``: one running sum gives the whole accuracy curve,
and the scaling by ``T / sum w`` keeps ``res.output`` in the units of the plain sum (equal
to it when ``o`` is constant). The spikes, synaptic events and energy do not change: only
how the readout is read. :func:`converters.convert` chooses ``p`` on the calibration data
(:mod:`converters.readout`).
"""
from __future__ import annotations

import torch

from .errors import check_real

# The largest exponent accepted: (t / T) ** 16 gives half the weight to the last 4% of the
# steps already; larger exponents read little more than the last step.
MAX_EXPONENT = 16.0


def check_exponent(value, where: str) -> float:
    """``value`` as a float in ``[0, MAX_EXPONENT]``, or a ``ValueError`` naming ``where``."""
    return check_real(value, param="readout_exponent", where=where, low=0.0, high=MAX_EXPONENT)


def step_weights(exponent: float, start: int, stop: int, timesteps: int,
                 like: torch.Tensor) -> torch.Tensor:
    """``w(t) = (t / T) ** p`` for the steps ``t = start + 1 .. stop`` of a run of
    ``timesteps`` steps, in ``like``'s dtype and device, shaped ``(stop - start, 1, 1)`` to
    scale a block of readouts ``(steps, B, C)``. Computed in float64, then cast."""
    t = torch.arange(start + 1, stop + 1, dtype=torch.float64)
    return ((t / timesteps) ** exponent).to(like.dtype).to(like.device).view(-1, 1, 1)


def output_scale(exponent: float, timesteps: int) -> float:
    """``T / sum_t w(t)``: the factor that puts the weighted sum in the plain sum's units."""
    t = torch.arange(1, timesteps + 1, dtype=torch.float64)
    return float(timesteps / ((t / timesteps) ** exponent).sum())


def weigh_steps(per_step: torch.Tensor, exponent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """From each step's readout ``(T, B, C)``, the weighted running sum and the weighted
    output ``(B, C)``, in ``per_step``'s dtype. For engines that hand back the readout of
    the whole run at once (brian2)."""
    steps = per_step.shape[0]
    weighted = torch.cumsum(per_step * step_weights(exponent, 0, steps, steps, per_step), 0)
    return weighted, weighted[-1] * output_scale(exponent, steps)
