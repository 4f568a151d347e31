r"""brian2 as a reference simulator: ``snnedge.simulate(snn, x, engine="brian2")``.

The network is rebuilt in brian2 (Stimberg et al., eLife 8:e47314, 2019,
doi:10.7554/eLife.47314) from explicit synapse lists and run there; the result is the same
:class:`~snnedge.SimulationResult` as the torch engines give, counted the same way.

Mapping (one brian2 time step = one snnedge tick, ``dt_s`` seconds):

* each IF/LIF layer is a ``NeuronGroup`` with per-neuron ``theta`` (scalar and per-channel
  thresholds broadcast), initial membrane ``v0 = v_init * theta`` and, for LIF, ``beta``;
  threshold ``v >= theta``; reset ``v = v - theta`` (subtract) or ``v = 0`` (zero);
* its input current is ``I = sum_S A_S z_S + c``: one ``Synapses`` object per spiking source
  ``S`` with ``on_pre = "I_syn_post += w"`` and the index lists of the sparse matrix ``A_S``
  (Linear and Conv weights with their padding, stride and groups, with every weight-free
  module between ``S`` and the layer folded in: pooling, flatten, Scale, Add, Concat;
  see :mod:`snnedge.interop.sparse_maps`); ``c`` (biases, and the current a direct-encoded
  input drives) is a constant current per neuron, computed by the layer's own torch modules
  and set per sample;
* the update is ``v = beta * v`` (LIF), ``v = v + (I_const + I_syn)``: the reference rule
  of :func:`snnedge.lif_step` / :func:`snnedge.if_step` in brian2's language, with the
  parameters the neuron module gives every engine (``threshold_for``, ``beta_for``,
  ``initial_state``); a readout accumulator group sums the readout's input the same way;
* a Poisson or latency input is a ``SpikeGeneratorGroup`` replaying snnedge's own encoder
  (same seed, same spikes), with synapses like any other source;
* a :class:`~snnedge.ChipNeuron` (a network in a chip's arithmetic, from
  ``neuromorphic_targets.to_hardware``) gets its own update: the current wraps, the
  fixed-point decay rounds toward zero, the membrane saturates, a strict threshold is
  ``v > theta``; its constant current is rounded to chip units first, as the module rounds
  (a sequence of analog values into an integer ChipNeuron runs on the torch engines only;
  event frames run here too);
* a sequence input (``encoding="sequence"``: event frames, spikes or analog values per step)
  drives each layer it reaches with the current ``A_input x[t]`` of every step, read from a
  ``TimedArray`` (so event counts above 1 per step and analog values run alike);
* a recurrent edge (``snnedge.previous``) is a ``Synapses`` object like any other: it
  delivers after the layer it feeds has updated, so the spikes arrive one step later, as
  in snnedge's engines.

Schedule. brian2's default schedule runs state updates, then thresholds, then synaptic
propagation, so each layer would see the previous layer's spikes one step late (a lag of one
step per layer). Here every object is placed explicitly in the ``thresholds`` slot with
``when``/``order`` so that, within one step and in topological order, layer ``k`` updates
its membrane (order ``3k``), tests its threshold (``3k + 1``) and its outgoing synapses
deliver (``3k + 2``) before layer ``k + 1`` updates: the same zero-lag order as snnedge's
engines, so no extra steps and no realignment are needed. Resets run in the ``resets``
slot, after every layer has read its current.

All samples of a batch run in one brian2 run of ``N * T`` steps: a ``run_regularly`` at
every sample boundary restores the initial membranes, clears the readout and loads the
sample's constant currents from a ``TimedArray`` (so the same network also serves the
``cpp_standalone`` device, which cannot change values between runs).

Arithmetic is float64 throughout (brian2's default). Spike counts equal the dense engine's
in float64 exactly unless a membrane lands within rounding error of its threshold (the
synaptic sums are added in another order).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from ..chip_neuron import ChipNeuron
from ..connectivity import event_sources, source_links
from ..encoders import get_encoder, sequence_holds_events
from ..engine import BatchRun
from ..readout import weigh_steps
from ..errors import check_choice, check_real
from ..layers import INPUT
from ..network import SpikingNetwork
from ..neurons import SpikingNeuron
from ..simulate import (assemble_result, check_finite, check_input, check_sequence_batch, eval_mode,
                        prepared, register_engine, source_kind, split_batches)

CODE_TARGETS = ("numpy", "cython", "cpp_standalone")


def simulate_brian2(snn: SpikingNetwork, x, timesteps: int = 32, encoding: str = "direct",
                    batch_size: int = 256, seed: int = 0, *, device=None, dtype=None,
                    progress=None, labels=None, code_target: str = "numpy", dt_s: float = 1e-3,
                    build_dir: str | os.PathLike | None = None, keep_readout: bool = False):
    """Simulate ``snn`` in brian2; called as ``snnedge.simulate(..., engine="brian2")``.

    Parameters (besides :func:`snnedge.simulate`'s)
    ----------
    code_target:
        ``"numpy"`` (default: no compiler needed), ``"cython"`` (compiles each code object
        once; the first run can take minutes) or ``"cpp_standalone"`` (writes, compiles
        and runs a C++ project in ``build_dir``; all batches go into its one run).
    dt_s:
        Seconds per step in brian2 (only a time base: the dynamics are per step).
    build_dir:
        Directory of the ``cpp_standalone`` project (default: a temporary one).

    ``device`` must be the CPU; ``dtype`` is ignored (brian2 computes in float64, so compare
    with ``engine="dense", dtype=torch.float64``). ``batch_size`` samples go into one
    brian2 network; the ``seed`` of batch ``b`` is ``seed + b``, as in the torch engines.

    Example
    -------
    >>> import torch, torch.nn as nn, snnedge
    >>> net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(), nn.Linear(3, 2))
    >>> x = torch.rand(2, 4)
    >>> a = snnedge.simulate(net, x, timesteps=8, engine="brian2")
    >>> b = snnedge.simulate(net, x, timesteps=8, engine="dense", dtype=torch.float64)
    >>> a.spike_counts == b.spike_counts
    True
    """
    where = "simulate(engine='brian2')"
    check_choice(code_target, CODE_TARGETS, param="code_target", where=where)
    check_real(dt_s, param="dt_s", where=where, low=0.0, low_open=True)
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"The 'device' parameter of {where} must be 'cpu' (brian2 runs on the "
                         f"CPU). Got {device!r}.")
    batches, n, y_all = split_batches(x, batch_size, labels)
    sequence = encoding == "sequence"
    events_in = sequence and all(sequence_holds_events(xb) for xb, _ in batches)
    net = prepared(snn, torch.device("cpu"), torch.float64)
    plan = None
    start = time.perf_counter()
    runs, timing = [], {"plan_s": 0.0, "build_s": 0.0, "run_s": 0.0}
    with torch.no_grad(), eval_mode(net):
        chunks = []
        for b, (xb, _) in enumerate(batches):
            if sequence:
                check_sequence_batch(xb, timesteps)
            xb = xb.to("cpu", torch.float64)
            check_finite(xb)
            if plan is None:
                shape, _ = check_input(net, xb[:, 0] if sequence else xb, sequence)
                t_plan = time.perf_counter()
                plan = _Plan(net, shape, encoding, events_in)
                timing["plan_s"] = time.perf_counter() - t_plan
            elif tuple(xb.shape[2 if sequence else 1:]) != plan.input_shape:
                raise ValueError(f"Input batches differ in shape: {plan.input_shape} then "
                                 f"{tuple(xb.shape[2 if sequence else 1:])}.")
            chunks.append((xb, seed + b))
        # One brian2 run per batch; cpp_standalone builds one project, so all batches go into
        # its one run (each keeps its own seed and static currents).
        groups = [chunks] if code_target == "cpp_standalone" else [[c] for c in chunks]
        for group in groups:
            runs.append(_run_batch(plan, group, timesteps, code_target, dt_s, build_dir, timing,
                                   bool(progress), keep_readout=keep_readout))
    res = assemble_result(net, runs, plan.links, plan.sources, timesteps, encoding, y_all,
                          time.perf_counter() - start)
    res.extra["brian2"] = {"code_target": code_target, "dt_s": dt_s, **timing}
    return res


class _Plan:
    """What does not depend on the data: sources, synapse matrices, neuron parameters."""

    def __init__(self, net: SpikingNetwork, input_shape: tuple[int, ...], encoding: str,
                 events_in: bool = False):
        from .sparse_maps import UnsupportedLayer, affine_maps  # scipy: only when the engine runs
        self.net, self.input_shape, self.encoding = net, input_shape, encoding
        self.sequence = encoding == "sequence"
        # a sequence is a source with synapse matrices too; its currents come per step
        self.spiking_input = self.sequence or get_encoder(encoding).spiking
        for name in net.names:
            module = net.layer(name)
            if net.kind(name) == "temporal" and not isinstance(module, (SpikingNeuron, ChipNeuron)):
                raise UnsupportedLayer(
                    f"Layer {name!r} is a {type(module).__name__}, a temporal module that the "
                    f"brian2 engine cannot build (it builds IF and LIF neurons). Simulate this "
                    f"network with engine='dense' or 'event'; for a converted network, use "
                    f"average pooling instead of max pooling.")
            chip = isinstance(module, ChipNeuron) and module.integer
            if self.sequence and not events_in and chip:
                raise UnsupportedLayer(
                    f"Layer {name!r} is an integer ChipNeuron and the input is a sequence of "
                    f"analog values: the brian2 engine cannot round each step's current to chip "
                    f"units. Simulate this network with engine='dense' or 'event' (or give event "
                    f"frames: whole counts >= 0).")
        self.maps, self.shapes, static = affine_maps(net, input_shape, self.spiking_input)
        # Weighted layers whose analog output drives another weighted layer: their MACs are
        # counted from their values, known here only when they are constant (direct input).
        self.analog = [s for s in event_sources(net) if s != INPUT and net.kind(s) == "weighted"]
        for s in self.analog:
            if s not in static:
                raise UnsupportedLayer(
                    f"Layer {s!r} ({type(net.layer(s)).__name__}) sends time-varying analog "
                    f"values into another weighted layer with no neuron between them; the brian2 "
                    f"engine only builds synapses driven by spikes. Merge the two layers or put "
                    f"a neuron between them.")
        self.links = source_links(net, input_shape)
        kind_in = "events" if (events_in if self.sequence else self.spiking_input) else "analog"
        self.sources = {INPUT: kind_in, **{s: ("analog" if s in self.analog else
                                               source_kind(net, s, kind_in))
                                           for s in event_sources(net) if s != INPUT}}
        self.order = [n for n in net.names if net.kind(n) == "temporal"]
        self.readout = net.output_name if net.kind(net.output_name) != "temporal" else None


def _chip_params(module: ChipNeuron, shape) -> dict[str, np.ndarray]:
    """A :class:`~snnedge.ChipNeuron`'s per-neuron parameters (bias ``b``; integer mode's
    decay factor ``d``, analog mode's ``beta``)."""
    template = torch.zeros((1, *shape), dtype=torch.float64)
    full = lambda p: torch.broadcast_to(p.to(template), template.shape).reshape(-1).numpy().copy()  # noqa: E731
    p = {"theta": full(module.threshold), "v0": module.initial_state(template).reshape(-1).numpy().copy(),
         "b": full(module.bias if module.bias is not None else torch.zeros(()))}
    leak = module.decay if module.integer else module.beta
    if leak is not None:
        p["d" if module.integer else "beta"] = full(leak)
    return p


def _chip_update(module: ChipNeuron) -> tuple[str, str, str, str]:
    """``(equations, update, threshold, reset)`` of a ChipNeuron in brian2's language: the
    update of :mod:`snnedge.chip_neuron` (the current wraps, the fixed-point decay rounds
    toward zero, the membrane saturates), exact on integers in float64."""
    eqs = ("v : 1\nI_syn : 1\nI_tot : 1\nI_const : 1\ntheta : 1 (constant)\nv0 : 1 (constant)"
           "\nb : 1 (constant)")
    update = "I_tot = I_const + I_syn\n"
    if module.current_bits is not None:
        half = float(2 ** (module.current_bits - 1))
        update += f"I_tot = I_tot - {2 * half!r} * floor((I_tot + {half!r}) / {2 * half!r})\n"
    leak = module.decay if module.integer else module.beta
    if leak is not None and module.integer:
        eqs += "\nd : 1 (constant)"
        update += f"v = sign(v) * floor(abs(v) * d / {float(2 ** module.decay_shift)!r})\n"
    elif leak is not None:
        eqs += "\nbeta : 1 (constant)"
        update += "v = beta * v\n"
    update += "v = v + I_tot + b\n"
    if module.v_min is not None or module.v_max is not None:
        lo = -1e300 if module.v_min is None else module.v_min
        hi = 1e300 if module.v_max is None else module.v_max
        update += f"v = clip(v, {lo!r}, {hi!r})\n"
    update += "I_syn = 0"
    reset = "v = v - theta" if module.reset == "subtract" else "v = 0"
    return eqs, update, "v > theta" if module.strict else "v >= theta", reset


def _neuron_params(module: SpikingNeuron, shape) -> dict[str, np.ndarray]:
    template = torch.zeros((1, *shape), dtype=torch.float64)
    theta = module.threshold_for(template).detach()
    p = {"theta": torch.broadcast_to(theta, template.shape).reshape(-1).numpy().copy(),
         "v0": module.initial_state(template).reshape(-1).numpy().copy()}
    beta = module.beta_for(template)
    if beta is not None:
        beta = torch.as_tensor(beta, dtype=torch.float64).detach()
        p["beta"] = torch.broadcast_to(beta, template.shape).reshape(-1).numpy().copy()
    return p


@contextlib.contextmanager
def _brian2_target(code_target: str, build_dir):
    import brian2 as b2  # slow to import: only when the engine runs

    old_target = b2.prefs.codegen.target
    if code_target == "cpp_standalone":
        directory = str(build_dir) if build_dir is not None else tempfile.mkdtemp(prefix="snnedge_b2_")
        b2.set_device("cpp_standalone", directory=directory, build_on_run=False)
        standalone = b2.get_device()
        try:
            yield b2, directory
        finally:
            from brian2.devices.device import reset_device
            reset_device()  # back to the device before (runtime)
            standalone.reinit()
            if build_dir is None:  # results were read inside the block
                shutil.rmtree(directory, ignore_errors=True)
    else:
        b2.prefs.codegen.target = code_target
        try:
            yield b2, None
        finally:
            b2.prefs.codegen.target = old_target


def _run_batch(plan: _Plan, chunks: list, timesteps: int, code_target: str, dt_s: float,
               build_dir, timing: dict, progress: bool, keep_readout: bool = False) -> BatchRun:
    """One brian2 run over the samples of ``chunks`` (``[(x, seed), ...]``, one per batch
    of the torch engines, so that encoders and static currents see the same batches)."""
    from .sparse_maps import static_values
    net, T = plan.net, timesteps
    xb = torch.cat([c[0] for c in chunks])
    batch = xb.shape[0]
    spikes, statics = [], []
    for xc, seed in chunks:
        if plan.sequence:
            spikes.append(xc.transpose(0, 1))  # (T, B, ...): the input of every step
        elif plan.spiking_input:
            encoder = get_encoder(plan.encoding)
            encoder.start(xc, T, seed)
            spikes.append(encoder.block(0, T))  # (T, B, ...)
        statics.append(static_values(net, None if plan.spiking_input else xc, plan.input_shape,
                                     xc.shape[0], plan.maps, plan.analog))
    input_spikes = torch.cat(spikes, dim=1) if spikes else None
    static = {k: torch.cat([s[k] for s in statics]) for k in statics[0]}
    with _brian2_target(code_target, build_dir) as (b2, directory):
        t_build = time.perf_counter()  # after brian2's import (seconds, once per process)
        dt = dt_s * b2.second
        b2net = b2.Network()
        groups, monitors = {}, {}
        tick = dict(dt=dt)
        boundary = dict(dt=T * dt, when="start")
        if plan.spiking_input and not plan.sequence:
            z = input_spikes.reshape(T, batch, -1).numpy()
            t_idx, b_idx, n_idx = np.nonzero(z)
            steps = b_idx * T + t_idx
            gen = b2.SpikeGeneratorGroup(z.shape[2], n_idx, steps * dt, dt=dt, when="thresholds",
                                         order=-2, name="input")
            groups[INPUT] = gen
            b2net.add(gen)
        for k, name in enumerate(plan.order):
            module = net.layer(name)
            n = int(np.prod(plan.shapes[name]))
            threshold = "v >= theta"
            if isinstance(module, ChipNeuron):
                p = _chip_params(module, plan.shapes[name])
                eqs, update, threshold, reset = _chip_update(module)
                static[name] = module.input_current(static[name])  # rounded in chip units
            else:
                p = _neuron_params(module, plan.shapes[name])
                eqs = "v : 1\nI_syn : 1\nI_tot : 1\nI_const : 1\ntheta : 1 (constant)\nv0 : 1 (constant)"
                update = "I_tot = I_const + I_syn\nv = v + I_tot\nI_syn = 0"
                if "beta" in p:
                    eqs += "\nbeta : 1 (constant)"
                    update = "v = beta * v\n" + update
                reset = "v = v - theta" if module.reset == "subtract" else "v = 0"
            namespace, load = _const_current(static[name], batch, b2, T * dt, f"const_{k}")
            if plan.sequence and INPUT in plan.maps[name]:
                namespace[f"seq_{k}"] = _sequence_current(plan.maps[name][INPUT], input_spikes, b2, dt,
                                                          f"seq_{k}")
                update = update.replace("I_const + I_syn", f"I_const + I_syn + seq_{k}(t, i)")
            g = b2.NeuronGroup(n, eqs, threshold=threshold, reset=reset, order=3 * k + 1,
                               namespace=namespace, name=f"layer_{k}", **tick)
            for key, val in p.items():
                setattr(g, key, val)
            g.v = p["v0"]
            if not load:
                g.I_const = static[name].reshape(batch, -1)[0].numpy()
            g.run_regularly(update, when="thresholds", order=3 * k, name=f"layer_{k}_update", **tick)
            g.run_regularly("v = v0\nI_syn = 0" + load, name=f"layer_{k}_sample_start", **boundary)
            monitors[name] = b2.SpikeMonitor(g, record=name == net.output_name,
                                             name=f"layer_{k}_spikes")
            groups[name] = g
            b2net.add(g, monitors[name])
        order_of = {INPUT: -1, **{name: k for k, name in enumerate(plan.order)}}
        readout_mon = None
        if plan.readout is not None:
            n_out = int(np.prod(plan.shapes[plan.readout]))
            namespace, load = _const_current(static[plan.readout], batch, b2, T * dt, "const_readout")
            drive = "I_const + I_syn"
            if plan.sequence and INPUT in plan.maps[plan.readout]:
                namespace["seq_readout"] = _sequence_current(plan.maps[plan.readout][INPUT], input_spikes,
                                                             b2, dt, "seq_readout")
                drive += " + seq_readout(t, i)"
            g = b2.NeuronGroup(n_out, "acc : 1\nI_syn : 1\nI_tot : 1\nI_const : 1",
                               order=3 * len(plan.order), namespace=namespace, name="readout", **tick)
            if not load:
                g.I_const = static[plan.readout].reshape(batch, -1)[0].numpy()
            g.run_regularly(f"I_tot = {drive}\nacc = acc + I_tot\nI_syn = 0",
                            when="thresholds", order=3 * len(plan.order), name="readout_update", **tick)
            g.run_regularly("acc = 0\nI_syn = 0" + load, name="readout_sample_start", **boundary)
            readout_mon = b2.StateMonitor(g, "acc", record=True, when="end", name="readout_acc", **tick)
            groups[plan.readout] = g
            b2net.add(g, readout_mon)
        n_syn = 0
        for target, by_source in plan.maps.items():
            for source, mat in by_source.items():
                mat = mat.tocoo()
                if mat.nnz == 0 or (plan.sequence and source == INPUT):  # sequences: TimedArray
                    continue
                s = b2.Synapses(groups[source], groups[target], "w : 1 (constant)",
                                on_pre="I_syn_post += w", delay=0 * b2.second,
                                name=f"syn_{order_of[source] + 1}_{_group_index(plan, target)}", **tick)
                s.connect(i=mat.col.astype(np.int32), j=mat.row.astype(np.int32))
                s.w = mat.data
                s.pre.when, s.pre.order = "thresholds", 3 * order_of[source] + 2
                n_syn += mat.nnz
                b2net.add(s)
        timing["synapses"] = n_syn
        t_run = time.perf_counter()
        b2net.run(batch * T * dt, report="text" if progress else None)
        if code_target == "cpp_standalone":
            b2.get_device().build(directory=directory, compile=True, run=True, with_output=False)
        t_done = time.perf_counter()
        counts = {name: torch.from_numpy(np.asarray(monitors[name].count, dtype=np.float64).copy())
                  .reshape(plan.shapes[name]) for name in plan.order}
        if plan.readout is not None:
            acc = np.asarray(readout_mon.acc).reshape(-1, batch, T)      # (C, B, T)
            running = torch.from_numpy(acc.transpose(2, 1, 0).copy())   # (T, B, C)
        else:
            mon = monitors[net.output_name]
            idx = np.asarray(mon.i)
            step = np.rint(np.asarray(mon.t / dt)).astype(np.int64)
            n_out = int(np.prod(plan.shapes[net.output_name]))
            spikes = np.zeros((batch * T, n_out))
            np.add.at(spikes, (step, idx), 1.0)
            running = torch.from_numpy(spikes.reshape(batch, T, n_out).cumsum(1).transpose(1, 0, 2).copy())
    timing["build_s"] += t_run - t_build   # brian2 groups, synapses and monitors
    timing["run_s"] += t_done - t_run      # code generation (and compilation) and the run
    counts = _source_counts(plan, xb, input_spikes, T, counts)
    for s in plan.analog:  # constant analog values: non-zero outputs x steps, as the engines count
        counts[s] = (static[s] != 0).to(torch.float64).sum(0) * T
    per_step = torch.diff(running, dim=0, prepend=torch.zeros_like(running[:1])) \
        if keep_readout or net.readout_exponent else None
    if net.readout_exponent:  # the readout's steps weighted as the torch engines weight them
        running, output = weigh_steps(per_step, net.readout_exponent)
    else:
        output = running[-1].clone()
    return BatchRun(output, running.argmax(-1), counts, "brian2", 0.0,
                    readout=per_step if keep_readout else None)


def _group_index(plan: _Plan, name: str) -> str:
    return str(plan.order.index(name)) if name in plan.order else "readout"


def _const_current(values: torch.Tensor, batch: int, b2, period, name: str):
    """``(namespace, code)``: code that loads each sample's constant current from a
    ``TimedArray`` at the sample's first step, or ``({}, "")`` when all samples share it."""
    flat = values.reshape(batch, -1).numpy()
    if np.array_equal(flat, np.broadcast_to(flat[:1], flat.shape)):
        return {}, ""
    return {name: b2.TimedArray(flat, dt=period, name=name)}, f"\nI_const = {name}(t, i)"


def _sequence_current(mat, steps: torch.Tensor, b2, dt, name: str):
    """A ``TimedArray`` of the current ``mat @ x[t]`` a sequence drives into one group, one
    row per brian2 step (sample after sample, ``T`` steps each)."""
    T, batch = steps.shape[:2]
    x = steps.transpose(0, 1).reshape(batch * T, -1).numpy()  # rows: step b * T + t
    return b2.TimedArray(np.asarray((mat @ x.T).T), dt=dt, name=name)


def _source_counts(plan: _Plan, xb, input_spikes, T: int, counts: dict) -> dict:
    """Per-element totals of every counted source, as the torch engines count them."""
    if plan.sequence:  # as the torch engines count the input: events summed, or analog non-zeros
        x = input_spikes if plan.sources[INPUT] == "events" else (input_spikes != 0).to(torch.float64)
        counts[INPUT] = x.sum((0, 1)).to(torch.float64)
    elif plan.spiking_input:
        counts[INPUT] = input_spikes.sum((0, 1)).to(torch.float64)
    else:
        counts[INPUT] = (xb != 0).to(torch.float64).sum(0) * T
    return counts


register_engine("brian2", simulate_brian2)
