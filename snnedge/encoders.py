"""Input encoders: how an analog sample ``x`` becomes the network's input at each step.

============  ==============================================================================
``direct``    the analog value as a constant current every step (static: the first synaptic
              layer is computed once; Rueckauer et al. 2017)
``poisson``   a Bernoulli spike per step with probability ``x`` (inputs in [0, 1]), from a
              seeded generator: the same seed and batch size give the same spikes
``latency``   one spike per input at ``t = round((1 - x) * (T - 1))``: bright inputs fire
              first, zeros never (time-to-first-spike coding)
============  ==============================================================================

Each encoder returns a block of steps ``(steps, B, ...)``, or ``(B, ...)`` for a static one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import check_choice


@dataclass
class Encoder:
    """Base encoder. ``static``: same input every step. ``spiking``: outputs are events."""

    static = False
    spiking = True

    def start(self, x: torch.Tensor, timesteps: int, seed: int) -> None:
        """Prepare for a batch ``x`` of ``timesteps`` steps."""
        self.x = x
        self.timesteps = timesteps

    def block(self, t0: int, t1: int) -> torch.Tensor:
        """Steps ``t0 <= t < t1``."""
        return self.x


class DirectEncoder(Encoder):
    static = True
    spiking = False


class PoissonEncoder(Encoder):
    def start(self, x, timesteps, seed):
        _check_unit_range(x, "poisson")
        super().start(x, timesteps, seed)
        # Drawn on the CPU one step at a time, so the stream is the same whatever the
        # time-block size or the device.
        self.generator = torch.Generator().manual_seed(int(seed))
        self.rate = x.detach().to("cpu", torch.float64)

    def block(self, t0, t1):
        steps = [torch.rand(self.rate.shape, generator=self.generator, dtype=torch.float64) < self.rate
                 for _ in range(t0, t1)]
        return torch.stack(steps).to(self.x.device, self.x.dtype)


class LatencyEncoder(Encoder):
    def start(self, x, timesteps, seed):
        _check_unit_range(x, "latency")
        super().start(x, timesteps, seed)
        self.fire_step = torch.round((1 - x) * (timesteps - 1)).to(torch.int64)
        self.fires = x > 0

    def block(self, t0, t1):
        t = torch.arange(t0, t1, device=self.x.device).view(-1, *([1] * self.x.dim()))
        return ((self.fire_step.unsqueeze(0) == t) & self.fires).to(self.x.dtype)


ENCODERS: dict[str, type[Encoder]] = {
    "direct": DirectEncoder, "poisson": PoissonEncoder, "latency": LatencyEncoder}


def get_encoder(name: str) -> Encoder:
    """A fresh encoder by name (one of :data:`ENCODERS`)."""
    check_choice(name, ENCODERS, param="encoding", where="simulate")
    return ENCODERS[name]()


def _check_unit_range(x: torch.Tensor, name: str) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"The {name!r} encoding needs inputs in [0, 1] (they are spike "
                         f"probabilities or intensities). Got values in [{lo:g}, {hi:g}]; "
                         f"rescale the data, e.g. x = (x - x.min()) / (x.max() - x.min()), "
                         f"or use encoding='direct'.")
