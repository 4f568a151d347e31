"""The simulation engines.

Both engines walk the network layer by layer over a *block* of time steps: every synaptic
module runs once on the block with time folded into the batch (``(T_block * B, ...)``), then
each temporal module (neuron) updates step by step. The state carried between blocks is the
membrane of every neuron, so memory is bounded by the block size, not by ``T``.

* ``dense``: synaptic modules are ordinary dense convolutions and matrix products.
* ``event``: weighted layers fed by spikes propagate only the non-zero inputs
  (:mod:`snnedge.events`): one weight row per spike for ``Linear``, one kernel column per
  spike and tap for ``Conv2d``, accumulated by a compiled sparse kernel.
* ``auto``: dense for the first block, which measures the density of non-zero inputs of
  every spike-fed weighted layer; afterwards each such layer propagates events when its
  density is below what it breaks even at (:func:`snnedge.events.event_density_limit`,
  fitted to examples/benchmarks/event_layers.py), and stays dense otherwise. Later batches of
  the same ``simulate`` call reuse the first batch's choice from their first step; a single
  call on a single block (one sample at T <= 32) stays dense: ask for ``engine="event"`` there.
  On GPUs ``auto`` is dense: on an H200 cuDNN beat the event path even at batch 1 and 2%
  activity (examples/benchmarks/RESULTS.md).

In both engines, no-gradient runs take the fast paths of :func:`snnedge.events.apply_synaptic`:
tiling pools on NCHW inputs as sums of strided slices, and CPU convolutions channels-last (the
neurons and pools after them keep that layout).

A value that is the same at every step (direct encoding, and any weight-free or weighted
layer fed only by it) is computed once per batch: a static current costs one convolution,
not ``T``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from .encoders import Encoder
from .events import apply_synaptic, event_apply, event_density_limit
from .layers import INPUT
from .network import SpikingNetwork
from .neurons import SpikingNeuron, sum_steps_and_batch

# Activations of one block (all layers, T_block x B samples). Blocks this small keep each
# block's convolutions in cache: on the 2-core test machine, batch 100 of the VGG benchmark
# (38 MiB of activations per step) ran 20-35% faster in blocks of 2-4 steps than of 1 or 6+.
DEFAULT_BLOCK_BYTES = 128 * 2**20
MAX_BLOCK_STEPS = 32


@dataclass
class _Value:
    tensor: torch.Tensor
    static: bool  # (B, ...) for every step instead of (steps, B, ...)


@dataclass
class BatchRun:
    """What one batch produced (internal; :func:`snnedge.simulate` assembles the result)."""

    output: torch.Tensor                 # (B, C) accumulated readout
    step_predictions: torch.Tensor       # (T, B) argmax of the running readout
    counts: dict[str, torch.Tensor]      # source -> per-neuron totals over steps and batch
    engine: str = "dense"
    activity: float = 0.0
    extra: dict = field(default_factory=dict)


@contextlib.contextmanager
def exact_float32():
    """Turn TF32 off for CUDA convolutions and matrix products while in the block (also a
    decorator). cuDNN's default TF32 rounds float32 inputs to 10-bit mantissas, which flips
    spikes of neurons near their threshold: measured on an H200, 9% of a random residual
    net's predictions changed against the CPU (examples/benchmarks/RESULTS.md)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def block_steps_for(shapes: dict[str, tuple[int, ...]], batch: int, timesteps: int,
                    itemsize: int, budget_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Time steps per block so that one block's activations (layer ``shapes``) fit ``budget_bytes``."""
    per_step = sum(_numel(s) for s in shapes.values()) * batch * itemsize
    return max(1, min(timesteps, MAX_BLOCK_STEPS, budget_bytes // max(per_step, 1)))


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class _Executor:
    """Runs one batch through the graph, block by block, carrying neuron state."""

    def __init__(self, net: SpikingNetwork, engine: str):
        self.net = net
        self.engine = engine
        self.state: dict[str, object] = {}
        self.static_cache: dict[str, torch.Tensor] = {}
        # engine "event": the weighted layers that propagate events (None: all that can);
        # ``densities`` (when a dict) records each spike-fed weighted layer's input density
        self.event_layers: set[str] | None = None
        self.densities: dict[str, float] | None = None
        self.buffers: dict[str, torch.Tensor] = {}  # reused spike outputs (no-grad runs)
        # per-neuron spike counts of the last block, summed by the neuron layers themselves
        self.block_counts: dict[str, torch.Tensor] = {}
        self.uses = {n: len(net.consumers_of(n)) for n in (INPUT, *net.names)}
        self.uses[net.output_name] += 1

    def block(self, x: _Value, steps: int, keep: tuple[str, ...] = ()) -> dict[str, _Value]:
        """Evaluate every layer for one block; returns the output node and ``keep`` layers."""
        net = self.net
        vals = {INPUT: x}
        left = dict(self.uses)
        kept = {}
        for name in net.names:
            ins = [vals[i] for i in net.inputs_of(name)]
            module = net.get_submodule(name)
            if name in self.static_cache:
                out = _Value(self.static_cache[name], True)
            elif net.kind(name) == "temporal":
                cur = ins[0]
                if name not in self.state:
                    template = cur.tensor if cur.static else cur.tensor[0]
                    self.state[name] = module.initial_state(template)
                if isinstance(module, SpikingNeuron) and not torch.is_grad_enabled():
                    # on CPU the neuron layer counts its spikes in the same pass (compiled
                    # kernel); on GPUs the engine sums them below (fewer kernel launches)
                    on_cpu = self.state[name].device.type == "cpu"
                    counts = torch.zeros_like(self.state[name][0]) if name in keep and on_cpu else None
                    y, self.state[name] = module.forward_block(cur.tensor, self.state[name], steps,
                                                               cur.static, out=self.buffers.get(name),
                                                               counts=counts)
                    self.buffers[name] = y
                    if counts is not None:
                        self.block_counts[name] = counts
                else:
                    y, self.state[name] = module.forward_block(cur.tensor, self.state[name], steps, cur.static)
                out = _Value(y, False)
            else:
                out = self._synaptic(name, module, ins, steps)
                if out.static:
                    self.static_cache[name] = out.tensor
            vals[name] = out
            if name in keep:
                kept[name] = out
            for i in net.inputs_of(name):
                left[i] -= 1
                if left[i] == 0 and i not in keep:
                    del vals[i]
        kept[net.output_name] = vals[net.output_name]
        return kept

    def _synaptic(self, name: str, module: nn.Module, ins: list[_Value], steps: int) -> _Value:
        if all(v.static for v in ins):
            return _Value(apply_synaptic(module, *[v.tensor for v in ins]), True)
        batch = next(v.tensor.shape[1] for v in ins if not v.static)
        flat = []
        for v in ins:
            t = v.tensor
            if v.static:
                t = t.unsqueeze(0).expand(steps, *t.shape)
            flat.append(t.reshape(steps * batch, *t.shape[2:]))
        weighted = len(flat) == 1 and self.net.kind(name) == "weighted"
        if weighted and self.densities is not None:
            self.densities[name] = float(torch.count_nonzero(flat[0])) / max(flat[0].numel(), 1)
        if (self.engine == "event" and weighted
                and (self.event_layers is None or name in self.event_layers)):
            y = event_apply(module, flat[0])
        else:
            y = apply_synaptic(module, *flat)
        return _Value(y.view(steps, batch, *y.shape[1:]), False)


def run_batch(net: SpikingNetwork, x: torch.Tensor, encoder: Encoder, timesteps: int, *,
              seed: int, engine: str, block_steps: int, sources: dict[str, str],
              event_layers: list[str] | None = None) -> BatchRun:
    """Simulate one batch ``x`` ``(B, ...)`` for ``timesteps`` steps.

    ``event_layers`` (engine ``"auto"``): the choice an earlier batch measured; this batch
    then uses it from its first step instead of measuring again.

    ``sources`` maps each counted layer to ``"events"`` (sum of its binary outputs) or
    ``"analog"`` (number of non-zero outputs), per neuron, over steps and batch.
    """
    encoder.start(x, timesteps, seed)
    mode = "dense" if engine == "auto" else engine
    ex = _Executor(net, mode)
    extra: dict = {}
    if engine == "auto" and event_layers is not None:
        ex.event_layers = set(event_layers)
        ex.engine = mode = "event" if event_layers else "dense"
        extra = {"input_density": {}, "event_layers": sorted(event_layers)}
    elif engine == "auto":
        ex.densities = {}
    batch = x.shape[0]
    acc = None
    preds = torch.empty((timesteps, batch), dtype=torch.int64, device=x.device)
    counts: dict[str, torch.Tensor] = {}
    spiking = [s for s, kind in sources.items() if kind == "events" and s != INPUT]
    activity = 0.0
    for t0 in range(0, timesteps, block_steps):
        steps = min(block_steps, timesteps - t0)
        inp = _Value(encoder.block(t0, t0 + steps), encoder.static)
        kept = ex.block(inp, steps, keep=tuple(s for s in sources if s != INPUT))
        kept[INPUT] = inp
        for s, kind in sources.items():
            v = kept[s]
            if kind == "events" and s in ex.block_counts:  # summed by the neuron layer
                total = ex.block_counts.pop(s).to(torch.float64)
            else:
                t = v.tensor if kind == "events" else (v.tensor != 0).to(v.tensor.dtype)
                total = t.sum(0) * steps if v.static else sum_steps_and_batch(t)
                total = total.to(torch.float64)
            counts[s] = total if s not in counts else counts[s] + total
        if t0 == 0 and spiking:
            fired = sum(float(counts[s].sum()) for s in spiking)
            size = sum(counts[s].numel() for s in spiking) * steps * batch
            activity = fired / size
        if t0 == 0 and ex.densities is not None:
            ex.event_layers = {name for name, d in ex.densities.items()
                               if d < event_density_limit(net.get_submodule(name), x.device)}
            extra = {"input_density": dict(ex.densities), "event_layers": sorted(ex.event_layers)}
            ex.densities = None
            if ex.event_layers:
                ex.engine = mode = "event"
        out = kept[net.output_name]
        y = out.tensor.unsqueeze(0).expand(steps, *out.tensor.shape) if out.static else out.tensor
        y = y.reshape(steps, batch, -1)
        running = torch.cumsum(y, 0) if acc is None else acc.unsqueeze(0) + torch.cumsum(y, 0)
        acc = running[-1].clone()
        preds[t0:t0 + steps] = running.argmax(-1)
    return BatchRun(acc, preds, counts, mode, activity, extra)


def run_sequence(net: SpikingNetwork, x: torch.Tensor, timesteps: int | None = None,
                 static: bool = False) -> torch.Tensor:
    """Differentiable run over a time-first input ``(T, B, ...)`` (or a static ``(B, ...)``
    with ``timesteps``): the output layer's value at every step, ``(T, B, ...)``."""
    if static:
        if timesteps is None:
            raise ValueError("run_sequence with static=True needs 'timesteps'.")
        steps = timesteps
    else:
        if x.dim() < 2:
            raise ValueError(f"SpikingNetwork expects a time-first input (T, B, ...). Got shape {tuple(x.shape)}.")
        steps = x.shape[0]
    ex = _Executor(net, "dense")
    out = ex.block(_Value(x, static), steps)[net.output_name]
    return out.tensor.unsqueeze(0).expand(steps, *out.tensor.shape) if out.static else out.tensor
