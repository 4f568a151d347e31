"""Input encoders: how an analog sample ``x`` becomes the network's input at each step.

============  ==============================================================================
``direct``    the analog value as a constant current every step (static: the first synaptic
              layer is computed once; Rueckauer et al. 2017)
``poisson``   a Bernoulli spike per step with probability ``x`` (inputs in [0, 1]), from a
              seeded generator: the same seed and batch size give the same spikes
``latency``   one spike per input at ``t = round((1 - x) * (T - 1))``: bright inputs fire
              first, zeros never (time-to-first-spike coding)
``sequence``  the data is already time-varying: ``x`` is ``[B, T, *sample_shape]`` (event
              frames, spikes or analog values) and step ``t`` is ``x[:, t]``; ``T`` comes
              from ``x``
============  ==============================================================================

Each encoder returns a block of steps ``(steps, B, ...)``, or ``(B, ...)`` for a static one.
The sequence encoder streams its blocks from the batch-first tensor, one block at a time
(converted to the simulation's dtype and checked for NaN per block), so memory stays flat in
``T``: the whole sequence is never copied time-first.
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


class SequenceEncoder(Encoder):
    """Time-varying input given as data ``[B, T, *sample_shape]``: block ``[t0, t1)`` is
    ``x[:, t0:t1]`` time-first, in :attr:`dtype` (default: ``x``'s floating type, else
    float32). ``spiking`` (whether the values are events: counts, whole numbers >= 0) is
    what the caller found with :func:`sequence_holds_events`; :func:`snnedge.simulate` checks
    every batch first."""

    dtype: torch.dtype | None = None

    def start(self, x, timesteps, seed):
        if x.dim() < 3:
            raise ValueError(f"encoding='sequence' expects a batch [B, T, *sample_shape]. Got shape "
                             f"{tuple(x.shape)}; add the batch dimension with x.unsqueeze(0).")
        if x.shape[1] != timesteps:
            raise ValueError(f"encoding='sequence': the batch has T = {x.shape[1]} steps "
                             f"(dimension 1 of {tuple(x.shape)}) but timesteps={timesteps} was asked for.")
        super().start(x, timesteps, seed)

    def block(self, t0, t1):
        part = self.x[:, t0:t1].transpose(0, 1)
        dtype = self.dtype or (part.dtype if part.is_floating_point() else torch.get_default_dtype())
        part = part.to(dtype).contiguous()
        if not torch.isfinite(part.sum()):  # one pass; NaN and inf propagate into the sum
            bad = int((~torch.isfinite(part)).sum())
            if bad:
                raise ValueError(f"encoding='sequence': steps {t0}..{t1 - 1} of the input hold {bad} "
                                 f"NaN or infinite values; clean the data first (e.g. "
                                 f"torch.nan_to_num).")
        return part


def sequence_holds_events(x: torch.Tensor, chunk: int = 32) -> bool:
    """Whether every value of the sequence batch ``x`` ``[B, T, ...]`` counts events: a
    whole number >= 0 (spikes are 0/1; an event frame holds the events of each pixel and
    bin, see :func:`snnedge.events_to_frames`). Read ``chunk`` steps at a time."""
    if x.dtype == torch.bool or (not x.is_floating_point() and not x.is_complex()
                                 and not x.dtype.is_signed):
        return True
    for t0 in range(0, x.shape[1], chunk):
        part = x[:, t0:t0 + chunk]
        if part.is_floating_point():  # whole and >= 0 exactly where |round(v)| == v (NaN: no)
            if not torch.equal(part, part.round().abs_()):
                return False
        elif bool((part < 0).any()):
            return False
    return True


ENCODERS: dict[str, type[Encoder]] = {
    "direct": DirectEncoder, "poisson": PoissonEncoder, "latency": LatencyEncoder,
    "sequence": SequenceEncoder}


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
