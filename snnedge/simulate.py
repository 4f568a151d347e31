"""`simulate`: run a SpikingNetwork on data and count what it does.

The engine registry. ``"dense"``, ``"event"`` and ``"auto"`` are the torch engines
(:func:`snnedge.engine.run_batch`); others register with :func:`register_engine` and get
``simulate``'s arguments. Every engine shares the pieces below, so that a result means the
same whichever produced it: :func:`split_batches` (tensor or DataLoader into batches and
labels), :func:`check_input` and :func:`check_finite` (the errors users see),
:func:`prepared` (the network on the device and dtype, copied, never changed),
:func:`eval_mode`, and :func:`assemble_result` (one :class:`~snnedge.engine.BatchRun` per
batch into a :class:`~snnedge.SimulationResult`, counting synaptic events the same way).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm import tqdm

from . import distributed as dist_glue
from .connectivity import SourceLink, event_sources, link_totals, source_links
from .encoders import ENCODERS, get_encoder, sequence_holds_events
from .engine import (BatchRun, block_budget, block_steps_for, exact_float32, live_numel,
                     most_block_bytes, run_batch)
from .errors import check_choice, check_positive_int
from .layers import INPUT
from .memory import available_memory
from .network import SpikingNetwork, module_device, module_dtype
from .replication import fold_replication
from .results import SimulationResult

ENGINES: dict[str, Callable | None] = {"dense": None, "event": None, "auto": None}


def register_engine(name: str, fn: Callable) -> None:
    """Add an engine that takes ``simulate``'s arguments and returns a SimulationResult
    (e.g. :func:`snnedge.interop.simulate_brian2`, built on this module's shared pieces)."""
    ENGINES[name] = fn


def simulate(snn: SpikingNetwork, x, timesteps: int | None = None, encoding: str = "direct",
             engine: str = "auto", batch_size: int = 256, seed: int = 0, *,
             device: str | torch.device | None = None, dtype: torch.dtype | None = None,
             progress: bool | None = None, block_steps: int | None = None,
             labels=None, distributed: bool = False, keep_readout: bool = False,
             **engine_options) -> SimulationResult:
    """Simulate ``snn`` on ``x`` for ``timesteps`` steps and count spikes and synaptic events.

    Parameters
    ----------
    snn:
        The network (from ``converters.convert``, ``snnedge.sequential`` or ``from_nir``).
    x:
        A tensor ``[N, ...]`` of samples, or a DataLoader/iterable of ``(x, y)`` batches (its
        labels are kept, so ``res.accuracy()`` needs no argument). With
        ``encoding="sequence"``: ``[N, T, *sample_shape]`` (event frames, spikes or analog
        values at each step; see :func:`snnedge.events_to_frames`), or batches of that form
        with one ``T``.
    timesteps:
        Number of steps ``T`` (default 32). With ``encoding="sequence"`` it is ``x``'s ``T``
        and may be left out; a value that disagrees is an error.
    encoding:
        ``"direct"``, ``"poisson"``, ``"latency"`` or ``"sequence"`` (see
        :mod:`snnedge.encoders`). A sequence of event counts (whole numbers >= 0, spikes 0/1)
        is counted as input events (their synaptic events, ``res.input_spike_counts``); any
        other values as analog input (``res.input_macs``).
    engine:
        ``"dense"``, ``"event"``, ``"auto"`` (per layer and block of the first batch, the
        event path where the layer's measured input density is below its fitted break-even,
        see :mod:`snnedge.engine`; scaled to this CPU's as ``snnedge calibrate`` measured
        it, or as the first ``"auto"`` call measures it, quickly, where none is kept:
        :mod:`snnedge.path_calibration`), or a registered engine such as
        ``"brian2"``. With ``SNNEDGE_AUTO_PATH=timed``
        (:func:`snnedge.path_choice.set_path_policy`) ``"auto"`` times both paths on this
        machine instead: faster where the fitted rule is off for the CPU, but the choices,
        and float32 results in their last bits, can then differ between processes.
    batch_size:
        Samples per batch for a tensor input.
    seed:
        Seed of stochastic encoders; same seed and batch size give the same result.
    device, dtype:
        Where and in which float type to simulate (``torch.float64`` is the exact mode used
        to compare engines). The network is copied, never changed. On CUDA, float32 runs
        in full float32 (TF32 off while simulating), so spikes match the CPU's.
    progress:
        Show a progress bar (default: when there is more than one batch).
    block_steps:
        Steps per time block: every synaptic layer runs once per block on its steps x
        samples. Default: as many as keep the activations alive at once within 1.5x the
        CPU's caches (on GPUs 128 MiB) and all of a block's activations within 512 MiB, but
        at least 4 steps x samples, at most 32 steps, and never more than the free memory
        holds (:func:`snnedge.engine.block_steps_for`, :func:`snnedge.engine.block_budget`). A batch whose single step does not fit the
        memory the device can still allocate raises ``MemoryError`` before allocating it,
        naming the batch size that fits.
    labels:
        Labels for a tensor input (optional; ``res.accuracy(y)`` also takes them).
    distributed:
        Under ``torchrun`` (or an initialized ``torch.distributed`` process group), each rank
        simulates its shard and every rank returns the whole-dataset result: per-layer and
        per-neuron counts, synaptic events, outputs and predictions in the original order.
        ``x`` is a tensor given on every rank (checked by hash), a map-style ``Dataset``
        (batches of ``batch_size``), a ``DataLoader`` over one (in order, without a sampler of
        its own) or a list of batches; the network must be the same on every rank (checked
        by a hash of its state dict). Ranks take whole batches, contiguous in rank order, and
        each batch runs as in one process (same samples, seed and layers), so the result is
        one process's (the tests check it bit for bit in float64 and float32 on CPUs). A rank
        left without a batch (fewer batches than ranks) waits: keep ``batch_size <= N /
        world_size``. With ``engine="auto"``, rank 0 measures the event layers on the first
        time block of batch 0, as one process does, and the other ranks wait for its choice
        (briefly when a batch spans several blocks; a whole batch when it is one block: name
        the engine then). A GPU rank uses ``cuda:LOCAL_RANK`` when ``device`` is ``"cuda"``
        or not given for a network on a GPU. See :mod:`snnedge.distributed`.
    keep_readout:
        Also keep the readout's value at each step, unweighted, as ``res.readout``
        ``[T, N, classes]`` (on the CPU; ``T x N x classes`` values): to plot how the output
        settles, or to choose a ``readout_exponent`` (:mod:`snnedge.readout`). The network's
        ``readout_exponent`` weights ``res.output`` and ``res.step_predictions`` either way.
    """
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"simulate expects a snnedge.SpikingNetwork. Got {type(snn).__name__}; "
                        f"convert an ANN with converters.convert(ann, calibration=...) or build one "
                        f"with snnedge.sequential(...).")
    check_choice(encoding, ENCODERS, param="encoding", where="simulate")
    if encoding == "sequence":
        if not isinstance(x, torch.Tensor) and isinstance(x, Iterable):
            x = list(x)  # read a loader once: its first batch gives T
        timesteps = sequence_length(x, timesteps)
    elif timesteps is None:
        timesteps = 32
    check_positive_int(timesteps, param="timesteps", where="simulate")
    check_choice(engine, ENGINES, param="engine", where="simulate")
    check_positive_int(batch_size, param="batch_size", where="simulate")
    if block_steps is not None:
        check_positive_int(block_steps, param="block_steps", where="simulate")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"The 'dtype' parameter of simulate must be a floating torch.dtype such as "
                         f"torch.float32 or torch.float64. Got {dtype!r}.")
    if distributed and encoding == "sequence":
        raise ValueError("simulate(distributed=True) does not take encoding='sequence' yet (each "
                         "rank would judge its own sequences' kind of input); simulate the "
                         "sequences in one process.")
    if distributed and ENGINES[engine] is not None:
        raise ValueError(f"simulate(distributed=True) runs the torch engines ('dense', 'event', "
                         f"'auto'); engine {engine!r} runs in one process. Leave distributed=False "
                         f"for it.")
    if distributed and keep_readout:
        raise ValueError("simulate(distributed=True) does not gather each step's readout "
                         "(keep_readout=True); simulate in one process to keep it.")
    if ENGINES[engine] is not None:
        if keep_readout:
            engine_options["keep_readout"] = True
        return ENGINES[engine](snn, x, timesteps=timesteps, encoding=encoding, batch_size=batch_size,
                               seed=seed, device=device, dtype=dtype, progress=progress,
                               labels=labels, **engine_options)
    if engine_options:
        raise TypeError(f"simulate got unexpected options {sorted(engine_options)} for engine {engine!r}.")

    shard = ctx = None
    if distributed:
        ctx = dist_glue.setup("simulate")
        shard = dist_glue.shard_data(x, batch_size, labels, ctx)
        batches, n, y_all = split_batches(shard.data, batch_size) if shard.data is not None \
            else ([], 0, None)
    else:
        batches, n, y_all = split_batches(x, batch_size, labels)
    if ctx is not None:
        device = dist_glue.rank_device(ctx, device, module_device(snn))
        dist_glue.check_same_network(snn, ctx, "simulate")
    device = torch.device(device) if device is not None else module_device(snn)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("simulate(device='cuda') but torch sees no CUDA device; use device='cpu'.")
    dtype = dtype or module_dtype(snn)
    modules = all_modules(snn)  # one walk for both: the network as it is, and its modes
    net = prepared(snn, device, dtype, modules)
    if net is not snn:
        modules = None

    start = time.perf_counter()
    results, links, sources, shape = [], None, None, None
    sequence = encoding == "sequence"
    events_in = sequence and all(sequence_holds_events(xb) for xb, _ in batches)
    measured = share = None  # distributed "auto": the choice of batch 0, made on rank 0
    if ctx is not None and engine == "auto":
        if ctx.main:
            def share(choice):
                dist_glue.share_choice(choice, ctx)
        else:
            measured = dist_glue.share_choice(None, ctx)
    bar = tqdm(total=n, desc=f"simulate T={timesteps}", unit="sample", leave=False,
               disable=not (progress if progress is not None else n > batch_size)
               or (ctx is not None and not ctx.main))
    with torch.no_grad(), eval_mode(net, modules), exact_float32():
        for xb, _ in batches:
            # a sequence moves to the device as it is; the encoder converts it block by block
            if sequence:
                check_sequence_batch(xb, timesteps)
            xb = xb.to(device) if sequence else xb.to(device, dtype)
            if shape is None:
                shape, shapes = check_input(net, xb[:, 0] if sequence else xb, sequence)
                links, sources = layout(net, shape, encoding, events_in)
                graph = fold_replication(net, shape)  # pools that only copy, in the next linear layer
                first_size = xb.shape[0] if shard is None else shard.first_size
                live = live_numel(net, shapes, keep=tuple(s for s in sources if s != INPUT),
                                  self_counting=device.type == "cpu")
                itemsize = torch.finfo(dtype).bits // 8
                need = most_block_bytes(shapes, first_size, timesteps, itemsize, live, block_steps)
                steps = block_steps_for(shapes, first_size, timesteps, itemsize,
                                        budget_bytes=block_budget(device), live=live,
                                        free_bytes=available_memory(device, need=need),
                                        requested=block_steps)
            elif tuple(xb.shape[2 if sequence else 1:]) != shape:
                raise ValueError(f"Input batches differ in shape: {shape} then "
                                 f"{tuple(xb.shape[2 if sequence else 1:])}.")
            if not sequence:  # a sequence is checked block by block as it streams
                check_finite(xb)
            # engine "auto": later batches reuse the first batch's per-layer choice, so that
            # small batches (one block each) switch too
            chosen = results[0].extra.get("event_layers") if results else measured
            first = 0 if shard is None else shard.first_batch  # one process's batch index
            encoder = get_encoder(encoding)
            if sequence:
                encoder.dtype, encoder.spiking = dtype, events_in
            results.append(run_batch(net, xb, encoder, timesteps,
                                     seed=seed + first + len(results),
                                     engine=engine, block_steps=steps, sources=sources,
                                     event_layers=chosen, on_choice=None if results else share,
                                     keep_readout=keep_readout, graph=graph))
            bar.update(xb.shape[0])
    bar.close()
    counts = gathered = None
    if ctx is not None:
        if links is None:  # this rank had no batch
            shape, _ = check_input(net, torch.zeros(1, *shard.sample_shape))
            links, sources = layout(net, shape, encoding)
        zeros = {s: torch.zeros(net.shapes(shape)[s] if s != INPUT else shape,
                                dtype=torch.float64, device=device) for s in sources}
        gathered = dist_glue.gather_runs(results, y_all, zeros, ctx, time.perf_counter() - start)
        results, counts = gathered.runs, gathered.counts
        y_all = shard.labels if shard.labels is not None else gathered.labels
    res = assemble_result(net, results, links, sources, timesteps, encoding, y_all,
                          time.perf_counter() - start, counts=counts)
    if gathered is not None:
        res.extra["distributed"] = {"world_size": ctx.world_size, "backend": ctx.backend,
                                    "rank_samples": gathered.rank_samples,
                                    "rank_seconds": gathered.rank_seconds,
                                    "gather_bytes": gathered.gather_bytes,
                                    "reduce_bytes": gathered.reduce_bytes}
    res.network = snn
    return res


def layout(net: SpikingNetwork, shape: tuple[int, ...], encoding: str,
           events_in: bool = False) -> tuple[list[SourceLink], dict[str, str]]:
    """``(links, sources)`` of :func:`assemble_result` for samples of ``shape``: each source
    (the input, every neuron layer) counted as ``"events"`` (spikes) or ``"analog"`` values
    (:func:`source_kind`). ``events_in``: whether a ``"sequence"`` input holds events."""
    links = source_links(net, shape)
    spiking = events_in if encoding == "sequence" else get_encoder(encoding).spiking
    enc_kind = "events" if spiking else "analog"
    sources = {s: source_kind(net, s, enc_kind) for s in event_sources(net) if s != INPUT}
    return links, {INPUT: enc_kind, **sources}


def assemble_result(net: SpikingNetwork, runs: list[BatchRun], links: list[SourceLink],
                    sources: dict[str, str], timesteps: int, encoding: str,
                    labels: torch.Tensor | None, wall: float,
                    counts: dict[str, torch.Tensor] | None = None) -> SimulationResult:
    """The :class:`~snnedge.SimulationResult` of the batches ``runs`` of one simulation.

    ``counts``: the per-neuron counts of every source summed over ``runs`` when the runs do
    not carry them (the batches of several ranks, :func:`snnedge.distributed.gather_runs`).
    ``links`` (:func:`snnedge.connectivity.source_links`) turn each source's per-neuron counts
    into synaptic events (``sources[s] == "events"``) or input MACs (``"analog"``) of the
    layers it feeds; ``wall`` is the wall time in seconds.
    """
    if counts is None:  # (one batch: its own tensors, no sum)
        counts = {s: functools.reduce(operator.add, (r.counts[s] for r in runs)) for s in sources}
    carried, totals = link_totals(links, counts)
    events, macs = {}, {}
    for (source, target), total in carried.items():
        book = events if sources[source] == "events" else macs
        book[target] = book.get(target, 0) + int(round(total))
    neuron_layers = net.neuron_layers
    engines = Counter(r.engine for r in runs)
    return SimulationResult(
        output=torch.cat([r.output for r in runs]),
        step_predictions=torch.cat([r.step_predictions for r in runs], dim=1),
        spike_counts={k: int(round(totals[k])) for k in neuron_layers},
        synaptic_events=events, input_macs=macs,
        neurons={k: counts[k].numel() for k in neuron_layers},
        neuron_spike_counts={k: counts[k].cpu() for k in neuron_layers},
        timesteps=timesteps, num_samples=sum(r.output.shape[0] for r in runs),
        encoding=encoding, engine=engines.most_common(1)[0][0], labels=labels, wall_time_s=wall,
        input_spike_counts=counts[INPUT].cpu() if sources[INPUT] == "events" else None,
        readout=None if any(r.readout is None for r in runs) else torch.cat(
            [r.readout for r in runs], dim=1),
        extra={"activity_first_block": [r.activity for r in runs],
               **({k: [r.extra[k] for r in runs] for k in ("input_density", "event_layers")}
                  if all("event_layers" in r.extra for r in runs) else {})})


def split_batches(x, batch_size: int, labels=None) -> tuple[list, int, torch.Tensor | None]:
    """``([(x, y), ...], N, labels or None)`` from a tensor ``[N, ...]`` (cut into batches of
    ``batch_size``; ``labels`` optional), a map-style ``Dataset`` (batches of ``batch_size``,
    in order) or an iterable of ``x`` or ``(x, y)`` batches (kept as they come; their labels
    are concatenated when every batch has them)."""
    if isinstance(x, torch.Tensor):
        if x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"simulate expects a tensor [N, ...] with N >= 1 samples. Got shape "
                             f"{tuple(x.shape)}; add a batch dimension with x.unsqueeze(0).")
        y = None if labels is None else torch.as_tensor(labels).reshape(-1)
        if y is not None and y.numel() != x.shape[0]:
            raise ValueError(f"simulate got {y.numel()} labels for {x.shape[0]} samples.")
        return [(x[i:i + batch_size], None) for i in range(0, x.shape[0], batch_size)], x.shape[0], y
    if isinstance(x, Dataset) and not isinstance(x, (IterableDataset, Iterable)):
        x = DataLoader(x, batch_size=batch_size)  # a map-style Dataset, in order
    if isinstance(x, Iterable):
        data = list(x)
        if not data:
            raise ValueError("simulate got an empty DataLoader/iterable; it needs at least one batch.")
        xs, ys = [], []
        for item in data:
            xb, yb = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
            if not isinstance(xb, torch.Tensor):
                raise TypeError(f"simulate expects batches of tensors (x or (x, y)). Got {type(xb).__name__}.")
            xs.append((xb, yb))
            ys.append(yb)
        y = torch.cat([torch.as_tensor(v).reshape(-1) for v in ys]) if all(v is not None for v in ys) else None
        return xs, sum(b[0].shape[0] for b in xs), y
    raise TypeError(f"simulate expects x as a torch.Tensor [N, ...] or a DataLoader of (x, y). "
                    f"Got {type(x).__name__}; convert arrays with torch.as_tensor(x).")


def check_input(net: SpikingNetwork, xb: torch.Tensor,
                sequence: bool = False) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
    """The sample shape of batch ``xb`` and every layer's output shape, or a ``ValueError``
    naming the mismatch (with the network's ``input_shape``, or the first layer that cannot
    take it). ``sequence``: ``xb`` is one step ``x[:, t]`` of a sequence batch."""
    shape = tuple(xb.shape[1:])
    if sequence and net.input_shape is not None and shape != net.input_shape:
        hint = (" It looks like one sequence [T, *sample_shape] without its batch dimension: pass "
                "x.unsqueeze(0)." if shape == net.input_shape[1:] else "")
        raise ValueError(f"simulate(encoding='sequence'): the network expects sequences of shape "
                         f"[N, T, {', '.join(map(str, net.input_shape))}] but each step of the data "
                         f"has shape {list(shape)} (dimensions 2 and up of the batch).{hint}")
    if net.input_shape is not None and shape != net.input_shape:
        raise ValueError(f"simulate: the network expects input of shape [N, "
                         f"{', '.join(map(str, net.input_shape))}] but got {list(xb.shape)}. "
                         f"Reshape the data (e.g. x.view(-1, {', '.join(map(str, net.input_shape))})).")
    return shape, net.shapes(shape)  # raises naming the first layer that cannot take it


def sequence_length(x, timesteps: int | None) -> int:
    """``T`` of sequence data ``x`` (a tensor ``[N, T, ...]`` or batches of one), checked
    against ``timesteps`` when given; a ``ValueError`` names the disagreement or a rank too low."""
    first = x if isinstance(x, torch.Tensor) else None
    if first is None and isinstance(x, Iterable):
        first = next(iter(x), None)
        first = first[0] if isinstance(first, (tuple, list)) else first
    if not isinstance(first, torch.Tensor):
        return timesteps if timesteps is not None else 32  # split_batches names the problem
    if first.dim() < 3:
        raise ValueError(f"simulate(encoding='sequence') expects x of shape [N, T, *sample_shape] "
                         f"(at least 3 dimensions). Got shape {tuple(first.shape)}; a single "
                         f"sequence [T, ...] needs x.unsqueeze(0), and static samples "
                         f"encoding='direct'.")
    length = int(first.shape[1])
    if timesteps is not None and timesteps != length:
        raise ValueError(f"simulate(encoding='sequence'): timesteps={timesteps!r} disagrees with the "
                         f"data's T = {length} (dimension 1 of {tuple(first.shape)}); leave timesteps "
                         f"out (T comes from x), or cut the data with x[:, :{timesteps}].")
    return length


def check_sequence_batch(xb: torch.Tensor, timesteps: int) -> None:
    """A ``ValueError`` unless batch ``xb`` is ``[B, T, ...]`` with the simulation's ``T``."""
    if xb.dim() < 3 or xb.shape[1] != timesteps:
        raise ValueError(f"simulate(encoding='sequence'): a batch of shape {tuple(xb.shape)} does not "
                         f"have the first batch's T = {timesteps} steps (dimension 1); one simulation "
                         f"has one T: pad or cut the sequences to one length (e.g. with "
                         f"events_to_frames' n_time_bins).")


def source_kind(net: SpikingNetwork, name: str, input_kind: str) -> str:
    """How the outputs of counted source ``name`` are counted: ``"events"`` (binary spikes:
    their sum) or ``"analog"`` (non-zero values). Temporal modules emit events unless they
    say otherwise (``emits_events = False``: a leaky integrator); ``emits_events = None``
    (a delay) passes its input's kind on."""
    if name == INPUT:
        return input_kind
    if net.kind(name) != "temporal":
        return "analog"
    says = getattr(net.layer(name), "emits_events", True)
    if says is None:
        return source_kind(net, net.inputs_of(name)[0], input_kind)
    return "events" if says else "analog"


def check_finite(xb: torch.Tensor) -> None:
    """A ``ValueError`` counting the NaN or infinite values of batch ``xb``, if any."""
    if not torch.isfinite(xb).all():
        bad = int((~torch.isfinite(xb)).sum())
        raise ValueError(f"simulate: the input holds {bad} NaN or infinite values; clean or impute "
                         f"the data first (e.g. torch.nan_to_num).")


def all_modules(net: torch.nn.Module) -> list[torch.nn.Module]:
    """``net`` and every submodule, each once (what ``net.modules()`` yields, in another
    order): one loop over the ``_modules`` dicts instead of a generator per level of nesting
    that every module's value passes through (the two walks per call of ``simulate`` were 3%
    of a one-sample run of ResNet-18)."""
    seen, found, stack = set(), [], [net]
    while stack:
        m = stack.pop()
        if id(m) not in seen:
            seen.add(id(m))
            found.append(m)
            stack.extend(c for c in m._modules.values() if c is not None)
    return found


def prepared(net: SpikingNetwork, device: torch.device, dtype: torch.dtype,
             modules: list[torch.nn.Module] | None = None) -> SpikingNetwork:
    """The network on ``device`` in ``dtype``: the same object if nothing changes, else a copy.
    ``modules``: :func:`all_modules` of ``net`` when the caller has it."""
    # one walk over the modules' own tensors: parameters() and buffers() walk the modules
    # twice and keep a set of what they saw (0.5 ms of a 20 ms one-sample run of ResNet-18)
    if all(t is None or (t.device == device and (t.dtype == dtype or not t.is_floating_point()))
           for m in (all_modules(net) if modules is None else modules)
           for t in itertools.chain(m._parameters.values(), m._buffers.values())):
        return net
    return copy.deepcopy(net).to(device=device, dtype=dtype)


@contextlib.contextmanager
def eval_mode(net: torch.nn.Module, modules: list[torch.nn.Module] | None = None) -> Iterator[None]:
    """Every submodule of ``net`` in eval mode inside the block; each one's own mode after.
    ``modules``: :func:`all_modules` of ``net`` when the caller has it."""
    training = [m for m in (all_modules(net) if modules is None else modules) if m.training]
    for m in training:
        # the flag itself where the module keeps torch's ``train``: ``net.eval()`` goes through
        # ``Module.__setattr__`` once per module and cost 8% of a one-sample simulation of
        # GoogLeNet (2,330 modules, each switched and restored on every call)
        if type(m).train is torch.nn.Module.train:
            object.__setattr__(m, "training", False)
        else:
            m.train(False)
    try:
        yield
    finally:
        for m in training:
            object.__setattr__(m, "training", True)
