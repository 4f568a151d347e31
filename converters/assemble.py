"""Building one spiking network from a simplified graph and its scales: normalized, its
initial membranes calibrated and its readout weighting chosen. :func:`converters.convert`
builds one per candidate of ``phases`` (:mod:`converters.phases`) and keeps the best."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import snnedge

from .ir import Graph
from .membrane import calibrate_membrane
from .normalize import Normalizer
from .readout import EXPONENTS, choose_exponent


@dataclass
class Built:
    """A network :func:`build_network` made and what its calibration measured."""

    snn: snnedge.SpikingNetwork
    norm: Normalizer
    phases: str
    excess: dict[str, float]
    shifts: dict[str, float]
    gains: dict[str, torch.Tensor]
    errors: dict[float, float]  # readout error per candidate exponent (converters.readout)

    def least_error(self) -> float:
        """The least finite readout error (inf where none was measured)."""
        return min((e for e in self.errors.values() if math.isfinite(e)), default=math.inf)


def build_network(simple: Graph, cpu_graph: Graph, lambdas: dict[str, torch.Tensor],
                  x: torch.Tensor, used: torch.Tensor | None, phases: str, *, reset: str,
                  v0: float, maxpool: str, bias: bool, gain_timesteps: int | None, timesteps: int,
                  batch_size: int, seed: int, readout: str | float, spiking_out: set[str],
                  compare: bool) -> Built:
    """The spiking network of ``simple`` (weights rescaled on ``cpu_graph``, its copy on the
    CPU) with the first layers' ``phases``. ``used``: the indices of the calibration samples
    ``x`` the membrane calibration runs on (``None``: no membrane calibration); ``bias``,
    ``gain_timesteps``: as :func:`converters.membrane.calibrate_membrane`'s. ``readout``:
    ``"auto"`` chooses the exponent; with a number, ``compare`` still measures its error (to
    compare candidates of ``phases``)."""
    norm = Normalizer(cpu_graph, lambdas, reset, v0, maxpool,
                      per_neuron_v_init=used is not None, phases=phases)
    snn = snnedge.SpikingNetwork(norm.nodes(), input_shape=simple.input_shape).to(x.device)
    excess, shifts, gains = {}, {}, {}
    if used is not None:
        extra = {"bias": True, "bias_shifts": shifts} if bias else {}
        if gain_timesteps:
            extra.update(gain_timesteps=gain_timesteps, gains=gains)
        excess = calibrate_membrane(snn, simple, x[used], norm.lam, timesteps, batch_size, **extra)
    errors: dict[float, float] = {}
    if (readout == "auto" or compare) and len(spiking_out) <= 1:
        # an output of spikes is compared in their unit
        scale = norm.lam[next(iter(spiking_out))] if spiking_out else None
        exponents = EXPONENTS if readout == "auto" else (float(readout),)
        p, errors = choose_exponent(snn, simple, x, timesteps, batch_size, seed,
                                    spike_scale=scale, exponents=exponents)
        if readout == "auto":
            snn.readout_exponent = p
    if readout != "auto":
        snn.readout_exponent = readout
    return Built(snn, norm, phases, excess, shifts, gains, errors)
