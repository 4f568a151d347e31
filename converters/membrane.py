r"""Initial-membrane calibration: correct the spikes that a converted network fires too early.

With reset by subtraction, an IF neuron's spike count after ``t`` steps is
``max_{s <= t} floor(V(s) / theta)`` where ``V`` is its initial membrane plus its cumulative
input; the ANN (quantized to ``t`` levels) computes ``floor(V(t) / theta)``. The two differ
when the cumulative input is larger early than at the end: inputs that fire early push a
neuron over threshold before the inhibition that arrives later, and a spike cannot be taken
back. Deep and residual networks suffer most (the shortcut delivers its spikes before the
branch does). The excess is a number of spikes fixed in the first steps, not a rate, so
lowering the initial membrane by the mean excess corrects it at every ``T``.

Potential calibration (Li, Deng, Dong, Gong and Gu, "A free lunch from ANN: towards
efficient, accurate spiking neural networks calibration", ICML 2021, arXiv:2106.06984):
layer by layer in topological order, simulate the network up to that layer for ``T_c``
steps on calibration samples and set, per neuron,

    ``v_init <- v_init - (mean spike count - mean target count)``,
    target count = ``clip(T_c * a / lambda, 0, T_c)`` with ``a`` the ANN's activation,

in units of the threshold. Earlier layers are calibrated before later ones see them.

:func:`calibrate_membrane` does this in one sweep (:class:`converters.sweep.Sweep`): the
calibration samples' spike trains go through the network layer by layer, each layer is
calibrated once and then fires its corrected trains into the layers after it, so the cost
is a fixed number of passes whatever the depth. It computes what
:func:`calibrate_membrane_per_layer` computes (one simulation of all the layers before each
neuron layer, a cost that grows with the square of the depth), which stays as the
reference the tests compare it with.
"""
from __future__ import annotations


import torch
from torch import nn

import snnedge
from snnedge.layers import INPUT, Add, Scale
from snnedge.network import Node, SpikingNetwork

from .calibration import target_batches
from .gain import apply_gain, fit_gain, gain_samples, sample_targets
from .graph import Graph
from .sweep import Sweep


class CalibratedIF(snnedge.IF):
    """An :class:`snnedge.IF` whose initial membrane is set per neuron.

    ``v_init_map`` (a buffer shaped like one sample of the layer's input, in units of the
    threshold) replaces the scalar ``v_init`` at ``t = 0``; the dynamics are IF's.
    """

    def __init__(self, threshold=1.0, reset: str = "subtract", v_init: float = 0.5,
                 v_init_map: torch.Tensor | None = None, shape: tuple[int, ...] | None = None):
        super().__init__(threshold=threshold, reset=reset, v_init=v_init)
        if v_init_map is None:
            if shape is None:
                raise ValueError("CalibratedIF needs v_init_map or the per-sample shape.")
            v_init_map = torch.full(tuple(shape), float(v_init))
        self.register_buffer("v_init_map", torch.as_tensor(v_init_map, dtype=torch.get_default_dtype()).clone())

    def initial_state(self, template: torch.Tensor) -> torch.Tensor:
        return self.kept_state(template, (self.v_init_map, self.threshold),
                               lambda: self.v_init_map.to(template) * self.threshold_for(template))

    def extra_repr(self) -> str:
        m = self.v_init_map
        return super().extra_repr() + f", v_init_map=[{float(m.min()):.2f}, {float(m.max()):.2f}]"


def calibrated_layers(snn: SpikingNetwork) -> list[str]:
    """The neuron layers of ``snn`` whose initial membranes calibration sets: its
    :class:`CalibratedIF` layers behind other neuron layers (a layer fed by the input alone
    has no transient to correct; its map holds the phases of :mod:`converters.phases`)."""
    behind: dict[str, bool] = {}
    for n in snn.names:  # topological order; a delayed input varies in time
        behind[n] = any(i != INPUT and (snn.kind(i) == "temporal" or behind.get(i, True))
                        for i in snn.inputs_of(n))
    return [n for n in snn.neuron_layers if isinstance(snn.layer(n), CalibratedIF) and behind[n]]


@torch.no_grad()
def target_counts(graph: Graph, x: torch.Tensor, layers: list[str],
                  scales: dict[str, torch.Tensor], timesteps: int,
                  batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per neuron of each layer in ``layers``, the mean over ``x`` of the spikes the ANN's
    activation stands for in ``timesteps`` steps, ``clip(T * a / lambda, 0, T)``."""
    total: dict[str, torch.Tensor] = {}
    for batch in target_batches(graph, x, layers, scales, timesteps, batch_size):
        for name, counts in batch.items():
            t = counts.sum(0, dtype=torch.float64)
            total[name] = t if name not in total else total[name] + t
    return {name: t / x.shape[0] for name, t in total.items()}


def bias_holder(snn: SpikingNetwork, name: str, frozen: set[str] = frozenset()) -> nn.Module | None:
    """The module whose bias adds a constant to the input of neuron layer ``name`` and to
    nothing else: the convolution, linear layer or :class:`snnedge.Scale` that feeds it
    alone, or one such input of the :class:`snnedge.Add` that feeds it alone. ``None``
    where there is none (a pooling in between, no bias to shift); layers in ``frozen``
    (values a sweep has stored) are never chosen."""
    def alone(n: str, reader: str) -> nn.Module | None:
        if n == INPUT or n in frozen or snn.consumers_of(n) != (reader,):
            return None
        m = snn.layer(n)
        b = getattr(m, "bias", None)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear, Scale)) and \
                isinstance(b, torch.Tensor) and b.dim() == 1:
            return m
        return None

    (src,) = snn.inputs_of(name)
    direct = alone(src, name)
    if direct is not None or src == INPUT or src in frozen or snn.consumers_of(src) != (name,):
        return direct
    if isinstance(snn.layer(src), Add):
        for i in snn.inputs_of(src):
            m = alone(i, src)
            if m is not None:
                return m
    return None


def _channel_mean(t: torch.Tensor) -> torch.Tensor:
    """Per-neuron values ``(C, ...)`` -> their mean per channel ``(C,)``."""
    return t.reshape(t.shape[0], -1).mean(1) if t.dim() > 1 else t


def _shift_bias(holder: nn.Module, delta: torch.Tensor) -> None:
    b = holder.bias
    b.data.copy_((b.detach().double() + delta.to(b.device, torch.float64)).to(b.dtype))


def correct_layer(snn: SpikingNetwork, name: str, counts: dict[int, torch.Tensor],
                  rate: torch.Tensor, holder: nn.Module | None) -> tuple[float, torch.Tensor | None]:
    """Correct neuron layer ``name`` from its mean spike counts per neuron after the steps
    in ``counts`` against the ANN's ``rate`` (spikes per step per neuron).

    The count error after ``t`` steps is modelled as ``c + e t``: ``c`` spikes fired too
    early (or too late) in the transient, and a rate error ``e`` (inputs whose spikes do not
    arrive evenly). With a ``holder`` (see :func:`bias_holder`) and two or more checkpoints,
    ``e`` is the slope of the error between the first and the last checkpoint, averaged
    per channel, and ``e theta`` is taken off the channel's bias (bias calibration, Li et al.
    2021), which holds at every ``T``; the initial membrane then takes off the rest, ``c``
    per neuron (the mean over the checkpoints of ``err(t) - e t``). Without, the initial
    membrane takes off the error averaged over the checkpoints, as before.

    Returns ``(mean excess spikes taken off the membrane, bias shift per channel or None)``.
    """
    neuron = snn.layer(name)
    steps = sorted(counts)
    err = {t: counts[t].to(torch.float64) - rate.to(counts[t].device, torch.float64) * t for t in steps}
    if holder is None or len(steps) < 2:
        mean = sum(err.values()) / len(steps)
        neuron.v_init_map.sub_(mean.to(neuron.v_init_map)).clamp_(max=1.0)
        return float(mean.mean()), None
    first, last = steps[0], steps[-1]
    slope = _channel_mean((err[last] - err[first]) / (last - first))
    per_neuron = slope.view(-1, *([1] * (err[last].dim() - 1)))
    offset = sum(err[t] - per_neuron * t for t in steps) / len(steps)
    neuron.v_init_map.sub_(offset.to(neuron.v_init_map)).clamp_(max=1.0)
    theta = neuron.threshold.detach().to(torch.float64).reshape(-1).to(slope.device)
    delta = -slope * theta
    _shift_bias(holder, delta)
    return float(offset.mean()), delta


def _shifted(kept: list | None, delta: torch.Tensor | None) -> list | None:
    """The kept input currents with a per-channel ``delta`` added (a shifted bias)."""
    if kept is None or delta is None:
        return kept
    out = []
    for cur, static in kept:
        d = delta.to(cur).view(-1, *([1] * (cur.dim() - (1 if static else 2) - 1)))
        out.append((cur + d, static))
    return out


@torch.no_grad()
def calibrate_membrane(snn: SpikingNetwork, graph: Graph, x: torch.Tensor,
                       scales: dict[str, torch.Tensor], timesteps: int,
                       batch_size: int = 256, checkpoints: tuple[int, ...] | None = None,
                       iterations: int = 1, bias: bool = False,
                       bias_shifts: dict[str, float] | None = None,
                       gain_timesteps: int | None = None,
                       gains: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Set the ``v_init_map`` of every :class:`CalibratedIF` in ``snn`` (in place, on the
    network being built) in one sweep over the layers; returns the mean excess spikes
    corrected per layer. ``bias``: also correct each layer's rate error through the bias
    that feeds it (:func:`correct_layer`; the counts are read at ``timesteps / 2`` and
    ``timesteps`` in the same pass, so it costs no extra pass); ``bias_shifts`` (a dict)
    receives each shifted layer's mean rate error taken off, in spikes per step.
    ``gain_timesteps``: first fit each layer's gain per channel on its counts after that
    many steps and take it off its threshold (:mod:`converters.gain`; the sweep then runs
    ``max(timesteps, gain_timesteps)`` steps, and each calibrated layer's neurons run once
    more); ``gains`` (a dict) receives each layer's gains."""
    layers = calibrated_layers(snn)
    targets = target_counts(graph, x, layers, scales, timesteps, batch_size)
    steps = max(timesteps, gain_timesteps or 0)
    per_sample = {}
    if gain_timesteps:
        fitted = gain_samples(graph, layers, x.shape[0])
        per_sample = sample_targets(graph, x[:fitted], layers, scales, gain_timesteps, batch_size)
    sweep = Sweep(snn, x, steps)
    needed = set(layers) | set(sweep.last_reader)
    checkpoints = tuple(checkpoints or bias_checkpoints(timesteps, bias))
    excess = {}
    for name in sweep.temporal:
        if name not in needed:
            continue
        kept = None
        if name in targets:
            kept = sweep.currents(name)
            if name in per_sample:
                alpha = fit_gain(_sample_counts(sweep, name, kept, gain_timesteps,
                                                per_sample[name].shape[0]), per_sample[name])
                apply_gain(snn.layer(name), alpha)
                if gains is not None:
                    gains[name] = alpha
            rate = targets[name] / timesteps
            holder = bias_holder(snn, name, sweep.static) if bias else None
            for it in range(iterations):
                counts = sweep.counts(name, kept, checkpoints)
                e, delta = correct_layer(snn, name, {t: c / x.shape[0] for t, c in counts.items()},
                                         rate, holder)
                kept = _shifted(kept, delta)
                if delta is not None and bias_shifts is not None:
                    theta = snn.layer(name).threshold.detach().double().reshape(-1).to(delta.device)
                    bias_shifts[name] = bias_shifts.get(name, 0.0) - float((delta / theta).mean())
                if it == 0:
                    excess[name] = e
        sweep.store(name, kept)
    return excess


def _sample_counts(sweep: Sweep, name: str, kept: list | None, timesteps: int,
                   n: int) -> torch.Tensor:
    """Per-sample spike counts ``[n, ...]`` of neuron layer ``name`` after ``timesteps``
    steps on the sweep's first ``n`` samples (its output is not stored)."""
    module, parts, done = sweep.net.get_submodule(name), [], 0
    for k, i in sweep.chunks():
        if done >= n:
            break
        cur, static = kept[k] if kept is not None else sweep.current(name, k, i)
        spikes, _ = module.forward_block(cur if static else cur[:timesteps],
                                         module.initial_state(cur if static else cur[0]),
                                         timesteps, static)
        parts.append(spikes.sum(0, dtype=torch.float32)[:n - done])
        done += parts[-1].shape[0]
    return torch.cat(parts)


def bias_checkpoints(timesteps: int, bias: bool) -> tuple[int, ...]:
    """The steps after which calibration reads the spike counts: ``T`` alone, or with
    ``bias`` also ``T / 2`` (the rate error is the slope between the two)."""
    return (max(1, timesteps // 2), timesteps) if bias and timesteps >= 2 else (timesteps,)


def _ancestors(net: SpikingNetwork, name: str) -> list[Node]:
    keep, stack = set(), [name]
    while stack:
        n = stack.pop()
        if n in keep or n == INPUT:
            continue
        keep.add(n)
        stack.extend(net.inputs_of(n))
    return [node for node in net.nodes if node.name in keep]


@torch.no_grad()
def calibrate_membrane_per_layer(snn: SpikingNetwork, graph: Graph, x: torch.Tensor,
                                 scales: dict[str, torch.Tensor], timesteps: int,
                                 batch_size: int = 256, bias: bool = False,
                                 gain_timesteps: int | None = None,
                                 gains: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """:func:`calibrate_membrane` by one simulation of the layers before each neuron layer
    (the method before the sweep; its cost grows with the square of the depth), one per
    checkpoint with ``bias``, and with ``gain_timesteps`` one per sample first for the
    gain."""
    layers = calibrated_layers(snn)
    targets = target_counts(graph, x, layers, scales, timesteps, batch_size)
    per_sample = {}
    if gain_timesteps:
        fitted = gain_samples(graph, layers, x.shape[0])
        per_sample = sample_targets(graph, x[:fitted], layers, scales, gain_timesteps, batch_size)
    excess = {}
    for name in layers:
        sub = SpikingNetwork(_ancestors(snn, name), input_shape=snn.input_shape)
        if name in per_sample:
            counts = [snnedge.simulate(sub, x[i:i + 1], timesteps=gain_timesteps,
                                       dtype=torch.float32, engine="dense",
                                       progress=False).neuron_spike_counts[name].unsqueeze(0)
                      for i in range(per_sample[name].shape[0])]
            alpha = fit_gain(torch.cat(counts).to(torch.float32), per_sample[name])
            apply_gain(snn.layer(name), alpha)
            if gains is not None:
                gains[name] = alpha
        counts = {}
        for t in bias_checkpoints(timesteps, bias):
            res = snnedge.simulate(sub, x, timesteps=t, batch_size=batch_size,
                                   dtype=torch.float32, engine="dense", progress=False)
            counts[t] = res.neuron_spike_counts[name].to(torch.float64) / x.shape[0]
        holder = bias_holder(snn, name) if bias else None
        excess[name], _ = correct_layer(snn, name, counts, targets[name] / timesteps, holder)
    return excess
