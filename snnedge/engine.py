"""The torch simulation engines: one batch, all its time steps (:func:`run_batch`).

Both engines walk the network with the :class:`~snnedge.executor.Executor`, layer by layer
over a *block* of time steps: every synaptic module runs once on the block with time folded
into the batch (``(T_block * B, ...)``), then each temporal module (neuron) updates step by
step. The state carried between blocks is the membrane of every neuron, so memory is bounded
by the block size, not by ``T``. Every engine, torch or not (brian2), returns a
:class:`BatchRun` per batch, which :func:`snnedge.simulate` assembles into the result.

* ``dense``: synaptic modules are ordinary dense convolutions and matrix products.
* ``event``: weighted layers fed by spikes propagate only the non-zero inputs
  (:mod:`snnedge.events`): one weight row per spike for ``Linear``, one kernel column per
  spike and tap for ``Conv2d``, accumulated by a compiled sparse kernel.
* ``auto``: every block of the first batch measures the density of non-zero inputs of
  every spike-fed weighted layer that has an event path as it reaches it (a layer whose
  density stays where it was is measured at doubling gaps, :class:`DensitySchedule`); in
  that block, each such layer propagates events where its density is below the break-even
  rule :func:`snnedge.events.event_density_limit` (fitted to
  examples/benchmarks/event_layers.py; scaled by this machine's measured break-evens, kept
  by ``snnedge calibrate`` or measured quickly on first use, :mod:`snnedge.path_calibration`;
  the rule alone with ``SNNEDGE_CALIBRATION=off``), or, under the opt-in
  ``"timed"`` policy of :mod:`snnedge.path_choice`, takes the path that timed faster on this
  machine at that density.
  Activity often differs in the first steps, while the membranes charge, from later on.
  Later batches of the same ``simulate`` call keep the choice of the first batch's last
  block; a distributed run keeps the first block's, which rank 0 shares.
  On GPUs ``auto`` is dense: on an H200 cuDNN beat the event path even at batch 1 and 2%
  activity (examples/benchmarks/RESULTS.md).

In both engines, no-gradient runs take the fast paths of :func:`snnedge.dense_paths.apply_synaptic`:
tiling pools on NCHW inputs in a compiled kernel (sums of strided slices where it is not
built), and CPU convolutions channels-last (the
neurons and pools after them keep that layout). On the CPU a neuron layer whose only consumer
is a tiling average or sum pool runs fused with it (:attr:`Executor.fuse_pools`): one kernel
pass writes the pooled spikes and the counts, never the spikes at full resolution.

A value that is the same at every step (direct encoding, and any weight-free or weighted
layer fed only by it) is computed once per batch: a static current costs one convolution,
not ``T``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .encoders import Encoder
from .executor import Executor, Value
from .layers import INPUT
from .memory import cpu_cache_bytes, format_bytes
from .network import SpikingNetwork
from .neurons import sum_steps_and_batch
from .path_choice import density_bucket
from .readout import output_scale, step_weights

# Activations of one block (all layers, T_block x B samples) where the caches are not known
# (GPUs, platforms without Linux's sysfs). On a CPU a block is sized by the activations alive
# at once (live_numel: the executor frees each as soon as it is read) against
# CACHE_BLOCK_FACTOR x its caches (block_budget). Fitted on 22 networks (the speed networks
# and the zoo's, examples/benchmarks/RESULTS.md, issue 16 section 8; AMD EPYC Zen 4, 32 MiB
# L3 + 1 MiB L2 per core, 2 threads, T = 32, batch 100), simulate / dense bound for each
# network at its block size: budget 1.0x the caches worst 1.31, median 0.92; 1.5x 1.20 /
# 0.84; 2x 1.43 / 0.83; 4x 1.90 / 0.79; the best size per network 1.16 / 0.76; the sum of
# all layers' activations within 128 MiB (the rule before) 1.32 / 0.89. Larger blocks share
# per-call costs; too large, the blocks' activations leave the caches between layers.
DEFAULT_BLOCK_BYTES = 128 * 2**20
CACHE_BLOCK_FACTOR = 1.5
# Whatever the live activations, a block's activations summed over all layers stay within
# this: resnet_deep (58 layers, 51 MiB per step in all, 1.8 MiB alive at once) in blocks of
# 28 steps peaked at 854-1227 MiB of RSS over 4 runs of batch 100 (T = 32 and 512, torch
# 2.14.1), the allocator's high-water mark moving from run to run; in blocks of 10 steps
# (this cap) at 834-921 MiB (T = 512 / T = 32 within 1.03-1.09), as fast as 8-16 steps.
MAX_BLOCK_BYTES = 4 * DEFAULT_BLOCK_BYTES
MAX_BLOCK_STEPS = 32
# ... unless a layer's call would then be too small to pay for itself: a block takes at least
# as many steps as give the layers' outputs this many bytes on average per call (per-call
# costs: Python, dispatch, oneDNN's set-up), over the two bounds above. Networks of many thin
# layers (tv_densenet121: 368 layers of 0.93 MiB per step on average, held to 1 step by
# MAX_BLOCK_BYTES; tv_mobilenet_v2 1.02 MiB, 2 steps by the cache budget) ran 1.13 and 0.92x
# the bound, 0.86 and 0.78x in blocks of 4. Fitted on 27 networks (examples/benchmarks/
# block_sweep.py, RESULTS.md issue 16 section 9; AMD EPYC Zen 4, 2 threads, T = 32, batch
# 100): worst / median simulate / bound 1.18 / 0.70 without this floor, 1.01 / 0.70 at 1 or
# 2 MiB, 1.01 / 0.66 at 4 MiB, 1.63 / 0.66 at 8 MiB; the best size per network 1.01 / 0.65.
MIN_LAYER_CALL_BYTES = 4 * 2**20
# Fewest steps x samples per block when memory allows: work a block does once per neuron or
# weight (state, per-neuron counts, a linear layer's weights read from memory) is shared by
# them, at the price of larger activations. VGG-16 at 224 px, one image, T = 32 (Xeon,
# AVX-512, 2 threads, quiet, torch 2.14.1, median of 3 simulate calls after a first one,
# peak = the process's VmHWM, weights and torch included), 2026-12-06, after counted neuron
# layers were freed as soon as read: blocks of 2 steps 4.52 s at 1.50 GiB, 3: 4.22-4.25 s
# at 1.52 GiB, 4: 4.03-4.10 s at 1.53-1.54 GiB, 6: 3.94 s at 1.65 GiB, 8: 3.87 s at
# 1.63 GiB (issue 17 asks for <= 1.0x the dense bound, about 4.7 s, within 2 GB), so 4.
MIN_BLOCK_ROWS = 4
# Memory a block may need per step, in multiples of its activations (copies in other layouts,
# sparse-kernel buffers): only blocks within the free memory at this factor are started.
MEMORY_FACTOR = 2
# Largest per-neuron spike count a float32 tensor holds exactly (integers up to 2^24): below
# it the neuron layers add up their counts over a whole batch run in the state's float type.
EXACT_COUNTS = 2**24


@dataclass
class BatchRun:
    """What one batch produced, whatever the engine (:func:`snnedge.simulate.assemble_result`
    turns a list of them into the :class:`~snnedge.SimulationResult`)."""

    output: torch.Tensor                 # (B, C) accumulated readout (weighted, snnedge.readout)
    step_predictions: torch.Tensor       # (T, B) argmax of the running readout
    counts: dict[str, torch.Tensor]      # source -> per-neuron totals over steps and batch
    engine: str = "dense"
    activity: float = 0.0
    extra: dict = field(default_factory=dict)
    readout: torch.Tensor | None = None  # (T, B, C) the readout of each step, unweighted


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


def block_budget(device: torch.device | str) -> int:
    """Bytes of live activations a block aims at on ``device``: on a CPU,
    ``CACHE_BLOCK_FACTOR`` times what its caches hold for torch's threads
    (:func:`snnedge.memory.cpu_cache_bytes`; ``DEFAULT_BLOCK_BYTES`` where the platform does
    not say); elsewhere ``DEFAULT_BLOCK_BYTES``."""
    if torch.device(device).type != "cpu":
        return DEFAULT_BLOCK_BYTES
    cache = cpu_cache_bytes(torch.get_num_threads())
    return int(CACHE_BLOCK_FACTOR * cache) if cache else DEFAULT_BLOCK_BYTES


def live_numel(net, shapes: dict[str, tuple[int, ...]], keep: tuple[str, ...] = (),
               self_counting: bool = True) -> int:
    """The most values per sample that one step of a block holds at once, as
    :meth:`snnedge.executor.Executor.block` runs the layers in order: a layer's output lives
    from its layer until its last consumer has run; layers in ``keep`` live to the end of the
    block, except neuron layers that count their own spikes (``self_counting``: no-gradient
    CPU runs). A recurrent network keeps every layer's output."""
    if getattr(net, "recurrent_edges", None):
        return sum(_numel(s) for s in shapes.values())
    left = {n: len(net.consumers_of(n)) for n in shapes}
    held = {n for n in keep if n in shapes and not (self_counting and net.kind(n) == "temporal")}
    alive: dict[str, int] = {}
    total = peak = 0
    for name in net.names:
        alive[name] = _numel(shapes[name])
        total += alive[name]
        peak = max(peak, total)
        for i in net.inputs_of(name):
            if i in left:
                left[i] -= 1
                if left[i] == 0 and i not in held:
                    total -= alive.pop(i, 0)
    return peak


def block_steps_for(shapes: dict[str, tuple[int, ...]], batch: int, timesteps: int,
                    itemsize: int, budget_bytes: int = DEFAULT_BLOCK_BYTES,
                    free_bytes: int | None = None, requested: int | None = None,
                    live: int | None = None) -> int:
    """Time steps per block.

    One step of a block holds at most every layer's activations, ``per_step = sum(layer
    sizes) x batch x itemsize`` (layer ``shapes``), or, where ``live`` is given (values per
    sample alive at once, :func:`live_numel`: the executor frees each activation as soon as
    it is read), ``live x batch x itemsize``, and then also all layers' activations of the
    block within ``MAX_BLOCK_BYTES``, unless the layers' outputs would then average less than
    ``MIN_LAYER_CALL_BYTES`` per call; the simulation also keeps, whatever the block,
    ``fixed = sum(layer sizes) x (batch x itemsize + 16)`` (membranes; per-neuron counts and
    synaptic-event weights in float64). A block takes as many steps as fit ``budget_bytes``,
    but at least ``ceil(MIN_BLOCK_ROWS / batch)``: what a block does once per neuron is then
    shared by several steps x samples. With ``free_bytes`` (what the device can still
    allocate, :func:`snnedge.memory.available_memory`) a block also keeps
    ``fixed + MEMORY_FACTOR x steps x per_step`` within it. ``requested`` (simulate's
    ``block_steps``) is taken as given but checked the same way.

    Raises ``MemoryError`` before anything is allocated when not even one step (or the
    requested block) fits ``free_bytes``, saying what fits.
    """
    size, per_step, fixed = _block_sizes(shapes, batch, itemsize, live)
    fit = budget_bytes // max(per_step, 1)
    if live:  # and all layers' activations of the block within MAX_BLOCK_BYTES ...
        fit = min(fit, MAX_BLOCK_BYTES // max(size * batch * itemsize, 1))
        # ... but calls of MIN_LAYER_CALL_BYTES per layer on average
        fit = max(fit, -(-MIN_LAYER_CALL_BYTES * len(shapes) // max(size * batch * itemsize, 1)))
    fewest = -(-MIN_BLOCK_ROWS // batch)
    steps = requested or max(1, min(timesteps, MAX_BLOCK_STEPS, max(fit, fewest)))
    if free_bytes is None:
        return steps
    fits = (free_bytes - fixed) // max(MEMORY_FACTOR * per_step, 1)
    if requested is None:
        steps = min(steps, fits)
    if steps < 1 or steps > fits:
        one = size * itemsize * (MEMORY_FACTOR + 1)
        most = max(0, (free_bytes - 16 * size) // one)
        fix = (f"use block_steps <= {fits}" if requested and fits >= 1 else
               f"use batch_size <= {most}" if most >= 1 else "use a smaller input or network")
        raise MemoryError(
            f"simulate: a block of {steps} step(s) of a batch of {batch} needs about "
            f"{format_bytes(fixed + MEMORY_FACTOR * max(steps, 1) * per_step)} "
            f"({format_bytes(per_step)} of layer activations per step, {format_bytes(fixed)} of "
            f"state), but only {format_bytes(free_bytes)} can be allocated; {fix}.")
    return steps


def _block_sizes(shapes: dict[str, tuple[int, ...]], batch: int, itemsize: int,
                 live: int | None) -> tuple[int, int, int]:
    """``(values per sample in all layers, bytes per step of a block, fixed bytes)`` as
    :func:`block_steps_for` counts them."""
    size = sum(_numel(s) for s in shapes.values())
    return size, (live or size) * batch * itemsize, size * (batch * itemsize + 16)


def most_block_bytes(shapes: dict[str, tuple[int, ...]], batch: int, timesteps: int,
                     itemsize: int, live: int | None = None, requested: int | None = None) -> int:
    """The most memory :func:`block_steps_for` can ask the free memory for (its largest
    block, at ``requested`` or ``min(timesteps, MAX_BLOCK_STEPS)`` steps): what a caller
    passes as ``need`` to :func:`snnedge.memory.available_memory`."""
    _, per_step, fixed = _block_sizes(shapes, batch, itemsize, live)
    return fixed + MEMORY_FACTOR * (requested or min(timesteps, MAX_BLOCK_STEPS)) * per_step


# Engine "auto" measures each spike-fed layer's input density block by block (a pass over a
# sample of the input: on resnet_deep, batch 100 in 32 one-step blocks, 0.15 of 0.82 s at 2
# threads with torch.count_nonzero; the compiled count, executor.input_density, takes 38 us
# where that took 250, for 131 k values at 2 threads on an AMD EPYC with AVX2). A
# layer whose density stayed in the same half-octave (snnedge.path_choice.density_bucket: the
# same choice) keeps its path without measuring for 1, then 2, 4, 8 ... blocks (each such
# measurement doubles the gap; a density that moved resets it), so a run of 32 blocks
# measures a steady layer 6 times instead of 32, and a density that drifts is still seen.
class DensitySchedule:
    """Which layers engine ``"auto"`` leaves unmeasured in the next block."""

    def __init__(self) -> None:
        self.block = 0
        self.gap: dict[str, int] = {}
        self.due: dict[str, int] = {}
        self.bucket: dict[str, int] = {}

    def after_block(self, densities: dict[str, float]) -> set[str]:
        """Record the block just run (``densities``: the layers it measured) and return the
        layers the next block does not measure."""
        self.block += 1
        for name, d in densities.items():
            bucket = density_bucket(d)
            steady = self.bucket.get(name) == bucket
            self.bucket[name] = bucket
            self.gap[name] = max(1, 2 * self.gap.get(name, 0)) if steady else 0
            self.due[name] = self.block + self.gap[name]
        return {name for name, due in self.due.items() if due > self.block}


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def run_batch(net: SpikingNetwork, x: torch.Tensor, encoder: Encoder, timesteps: int, *,
              seed: int, engine: str, block_steps: int, sources: dict[str, str],
              event_layers: list[str] | None = None,
              on_choice: Callable[[list[str]], None] | None = None,
              keep_readout: bool = False, graph=None) -> BatchRun:
    """Simulate one batch ``x`` ``(B, ...)`` for ``timesteps`` steps.

    ``event_layers`` (engine ``"auto"``): the choice an earlier batch measured; this batch
    then uses it from its first step instead of measuring again. Otherwise every block
    measures and chooses for itself, and the batch reports its last block's choice; with
    ``on_choice`` the first block's choice is handed to it as soon as it is made (e.g. to
    the other ranks of a distributed run) and kept for the rest of the batch.

    ``sources`` maps each counted layer to ``"events"`` (sum of its binary outputs) or
    ``"analog"`` (number of non-zero outputs), per neuron, over steps and batch.

    The readout is summed with the weights ``(t / T) ** p`` of the network's
    ``readout_exponent`` (:mod:`snnedge.readout`; none when it is 0); ``keep_readout`` also
    keeps each step's unweighted readout (``BatchRun.readout``, on the CPU).

    ``graph``: the view of ``net`` the executor runs (:func:`snnedge.replication.
    fold_replication`; default ``net`` itself).
    """
    encoder.start(x, timesteps, seed)
    mode = "dense" if engine == "auto" else engine
    ex = Executor(net if graph is None else graph, mode)
    ex.fuse_pools = True  # neuron layers are read through their counts only
    # the neuron layers add up their own spikes over the whole run, exactly while no count can
    # pass float32's 2^24 (else per block, in float64)
    ex.accumulate_counts = timesteps * x.shape[0] < EXACT_COUNTS
    extra: dict = {}
    if engine == "auto" and event_layers is not None:
        ex.event_layers = set(event_layers)
        ex.engine = mode = "event" if event_layers else "dense"
        extra = {"input_density": {}, "event_layers": sorted(event_layers)}
    elif engine == "auto":
        ex.densities = {}
    latest: dict[str, float] = {}  # engine "auto": each layer's last measured density
    schedule = DensitySchedule()
    batch = x.shape[0]
    acc = None
    preds = torch.empty((timesteps, batch), dtype=torch.int64, device=x.device)
    counts: dict[str, torch.Tensor] = {}
    spiking = [s for s, kind in sources.items() if kind == "events" and s != INPUT]
    activity = 0.0
    exponent = net.readout_exponent
    per_step = [] if keep_readout else None
    for t0 in range(0, timesteps, block_steps):
        steps = min(block_steps, timesteps - t0)
        inp = Value(encoder.block(t0, t0 + steps), encoder.static)
        kept = ex.block(inp, steps, keep=tuple(s for s in sources if s != INPUT))
        kept[INPUT] = inp
        for s, kind in sources.items():
            if kind == "events" and ex.running_counts(s) is not None:
                continue  # added up by the neuron layer over all blocks
            counted = ex.take_counts(s) if kind == "events" else None  # summed by the neuron layer
            if counted is not None:  # (a neuron layer fused with its pool has no other value)
                total = counted.to(torch.float64)
            else:
                v = kept[s]
                t = v.tensor if kind == "events" else (v.tensor != 0).to(v.tensor.dtype)
                total = t.sum(0) * steps if v.static else sum_steps_and_batch(t)
                total = total.to(torch.float64)
            counts[s] = total if s not in counts else counts[s] + total
        if t0 == 0 and spiking:
            first = [counts[s] if s in counts else ex.running_counts(s) for s in spiking]
            fired = sum(float(c.sum()) for c in first)
            size = sum(c.numel() for c in first) * steps * batch
            activity = fired / size
        if ex.densities is not None:  # "auto", choosing: this block chose from its densities
            kept_paths = {n for n in (ex.event_layers or ()) if n in ex.unmeasured}
            ex.event_layers = kept_paths | {name for name, events in ex.choices.items() if events}
            ex.choices = {}
            latest.update(ex.densities)
            extra = {"input_density": dict(latest), "event_layers": sorted(ex.event_layers)}
            ex.engine = mode = "event" if ex.event_layers else "dense"
            # the next block measures and chooses again (activity settles after the first
            # steps), except where the choice is shared at once (distributed runs) or no
            # layer could take events (GPUs); a layer whose density holds still skips
            # measuring for a while (DensitySchedule)
            ex.unmeasured = schedule.after_block(ex.densities)
            ex.densities = {} if on_choice is None and x.device.type == "cpu" else None
            if on_choice is not None:
                on_choice(sorted(ex.event_layers))
        y = kept[net.output_name].per_step(steps).reshape(steps, batch, -1)
        if per_step is not None:
            per_step.append(y.cpu().clone())
        if exponent:
            y = y * step_weights(exponent, t0, t0 + steps, timesteps, y)
        running = torch.cumsum(y, 0) if acc is None else acc.unsqueeze(0) + torch.cumsum(y, 0)
        acc = running[-1].clone()
        preds[t0:t0 + steps] = running.argmax(-1)
    if exponent:
        acc = acc * output_scale(exponent, timesteps)
    for s in sources:  # the neuron layers' own totals, in float64 as the others
        running = ex.running_counts(s)
        if running is not None:
            counts[s] = running.to(torch.float64)
    counts = {s: counts[s] for s in sources if s in counts}  # in the sources' order
    return BatchRun(acc, preds, counts, mode, activity, extra,
                    None if per_step is None else torch.cat(per_step))
