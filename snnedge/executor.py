"""Running a network over blocks of time steps: the executor every engine and training use.

:class:`Executor` walks a :class:`~snnedge.SpikingNetwork` layer by layer over a *block* of
time steps: every synaptic module runs once on the block with time folded into the batch
(``(steps * B, ...)``), then each temporal module (neuron) updates step by step. Between
blocks it carries the state of every temporal module (:attr:`Executor.state`), so a long run
is a sequence of :meth:`Executor.block` calls and memory is bounded by the block size.

Users of this one contract: the torch engines (:func:`snnedge.engine.run_batch`, behind
:func:`snnedge.simulate`), the network's own differentiable call (:func:`run_sequence`) and
training's forward pass (:mod:`snnedge.training.forward`, which hands the state from one
executor to the next to recompute or truncate blocks).

A value that is the same at every step (direct encoding, and any weight-free or weighted
layer fed only by it) is a *static* :class:`Value` of shape ``(B, ...)``, computed once and
kept in :attr:`Executor.static_cache`: a static current costs one convolution, not ``T``.

Recurrent networks (inputs read one step late, ``previous(name)``): the layers on a loop
form one strongly connected component of the graph, and :func:`loop_plan` orders the
components. Each loop runs one step at a time inside the block (its layers see ``(B, ...)``
tensors, the delayed inputs the previous step's output, zeros at ``t = 0``, carried between
blocks in :attr:`Executor.state` under the key ``"name[t-1]"``); the layers outside loops
keep their blocks. A feed-forward network runs exactly as before.

This module needs no import of :mod:`snnedge.network`: it reads the graph through the
views listed in :class:`Graph`, which a :class:`~snnedge.SpikingNetwork` provides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from .dense_paths import apply_synaptic, tiling_pool
from .events import event_apply, native_kernel
from .layers import INPUT, Add, Scale, SumPool2d, TemporalModule
from .neurons import SpikingNeuron
from .path_choice import BatchChoices


class Graph(Protocol):
    """What the executor reads of a network (a :class:`~snnedge.SpikingNetwork` has it all)."""

    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def output_name(self) -> str: ...
    def inputs_of(self, name: str) -> tuple[str, ...]: ...
    def consumers_of(self, name: str) -> tuple[str, ...]: ...
    def kind(self, name: str) -> str: ...
    def get_submodule(self, target: str) -> nn.Module: ...
    @property
    def recurrent_edges(self) -> tuple[tuple[str, str], ...]: ...
    def delayed_inputs_of(self, name: str) -> tuple[str, ...]: ...
    def shapes(self, input_shape) -> dict[str, tuple[int, ...]]: ...


@dataclass
class Value:
    """One layer's output over a block: ``tensor`` is ``(steps, B, ...)``, or ``(B, ...)``
    when ``static`` (the same value at every step)."""

    tensor: torch.Tensor
    static: bool

    def per_step(self, steps: int) -> torch.Tensor:
        """The value at every step, ``(steps, B, ...)`` (a static value expanded, no copy)."""
        if self.static:
            return self.tensor.unsqueeze(0).expand(steps, *self.tensor.shape)
        return self.tensor


class Executor:
    """Runs one batch through a network block by block, carrying the neurons' state.

    Parameters
    ----------
    net:
        The network (:class:`Graph`).
    engine:
        ``"dense"`` (synaptic modules as they are) or ``"event"`` (weighted layers fed by
        spikes propagate only the non-zero inputs, :func:`snnedge.events.event_apply`).
    state:
        Temporal modules' state to start from (layer name -> state), e.g. another executor's
        :attr:`state` after an earlier block; layers not in it start from their initial state.
    static:
        Static layer values already computed for this batch (layer name -> ``(B, ...)``);
        those layers are not run again.

    Attributes
    ----------
    state:
        Layer name -> the temporal module's state after the last block. May be replaced
        between blocks (training detaches it there for truncated BPTT).
    static_cache:
        Layer name -> static value of this batch, filled as static layers are met.
    engine, event_layers:
        The mode of the next block, and (engine ``"event"``) the weighted layers that propagate
        events (``None``: every one that can).
    densities:
        When a dict, each spike-fed weighted layer's fraction of non-zero inputs in the next
        block is recorded in it (how engine ``"auto"`` measures), and a layer for which
        :func:`snnedge.path_choice.choose_path` picks the event path at that density
        propagates events in that block already (a single block, one sample at T <= 32, then gains as
        much as later ones).
    unmeasured:
        Layers whose density is not measured in the next block (``densities`` given): they
        keep their path of the block before (whether they are in ``event_layers``). Engine
        ``"auto"`` puts a layer here while its density stays where it was.
    choices:
        The layers measured in the block (``densities`` given) -> whether each took the event
        path (:func:`snnedge.path_choice.choose_path`).
    fuse_pools:
        When true (no-gradient CPU runs that read neuron layers only through their counts, as
        :func:`snnedge.engine.run_batch` does), a neuron layer whose only consumer is a tiling
        average or sum pool runs fused with it: the pool's value is computed, the neurons'
        spikes are not stored, and :meth:`block` returns no value for that neuron layer even
        when it is in ``keep`` (:meth:`take_counts` has its counts).
    accumulate_counts:
        When true, the neuron layers that count their own spikes keep adding to one tensor
        per layer over all blocks (:meth:`running_counts`) instead of a new one per block
        (:meth:`take_counts`): no zeroing, conversion or addition per block. The counts are
        in the state's float type, so exact while no neuron can pass 2^24 spikes in float32.
    """

    def __init__(self, net: Graph, engine: str = "dense", *,
                 state: dict[str, object] | None = None,
                 static: dict[str, torch.Tensor] | None = None):
        self.net = net
        self.engine = engine
        self.state: dict[str, object] = dict(state or {})
        self.borrowed = set(self.state)  # states the caller owns: copied before any update
        self.static_cache: dict[str, torch.Tensor] = dict(static or {})
        self.event_layers: set[str] | None = None
        self.densities: dict[str, float] | None = None
        self.unmeasured: set[str] = set()
        self.choices: dict[str, bool] = {}  # measured layers of this block: event path or not
        self.choosing = BatchChoices()  # engine "auto"'s policy and limits, looked up once
        self.fuse_pools = False
        self.accumulate_counts = False
        self.buffers: dict[str, torch.Tensor] = {}  # reused spike outputs (no-grad runs)
        self.fresh: set[str] = set()  # see block()
        # per-neuron spike counts of the last block, summed by the neuron layers themselves
        self.block_counts: dict[str, torch.Tensor] = {}
        self.uses = {n: len(net.consumers_of(n)) for n in (INPUT, *net.names)}
        self.uses[net.output_name] += 1
        self.plan = loop_plan(net) if net.recurrent_edges else None

    def block(self, x: Value, steps: int, keep: tuple[str, ...] = ()) -> dict[str, Value]:
        """Evaluate every layer for one block of ``steps`` steps on the network input ``x``.

        Returns the output layer's value and those of the ``keep`` layers (others are freed
        as soon as their consumers have run). In no-gradient runs on the CPU, the neuron
        layers in ``keep`` count their spikes instead (:meth:`take_counts`,
        :meth:`running_counts`): their values are then freed as the others are and not
        returned, so a block holds only the activations still to be read, not every
        layer's (on VGG-16 at 224 px, 0.2 GiB less at the peak).
        """
        net = self.net
        if not self.accumulate_counts:
            self.block_counts = {}
        if self.densities is not None:  # engine "auto": layers over the copy cap that may take events
            self.choosing.see_network(net, tuple(x.tensor.shape[1 if x.static else 2:]))
        if self.plan is not None:
            return self._block_recurrent(x, steps, keep)
        vals = {INPUT: x}
        left = dict(self.uses)
        kept = {}
        pooled: dict[str, Value] = {}  # pools already run, fused into the neurons before them
        self.fresh = set()  # synaptic outputs of this block in memory of their own (not views)
        for name in net.names:
            ins = [] if name in pooled else [vals[i] for i in net.inputs_of(name)]
            module = net.get_submodule(name)
            if name in pooled:
                out = pooled.pop(name)
            elif name in self.static_cache:
                out = Value(self.static_cache[name], True)
            elif net.kind(name) == "temporal":
                fused = self._temporal_pooled(name, module, ins[0], steps, keep)
                if fused is not None:  # the neurons' spikes exist only pooled
                    pooled[net.consumers_of(name)[0]] = fused
                    for i in net.inputs_of(name):
                        left[i] -= 1
                        if left[i] == 0 and i not in keep:
                            del vals[i]
                    continue
                out = Value(self._temporal(name, module, ins[0], steps, name in keep,
                                           donated=self._donated(name, keep)), False)
            else:
                donor = self._donor(name, module, keep)
                out = self._synaptic(name, module, ins, steps, donor)
                if out.static:
                    self.static_cache[name] = out.tensor
                elif not any(_same_memory(out.tensor, v.tensor)
                             for i, v in zip(net.inputs_of(name), ins) if i != donor):
                    self.fresh.add(name)  # (its donor's memory is its own now)
            vals[name] = out
            if name in keep and name not in self.block_counts:
                kept[name] = out
            for i in net.inputs_of(name):
                left[i] -= 1
                if left[i] == 0 and (i not in keep or i in self.block_counts):
                    vals.pop(i, None)  # (absent: a neuron layer fused with this pool)
        kept[net.output_name] = vals[net.output_name]
        return kept

    def output(self, x: Value, steps: int) -> torch.Tensor:
        """The output layer's value at every step of one block, ``(steps, B, ...)``."""
        return self.block(x, steps)[self.net.output_name].per_step(steps)

    def running_counts(self, name: str) -> torch.Tensor | None:
        """With :attr:`accumulate_counts`, the per-neuron spikes that neuron layer ``name``
        has added up itself since the executor was made (summed over steps and samples; no
        new tensor, no per-block sum), or ``None`` where it does not count its own."""
        return self.block_counts.get(name) if self.accumulate_counts else None

    def take_counts(self, name: str) -> torch.Tensor | None:
        """The per-neuron spike counts (summed over the block's steps and samples) that layer
        ``name`` added up itself in the last block, or ``None`` where it did not."""
        return self.block_counts.pop(name, None)

    def _donated(self, name: str, keep: tuple[str, ...]) -> bool:
        """Whether layer ``name`` may write its output over its input: a no-gradient run of a
        network without loops, whose one input is a synaptic layer's output of this block in
        memory of its own (not a view of that layer's inputs) that nothing else reads (no
        other consumer, not kept)."""
        if self.plan is not None or torch.is_grad_enabled():
            return False
        sources = self.net.inputs_of(name)
        if len(sources) != 1:
            return False
        (src,) = sources
        return src in self.fresh and self.uses[src] == 1 and src not in keep

    def _temporal(self, name: str, module: nn.Module, cur: Value, steps: int,
                  count: bool, reuse: bool = True, donated: bool = False) -> torch.Tensor:
        if name not in self.state:
            self.state[name] = module.initial_state(cur.tensor if cur.static else cur.tensor[0])
        if isinstance(module, SpikingNeuron) and not torch.is_grad_enabled():
            # on CPU the neuron layer counts its spikes in the same pass (compiled kernel); on
            # GPUs the engine sums them (fewer kernel launches)
            on_cpu = self.state[name].device.type == "cpu"
            counts = None
            if count and on_cpu:  # a loop's neurons add up their steps of one block here
                counts = self.block_counts.get(name)
                counts = torch.zeros_like(self.state[name][0]) if counts is None else counts
            out = self.buffers.get(name) if reuse else None  # a loop keeps each step's spikes
            # spikes over the current they came from, where nothing else reads it: one memory
            # stream less (1.5-2.7x faster neuron passes on the test machine)
            reference = type(module).runs_reference_update()
            over_input = donated and reuse and not cur.static and reference
            if over_input:
                out = cur.tensor
            if reference:
                y = module.advance_block(cur.tensor, self._own_state(name), steps, cur.static,
                                         out=out, counts=counts)
            else:
                y, self.state[name] = module.forward_block(cur.tensor, self.state[name], steps,
                                                           cur.static, out=out, counts=counts)
            if over_input:
                self.buffers.pop(name, None)  # the input's memory: not ours to keep
            elif reuse:
                self.buffers[name] = y
            if counts is not None:
                self.block_counts[name] = counts
            return y
        if torch.is_grad_enabled():
            y, self.state[name] = module.forward_block(cur.tensor, self.state[name], steps, cur.static)
            return y
        out = self.buffers.get(name) if reuse else None
        # a module with its own forward_block_into may update its state in place: give it ours
        in_place = type(module).forward_block_into is not TemporalModule.forward_block_into
        state = self._own_state(name) if in_place else self.state[name]
        y, self.state[name] = module.forward_block_into(cur.tensor, state, steps, cur.static, out=out)
        if reuse and in_place:  # (the default makes a new output every block: nothing to keep)
            self.buffers[name] = y
        return y

    def _own_state(self, name: str):
        """Layer ``name``'s state (a membrane, or a tuple of tensors), for an in-place
        update: a state handed to the constructor is copied once (the caller's tensors stay
        as they were)."""
        if name in self.borrowed:
            self.borrowed.discard(name)
            state = self.state[name]
            self.state[name] = (state.clone() if isinstance(state, torch.Tensor)
                                else type(state)(t.clone() for t in state))
        return self.state[name]

    def _temporal_pooled(self, name: str, module: nn.Module, cur: Value, steps: int,
                         keep: tuple[str, ...]) -> Value | None:
        """The output of the tiling average or sum pool that is the only consumer of neuron
        layer ``name``, computed with the neurons in one pass
        (:meth:`~snnedge.SpikingNeuron.forward_block_pooled`), or None where that does not
        apply (gradients, GPUs, other layouts or consumers). The neurons' spikes are then never
        stored: only their counts, when ``name`` is in ``keep``."""
        net = self.net
        consumers = net.consumers_of(name)
        if (not self.fuse_pools or torch.is_grad_enabled() or not isinstance(module, SpikingNeuron)
                or len(consumers) != 1
                or self.uses[name] != 1 or net.inputs_of(consumers[0]) != (name,)):
            return None
        pool = net.get_submodule(consumers[0])
        template = cur.tensor if cur.static else cur.tensor[0]
        window = tiling_pool(pool, template.shape)
        if window is None or template.device.type != "cpu":
            return None
        divisor = 1.0 if isinstance(pool, SumPool2d) else float(window[0] * window[1])
        if name not in self.state:
            self.state[name] = module.initial_state(template)
        counts = self.block_counts.get(name) if name in keep else None
        if counts is None and name in keep:
            counts = torch.zeros_like(self.state[name][0])
        done = module.forward_block_pooled(cur.tensor, self._own_state(name), steps, cur.static, window,
                                           divisor, out=self.buffers.get(name), counts=counts)
        if done is None:
            return None
        y, self.state[name] = done
        self.buffers[name] = y
        if counts is not None:
            self.block_counts[name] = counts
        return Value(y, False)

    def _donor(self, name: str, module: nn.Module, keep: tuple[str, ...]) -> str | None:
        """The input that an addition or a ``Scale`` may write its output over: a no-gradient
        run of a network without loops, the first or second input, a synaptic output of this
        block in memory of its own that nothing else reads (as :meth:`_donated`). A fresh
        block-sized tensor costs the kernel's page faults (a 15 MB sum: 4.8 ms in new memory,
        0.5 ms in place, 2 threads, AMD EPYC Zen 4)."""
        if self.plan is not None or torch.is_grad_enabled() or not isinstance(module, (Add, Scale)):
            return None
        sources = self.net.inputs_of(name)
        for i in sources[:2]:
            if i in self.fresh and self.uses[i] == 1 and i not in keep and sources.count(i) == 1:
                return i
        return None

    def _synaptic(self, name: str, module: nn.Module, ins: list[Value], steps: int,
                  donor: str | None = None) -> Value:
        if all(v.static for v in ins):
            return Value(apply_synaptic(module, *[v.tensor for v in ins]), True)
        batch = next(v.tensor.shape[1] for v in ins if not v.static)
        flat = []
        for v in ins:
            t = v.per_step(steps)
            flat.append(t.reshape(steps * batch, *t.shape[2:]))
        if donor is not None:
            y = _in_place(module, flat, self.net.inputs_of(name).index(donor))
            if y is not None:
                return Value(y.view(steps, batch, *y.shape[1:]), False)
        weighted = len(flat) == 1 and self.net.kind(name) == "weighted"
        events = False
        if weighted and self.densities is not None:
            # engine "auto", choosing: the layer takes the path snnedge.path_choice picks at
            # its density (layers it would not consider are not measured, and a layer left
            # unmeasured keeps its last path)
            if name in self.unmeasured:
                events = self.event_layers is not None and name in self.event_layers
            elif self.choosing.worth_measuring(module, flat[0].device):
                density = input_density(flat[0])
                self.densities[name] = density
                events, y = self.choosing.choose_path(module, flat[0], density)
                self.choices[name] = events
                if y is not None:  # it timed both paths on this block: the faster's output
                    return Value(y.view(steps, batch, *y.shape[1:]), False)
        elif weighted and self.engine == "event":
            events = self.event_layers is None or name in self.event_layers
        if events:
            y = event_apply(module, flat[0])
        else:
            y = apply_synaptic(module, *flat)
        return Value(y.view(steps, batch, *y.shape[1:]), False)

    # -- recurrent networks ----------------------------------------------------------------
    def _block_recurrent(self, x: Value, steps: int, keep: tuple[str, ...]) -> dict[str, Value]:
        net = self.net
        vals: dict[str, Value] = {INPUT: x}
        for unit in self.plan:
            if len(unit) == 1 and not net.delayed_inputs_of(unit[0]):
                name = unit[0]
                ins = [vals[i] for i in net.inputs_of(name)]
                module = net.get_submodule(name)
                if name in self.static_cache:
                    vals[name] = Value(self.static_cache[name], True)
                elif net.kind(name) == "temporal":
                    vals[name] = Value(self._temporal(name, module, ins[0], steps, name in keep), False)
                else:
                    vals[name] = self._synaptic(name, module, ins, steps)
                    if vals[name].static:
                        self.static_cache[name] = vals[name].tensor
            else:
                vals.update(self._loop(unit, vals, steps, keep))
        return {n: vals[n] for n in (*keep, net.output_name)}

    def _loop(self, unit: tuple[str, ...], vals: dict[str, Value], steps: int,
              keep: tuple[str, ...]) -> dict[str, Value]:
        """The layers of one loop, one step at a time; their outputs over the block."""
        net, members = self.net, set(unit)
        outside = [n for n in unit if n in keep or n == net.output_name
                   or any(c not in members for c in net.consumers_of(n))]
        fed_back = [n for n in unit if any(n in net.delayed_inputs_of(r) for r in net.consumers_of(n))]
        # per layer: its module, whether temporal, and where each input comes from
        layers = [(name, net.get_submodule(name), net.kind(name) == "temporal",
                   [(i, "previous" if i in net.delayed_inputs_of(name) else
                     "loop" if i in members else "block") for i in net.inputs_of(name)])
                  for name in unit]
        series: dict[str, list[torch.Tensor]] = {n: [] for n in outside}
        for t in range(steps):
            now: dict[str, Value] = {}
            for name, module, temporal, sources in layers:
                ins = []
                for i, where in sources:
                    if where == "previous":
                        ins.append(Value(self._previous(i, vals[INPUT]).unsqueeze(0), False))
                    elif where == "loop":
                        ins.append(now[i])
                    else:
                        v = vals[i]
                        ins.append(v if v.static else Value(v.tensor[t:t + 1], False))
                if temporal:
                    y = self._temporal(name, module, ins[0], 1, name in keep, reuse=False)
                else:
                    y = self._synaptic(name, module, ins, 1).per_step(1)
                now[name] = Value(y, False)
                if name in series:
                    series[name].append(y[0])
            for name in fed_back:  # what the readers of name[t-1] see at the next step
                self.state[name + PREVIOUS] = now[name].tensor[0]
        return {n: Value(torch.stack(series[n]), False) for n in outside}

    def _previous(self, name: str, x: Value) -> torch.Tensor:
        """Layer ``name``'s output at the step before (zeros before the first step)."""
        key = name + PREVIOUS
        if key not in self.state:
            t = x.tensor
            sample = tuple(t.shape[1:] if x.static else t.shape[2:])
            batch = t.shape[0] if x.static else t.shape[1]
            self.state[key] = t.new_zeros((batch, *self.net.shapes(sample)[name]))
        return self.state[key]


# Engine "auto" measures the density of every spike-fed weighted layer's input in each block
# of its first batch. It counts runs of DENSITY_RUN consecutive values, one in every k (memory
# order mixes channels and positions, so the sample spans both), k as large as keeps at least
# DENSITY_SAMPLE values and at most DENSITY_EVERY: below 2 * DENSITY_SAMPLE values, and for
# other layouts, it counts every value. (Were the values independent, 2^17 of them would put
# a density near 0.2 within about 0.1 percentage point, one standard error; neighbours are
# correlated, so the error is larger, but break-evens differ by several points.)
DENSITY_SAMPLE = 1 << 17
DENSITY_RUN = 1024
DENSITY_EVERY = 32


def input_density(x: torch.Tensor) -> float:
    """The fraction of non-zero values of ``x``, sampled on large inputs (see
    ``DENSITY_SAMPLE``); deterministic."""
    n = x.numel()
    if n == 0:
        return 0.0
    dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
    every = min(DENSITY_EVERY, n // DENSITY_SAMPLE)
    if not dense:
        return float(torch.count_nonzero(x)) / n
    rows, run, step = (1, n, n) if every < 2 else (-(-(n // DENSITY_RUN) // every), DENSITY_RUN, every * DENSITY_RUN)
    kernel = native_kernel() if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) else None
    if kernel is not None:  # 10x torch.count_nonzero's speed (_event_kernels.c)
        return kernel.count_nonzero(x.data_ptr(), x.dtype == torch.float64, rows, run, step) / (rows * run)
    sample = x.as_strided((rows, run), (step, 1), x.storage_offset())
    return float(torch.count_nonzero(sample)) / sample.numel()


def _in_place(module: nn.Module, xs: list[torch.Tensor], k: int) -> torch.Tensor | None:
    """``module(*xs)`` (an ``Add`` of two or more inputs, or a ``Scale``) written over
    ``xs[k]``, by the module's own ``forward`` and so with the same bits; None where it cannot
    be (shapes, dtypes or layouts that differ, ``xs[k]`` not in memory of its own)."""
    a = xs[k]
    dense = a.is_contiguous() or (a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last))
    if not dense or any(x.shape != a.shape or x.dtype != a.dtype or x.stride() != a.stride() for x in xs):
        return None
    if isinstance(module, Add) and len(xs) < 2:
        return None
    return module(*xs, out=a)


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether tensors ``a`` and ``b`` live in the same storage (one is a view of the other,
    or both of a third)."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


#: Suffix of the state key of a layer's previous output (snnedge.network.previous's marker).
PREVIOUS = "[t-1]"


def loop_plan(net: Graph) -> tuple[tuple[str, ...], ...]:
    """The order in which a recurrent network's layers run: its strongly connected
    components (edges and delayed edges alike; a loop is one component, every other layer
    a component of its own), in a topological order of the undelayed edges between
    components that keeps the network's order where it can. Layers of a component are
    listed in network order (a topological order once delayed edges are left out)."""
    names = list(net.names)
    index = {n: k for k, n in enumerate(names)}
    succ: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        for i in net.inputs_of(n):
            if i != INPUT:
                succ[i].append(n)
    comp = _components(names, succ)
    units: dict[int, list[str]] = {}
    for n in names:
        units.setdefault(comp[n], []).append(n)
    deps = {c: set() for c in units}
    for n in names:
        delayed = net.delayed_inputs_of(n)
        for i in net.inputs_of(n):
            if i != INPUT and i not in delayed and comp[i] != comp[n]:
                deps[comp[n]].add(comp[i])
    order, done = [], set()
    while len(order) < len(units):
        ready = [c for c in units if c not in done and deps[c] <= done]
        c = min(ready, key=lambda c: index[units[c][0]])
        order.append(tuple(units[c]))
        done.add(c)
    return tuple(order)


def _components(names: list[str], succ: dict[str, list[str]]) -> dict[str, int]:
    """Tarjan's strongly connected components (iterative): node -> component id."""
    index, low, comp, stack, on_stack, counter, n_comp = {}, {}, {}, [], set(), [0], 0
    for root in names:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(succ[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp[m] = n_comp
                    if m == node:
                        break
                n_comp += 1
    return comp


def run_sequence(net: Graph, x: torch.Tensor, timesteps: int | None = None,
                 static: bool = False) -> torch.Tensor:
    """Differentiable run over a time-first input ``(T, B, ...)`` (or a static ``(B, ...)``
    with ``timesteps``) from the initial state: the output layer's value at every step,
    ``(T, B, ...)``. This is what calling a :class:`~snnedge.SpikingNetwork` does."""
    if static:
        if timesteps is None:
            raise ValueError("run_sequence with static=True needs 'timesteps'.")
        steps = timesteps
    else:
        if x.dim() < 2:
            raise ValueError(f"SpikingNetwork expects a time-first input (T, B, ...). "
                             f"Got shape {tuple(x.shape)}.")
        steps = x.shape[0]
    return Executor(net, "dense").output(Value(x, static), steps)
