"""The simulation engines.

Both engines walk the network layer by layer over a *block* of time steps: every synaptic
module runs once on the block with time folded into the batch (``(T_block * B, ...)``), then
each temporal module (neuron) updates step by step. The state carried between blocks is the
membrane of every neuron, so memory is bounded by the block size, not by ``T``.

* ``dense``: synaptic modules are ordinary dense convolutions and matrix products.
* ``event``: weighted layers fed by spikes propagate only the non-zero inputs: a sparse
  spike matrix times the transposed weight for ``Linear`` (one weight row per spike) and a
  sparse matrix of spike-to-output taps times the kernel matrix for ``Conv2d``.
* ``auto``: dense, switching after the first block to event propagation for ``Linear``
  layers (``"event-linear"``) when activity and batch are small; convolutions stay dense,
  which measured faster on CPU at every activity tried (examples/benchmarks/RESULTS.md).

A value that is the same at every step (direct encoding, and any weight-free or weighted
layer fed only by it) is computed once per batch: a static current costs one convolution,
not ``T``.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from .encoders import Encoder
from .network import INPUT, SpikingNetwork
from .neurons import SpikingNeuron

# Auto engine: switch to event propagation after the first block when the measured mean
# activity of the spiking layers and the batch are both small (see examples/benchmarks).
AUTO_EVENT_MAX_ACTIVITY = 0.05
AUTO_EVENT_MAX_BATCH = 8
DEFAULT_BLOCK_BYTES = 256 * 2**20
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
        self.buffers: dict[str, torch.Tensor] = {}  # reused spike outputs (no-grad runs)
        self.uses = {n: len(net.consumers_of(n)) for n in (INPUT, *net._names)}
        self.uses[net.output_name] += 1

    def block(self, x: _Value, steps: int, keep: tuple[str, ...] = ()) -> dict[str, _Value]:
        """Evaluate every layer for one block; returns the output node and ``keep`` layers."""
        net = self.net
        vals = {INPUT: x}
        left = dict(self.uses)
        kept = {}
        for name in net._names:
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
                    y, self.state[name] = module.forward_block(cur.tensor, self.state[name], steps,
                                                               cur.static, out=self.buffers.get(name))
                    self.buffers[name] = y
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
            return _Value(module(*[v.tensor for v in ins]), True)
        batch = next(v.tensor.shape[1] for v in ins if not v.static)
        flat = []
        for v in ins:
            t = v.tensor
            if v.static:
                t = t.unsqueeze(0).expand(steps, *t.shape)
            flat.append(t.reshape(steps * batch, *t.shape[2:]))
        if self.engine in ("event", "event-linear") and len(flat) == 1 and self.net.kind(name) == "weighted":
            y = event_apply(module, flat[0], convs=self.engine == "event")
        else:
            y = module(*flat)
        return _Value(y.view(steps, batch, *y.shape[1:]), False)


def event_apply(module: nn.Module, x: torch.Tensor, convs: bool = True) -> torch.Tensor:
    """A weighted layer applied to ``x`` ``(N, ...)`` touching only its non-zero entries.

    ``convs=False`` keeps convolutions dense (what ``engine="auto"`` does: on CPU the dense
    convolution kernels beat the sparse tap matrix down to a few percent activity, see
    examples/benchmarks/RESULTS.md)."""
    if isinstance(module, nn.Linear) and x.dim() == 2:
        return _event_linear(module, x)
    if convs and isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros":
        return _event_conv2d(module, x)
    return module(x)


_W_T: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _weight_rows(module: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """``rows`` (a view of the weight) made contiguous, cached per module until the weight
    changes (its version counter moves)."""
    w = module.weight
    key = (w._version, w.data_ptr(), w.dtype, w.device)
    hit = _W_T.get(module)
    if hit is None or hit[0] != key:
        hit = (key, rows.contiguous())
        _W_T[module] = hit
    return hit[1]


def _event_linear(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    # A sparse (samples x inputs) matrix of the spikes times the transposed weight: each
    # spike adds one weight row.
    w_t = _weight_rows(module, module.weight.detach().t())
    out = torch.sparse.mm(x.to_sparse(), w_t)
    return out if module.bias is None else out + module.bias


_TAPS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _conv_taps(module: nn.Conv2d, h: int, w: int, device) -> tuple[torch.Tensor, int, int]:
    """For each input position ``y * w + x`` and tap ``ky * kw + kx``: the output position
    ``oy * ow + ox`` it reaches, or ``oh * ow`` (a spare row) when it reaches none.
    Cached per module and input size, outside the module."""
    key = (h, w, str(device))
    cached = _TAPS.setdefault(module, {})
    if key not in cached:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (module.kernel_size, module.stride,
                                                  module.padding, module.dilation)
        oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        y = torch.arange(h).view(h, 1, 1, 1)
        x = torch.arange(w).view(1, w, 1, 1)
        ny = y + ph - torch.arange(kh).view(1, 1, kh, 1) * dh
        nx = x + pw - torch.arange(kw).view(1, 1, 1, kw) * dw
        oy, ox = torch.div(ny, sh, rounding_mode="floor"), torch.div(nx, sw, rounding_mode="floor")
        ok = (ny >= 0) & (nx >= 0) & (ny % sh == 0) & (nx % sw == 0) & (oy < oh) & (ox < ow)
        pos = torch.where(ok, oy * ow + ox, torch.full_like(oy * ox, oh * ow))
        cached[key] = (pos.reshape(h * w, kh * kw).to(device), oh, ow)
    return cached[key]


def _event_conv2d(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    # Each non-zero input (b, c, y, x) adds kernel column (c, tap) to the output position its
    # tap reaches: a sparse (output position x (c, tap)) matrix times the kernel matrix.
    n, c_in, h, w = x.shape
    taps, oh, ow = _conv_taps(module, h, w, x.device)
    k = taps.shape[1]
    rows_per_sample = oh * ow + 1  # the spare row collects taps that fall off the map
    b, c, y, xx = x.nonzero(as_tuple=True)
    rows = (b * rows_per_sample).unsqueeze(1) + taps[y * w + xx]
    cols = (c * k).unsqueeze(1) + torch.arange(k, device=x.device)
    vals = x[b, c, y, xx].unsqueeze(1).expand(-1, k)
    sparse = torch.sparse_coo_tensor(torch.stack([rows.reshape(-1), cols.reshape(-1)]), vals.reshape(-1),
                                     (n * rows_per_sample, c_in * k), check_invariants=False)
    kernel = module.weight.reshape(module.out_channels, -1).t()
    out = torch.sparse.mm(sparse, kernel).view(n, rows_per_sample, -1)[:, :-1]
    out = out.permute(0, 2, 1).reshape(n, -1, oh, ow)
    if module.bias is not None:
        out = out + module.bias.view(1, -1, 1, 1)
    return out


def run_batch(net: SpikingNetwork, x: torch.Tensor, encoder: Encoder, timesteps: int, *,
              seed: int, engine: str, block_steps: int, sources: dict[str, str]) -> BatchRun:
    """Simulate one batch ``x`` ``(B, ...)`` for ``timesteps`` steps.

    ``sources`` maps each counted layer to ``"events"`` (sum of its binary outputs) or
    ``"analog"`` (number of non-zero outputs), per neuron, over steps and batch.
    """
    encoder.start(x, timesteps, seed)
    mode = "dense" if engine == "auto" else engine
    ex = _Executor(net, mode)
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
            t = v.tensor if kind == "events" else (v.tensor != 0).to(v.tensor.dtype)
            total = t.sum(0) * steps if v.static else t.sum((0, 1))
            total = total.to(torch.float64)
            counts[s] = total if s not in counts else counts[s] + total
        if t0 == 0 and spiking:
            fired = sum(float(counts[s].sum()) for s in spiking)
            size = sum(counts[s].numel() for s in spiking) * steps * batch
            activity = fired / size
            if engine == "auto" and activity <= AUTO_EVENT_MAX_ACTIVITY and batch <= AUTO_EVENT_MAX_BATCH:
                ex.engine = mode = "event-linear"
        out = kept[net.output_name]
        y = out.tensor.unsqueeze(0).expand(steps, *out.tensor.shape) if out.static else out.tensor
        y = y.reshape(steps, batch, -1)
        running = torch.cumsum(y, 0) if acc is None else acc.unsqueeze(0) + torch.cumsum(y, 0)
        acc = running[-1].clone()
        preds[t0:t0 + steps] = running.argmax(-1)
    return BatchRun(acc, preds, counts, mode, activity)


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
