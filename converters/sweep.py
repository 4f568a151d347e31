r"""One sweep through a spiking network, layer by layer over all calibration samples.

The engines (:mod:`snnedge.engine`) run every layer of the network for one batch of samples
and one block of time steps before the next. Calibration needs the opposite order: a layer's
correction is a mean over *all* calibration samples, and the layers after it must see the
corrected layer. :class:`Sweep` walks the network's temporal layers (neurons, spiking max
pools) in topological order and keeps, for every sample, the spike trains of the layers that
are still to be read:

* a temporal layer is *materialized*: its output over the ``T`` calibration steps is stored
  for every sample, bit-packed when it is binary (``T / 8`` bytes per neuron and sample);
* a synaptic layer (convolution, pooling, addition, ...) is computed when a temporal layer
  after it needs its value, chunk by chunk from the stored trains, and never stored (a
  value that is the same at every step, such as the first convolution of a directly encoded
  input, is stored once per sample);
* stored trains are dropped as soon as the last temporal layer that reads them is done.

Each synaptic layer runs about once on ``T x N`` inputs, each neuron layer once per
correction pass, so the whole sweep costs a number of passes that does not grow with the
depth. Samples go through in chunks sized from :data:`SWEEP_BYTES`, so memory is bounded
by one chunk's activations plus the stored spike trains of the layers in flight.

The synaptic layers run through :func:`snnedge.dense_paths.apply_synaptic` and the neurons
through their own ``forward_block``: the float operations of :func:`snnedge.simulate`'s
dense engine.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from snnedge.dense_paths import apply_synaptic
from snnedge.layers import INPUT
from snnedge.network import SpikingNetwork
from snnedge.neurons import SpikingNeuron, sum_steps_and_batch

# Working set of one chunk: the largest layer's input and output over T steps.
SWEEP_BYTES = 256 * 2**20


class Sweep:
    """Layer-by-layer evaluation of ``net`` over the samples ``x`` for ``timesteps`` steps
    (see the module docstring). Call :meth:`run` for each temporal layer in topological
    order."""

    def __init__(self, net: SpikingNetwork, x: torch.Tensor, timesteps: int,
                 budget_bytes: int | None = None):
        self.net, self.x, self.T = net, x, int(timesteps)
        self.temporal = [n for n in net.names if net.kind(n) == "temporal"]
        self.static = self._static_layers()
        self.sources = {n: self._sources(n) for n in self.temporal}
        last: dict[str, str] = {}
        for n in self.temporal:
            for s in self.sources[n]:
                last[s] = n
        self.last_reader = last
        per_sample = max(_numel(s) for s in net.shapes(tuple(x.shape[1:])).values())
        per_sample = max(per_sample, _numel(x.shape[1:]))
        itemsize = torch.finfo(x.dtype).bits // 8
        self.budget = SWEEP_BYTES if budget_bytes is None else int(budget_bytes)
        self.chunk = max(1, min(x.shape[0], self.budget // (3 * self.T * per_sample * itemsize)))
        self.stored: dict[str, list] = {}   # layer -> per-chunk (packed trains | static values)

    # -- graph structure -------------------------------------------------------------------
    def _static_layers(self) -> set[str]:
        static = {INPUT}
        for n in self.net.names:
            if self.net.kind(n) != "temporal" and all(i in static for i in self.net.inputs_of(n)):
                static.add(n)
        return static

    def _sources(self, name: str) -> set[str]:
        """The stored values that the input of temporal layer ``name`` is computed from."""
        out, stack, seen = set(), list(self.net.inputs_of(name)), set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in self.static or self.net.kind(n) == "temporal":
                out.add(n)
            else:
                stack.extend(self.net.inputs_of(n))
        return out

    def chunks(self) -> Iterator[tuple[int, int]]:
        for k, i in enumerate(range(0, self.x.shape[0], self.chunk)):
            yield k, i

    # -- values ----------------------------------------------------------------------------
    def _static_value(self, name: str, k: int, i: int) -> torch.Tensor:
        if name == INPUT:
            return self.x[i:i + self.chunk]
        if name not in self.stored:
            parts = []
            for kk, ii in self.chunks():
                ins = [self._static_value(s, kk, ii) for s in self.net.inputs_of(name)]
                parts.append(apply_synaptic(self.net.get_submodule(name), *ins))
            self.stored[name] = parts
        return self.stored[name][k]

    @torch.no_grad()
    def value(self, name: str, k: int, i: int) -> tuple[torch.Tensor, bool]:
        """Layer ``name``'s output on chunk ``k`` (starting at sample ``i``): ``(tensor,
        static)``, the tensor ``(T, b, ...)``, or ``(b, ...)`` when static."""
        if name in self.static:
            return self._static_value(name, k, i), True
        if self.net.kind(name) == "temporal":
            return unpack(self.stored[name][k]), False
        ins = [self.value(s, k, i) for s in self.net.inputs_of(name)]
        b = next(v.shape[1] for v, st in ins if not st)
        flat = []
        for v, st in ins:
            per_step = v.unsqueeze(0).expand(self.T, *v.shape) if st else v
            flat.append(per_step.reshape(self.T * b, *per_step.shape[2:]))
        y = apply_synaptic(self.net.get_submodule(name), *flat)
        return y.view(self.T, b, *y.shape[1:]), False

    def current(self, name: str, k: int, i: int) -> tuple[torch.Tensor, bool]:
        """The input of temporal layer ``name`` on chunk ``k``."""
        (src,) = self.net.inputs_of(name)
        return self.value(src, k, i)

    # -- running temporal layers -----------------------------------------------------------
    @torch.no_grad()
    def counts(self, name: str, inputs: list | None = None,
               checkpoints: tuple[int, ...] | None = None) -> dict[int, torch.Tensor]:
        """Per-neuron spike counts of temporal layer ``name`` after each of ``checkpoints``
        steps (default: ``T``), summed over all samples, from its initial state (its output
        is not stored): ``{t: counts}``. ``inputs``: the chunks' currents kept from an
        earlier call of :meth:`currents`, else computed here."""
        module = self.net.get_submodule(name)
        checkpoints = tuple(sorted(set(checkpoints or (self.T,))))
        total: dict[int, torch.Tensor] = {}
        for k, i in self.chunks():
            cur, static = inputs[k] if inputs is not None else self.current(name, k, i)
            for t, c in _counts(module, cur, static, checkpoints).items():
                total[t] = c if t not in total else total[t] + c
        return total

    @torch.no_grad()
    def currents(self, name: str) -> list | None:
        """Every chunk's input of ``name``, kept when all of them fit the memory budget
        (then a second pass over the layer does not recompute them), else ``None``."""
        shape = self.net.shapes(tuple(self.x.shape[1:]))[self.net.inputs_of(name)[0]]
        static = self.net.inputs_of(name)[0] in self.static
        size = _numel(shape) * self.x.shape[0] * (1 if static else self.T) * self.x.element_size()
        if size > self.budget:
            return None
        return [self.current(name, k, i) for k, i in self.chunks()]

    @torch.no_grad()
    def store(self, name: str, inputs: list | None = None,
              on_output: Callable[[int, torch.Tensor], None] | None = None) -> None:
        """Run temporal layer ``name`` on every chunk and store its output where a later
        temporal layer reads it (``on_output(chunk, output)`` sees every chunk's output);
        then drop the stored values that no later temporal layer reads."""
        module = self.net.get_submodule(name)
        parts = []
        for k, i in self.chunks():
            cur, static = inputs[k] if inputs is not None else self.current(name, k, i)
            y = _run(module, cur, static, self.T)
            if on_output is not None:
                on_output(k, y)
            if name in self.last_reader:
                parts.append(pack(y, getattr(module, "emits_spikes", False) or is_binary(y)))
        if parts:
            self.stored[name] = parts
        for s, reader in self.last_reader.items():
            if reader == name and s != INPUT:
                self.stored.pop(s, None)


def _run(module: nn.Module, cur: torch.Tensor, static: bool, steps: int) -> torch.Tensor:
    """The output ``(T, b, ...)`` of ``module`` from its initial state."""
    y, _ = module.forward_block(cur, module.initial_state(cur if static else cur[0]), steps, static)
    return y


def _counts(module: nn.Module, cur: torch.Tensor, static: bool,
            checkpoints: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """``{t: per-neuron spikes of the first t steps, summed over samples, float64}``: the
    neurons count in their own pass (compiled kernel on CPU), one segment per checkpoint."""
    state = module.initial_state(cur if static else cur[0])
    out, start, total = {}, 0, None
    for t in checkpoints:
        seg = cur if static else cur[start:t]
        if isinstance(module, SpikingNeuron):
            c = torch.zeros_like(state[0])
            _, state = module.forward_block(seg, state, t - start, static, counts=c)
        else:
            y, state = module.forward_block(seg, state, t - start, static)
            c = sum_steps_and_batch(y)
        total = c.double() if total is None else total + c.double()
        out[t], start = total, t
    return out


def _numel(shape) -> int:
    return math.prod(int(s) for s in shape)


def is_binary(y: torch.Tensor) -> bool:
    """Whether every value of ``y`` is 0 or 1 (a spiking max pool's output, spikes of a
    module that does not own neurons), so that :func:`pack` keeps it exactly as bits."""
    return bool(((y == 0) | (y == 1)).all())


def pack(y: torch.Tensor, binary: bool) -> tuple:
    """A time-first output ``(T, B, ...)`` in compact form: a ``binary`` one (spikes) as bits,
    8 steps per byte, anything else as it is."""
    if not binary:
        return ("raw", y)
    steps = y.shape[0]
    bits = torch.zeros(((steps + 7) // 8, *y.shape[1:]), dtype=torch.uint8, device=y.device)
    for t in range(steps):
        byte = bits[t // 8]
        byte.bitwise_or_(y[t].to(torch.uint8).bitwise_left_shift_(t % 8))
    return ("bits", bits, steps, y.dtype)


def unpack(item: tuple) -> torch.Tensor:
    """The tensor :func:`pack` stored."""
    if item[0] == "raw":
        return item[1]
    _, bits, steps, dtype = item
    out = torch.empty((steps, *bits.shape[1:]), dtype=dtype, device=bits.device)
    for t in range(steps):
        torch.bitwise_and(bits[t // 8], 1 << (t % 8), out=out[t])  # 0 or 2^k
        out[t].clamp_(max=1)
    return out
