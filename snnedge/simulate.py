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
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm import tqdm

from . import distributed as dist_glue
from .connectivity import SourceLink, event_sources, source_links
from .encoders import get_encoder
from .engine import BatchRun, block_steps_for, exact_float32, run_batch
from .errors import check_choice, check_positive_int
from .layers import INPUT
from .network import SpikingNetwork, module_device, module_dtype
from .results import SimulationResult

ENGINES: dict[str, Callable | None] = {"dense": None, "event": None, "auto": None}


def register_engine(name: str, fn: Callable) -> None:
    """Add an engine that takes ``simulate``'s arguments and returns a SimulationResult
    (e.g. :func:`snnedge.interop.simulate_brian2`, built on this module's shared pieces)."""
    ENGINES[name] = fn


def simulate(snn: SpikingNetwork, x, timesteps: int = 32, encoding: str = "direct",
             engine: str = "auto", batch_size: int = 256, seed: int = 0, *,
             device: str | torch.device | None = None, dtype: torch.dtype | None = None,
             progress: bool | None = None, block_steps: int | None = None,
             labels=None, distributed: bool = False, **engine_options) -> SimulationResult:
    """Simulate ``snn`` on ``x`` for ``timesteps`` steps and count spikes and synaptic events.

    Parameters
    ----------
    snn:
        The network (from ``converters.convert``, ``snnedge.sequential`` or ``from_nir``).
    x:
        A tensor ``[N, ...]`` of samples, or a DataLoader/iterable of ``(x, y)`` batches (its
        labels are kept, so ``res.accuracy()`` needs no argument).
    timesteps:
        Number of steps ``T``.
    encoding:
        ``"direct"``, ``"poisson"`` or ``"latency"`` (see :mod:`snnedge.encoders`).
    engine:
        ``"dense"``, ``"event"``, ``"auto"`` (event propagation in each layer whose input
        density, measured in the first block, is below its break-even, see
        :mod:`snnedge.engine`), or a registered engine such as ``"brian2"``.
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
        Steps per time block (default: as many as fit 256 MiB of activations, at most 32).
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
    """
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"simulate expects a snnedge.SpikingNetwork. Got {type(snn).__name__}; "
                        f"convert an ANN with converters.convert(ann, calibration=...) or build one "
                        f"with snnedge.sequential(...).")
    check_positive_int(timesteps, param="timesteps", where="simulate")
    check_choice(encoding, ("direct", "poisson", "latency"), param="encoding", where="simulate")
    check_choice(engine, ENGINES, param="engine", where="simulate")
    check_positive_int(batch_size, param="batch_size", where="simulate")
    if block_steps is not None:
        check_positive_int(block_steps, param="block_steps", where="simulate")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"The 'dtype' parameter of simulate must be a floating torch.dtype such as "
                         f"torch.float32 or torch.float64. Got {dtype!r}.")
    if distributed and ENGINES[engine] is not None:
        raise ValueError(f"simulate(distributed=True) runs the torch engines ('dense', 'event', "
                         f"'auto'); engine {engine!r} runs in one process. Leave distributed=False "
                         f"for it.")
    if ENGINES[engine] is not None:
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
    net = prepared(snn, device, dtype)

    start = time.perf_counter()
    results, links, sources, shape = [], None, None, None
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
    with torch.no_grad(), eval_mode(net), exact_float32():
        for xb, _ in batches:
            xb = xb.to(device, dtype)
            if shape is None:
                shape, shapes = check_input(net, xb)
                links, sources = layout(net, shape, encoding)
                first_size = xb.shape[0] if shard is None else shard.first_size
                steps = block_steps or block_steps_for(shapes, first_size, timesteps,
                                                       torch.finfo(dtype).bits // 8)
            elif tuple(xb.shape[1:]) != shape:
                raise ValueError(f"Input batches differ in shape: {shape} then {tuple(xb.shape[1:])}.")
            check_finite(xb)
            # engine "auto": later batches reuse the first batch's per-layer choice, so that
            # small batches (one block each) switch too
            chosen = results[0].extra.get("event_layers") if results else measured
            first = 0 if shard is None else shard.first_batch  # one process's batch index
            results.append(run_batch(net, xb, get_encoder(encoding), timesteps,
                                     seed=seed + first + len(results),
                                     engine=engine, block_steps=steps, sources=sources,
                                     event_layers=chosen, on_choice=None if results else share))
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


def layout(net: SpikingNetwork, shape: tuple[int, ...],
           encoding: str) -> tuple[list[SourceLink], dict[str, str]]:
    """``(links, sources)`` of :func:`assemble_result` for samples of ``shape``: each source
    (the input, every neuron layer) counted as ``"events"`` (spikes) or ``"analog"`` values."""
    links = source_links(net, shape)
    enc_kind = "events" if get_encoder(encoding).spiking else "analog"
    sources = {s: ("events" if net.kind(s) == "temporal" else "analog")
               for s in event_sources(net) if s != INPUT}
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
    if counts is None:
        counts = {s: sum(r.counts[s] for r in runs) for s in sources}
    events, macs = {}, {}
    for link in links:
        total = float((counts[link.source].cpu() * link.weight).sum())
        book = events if sources[link.source] == "events" else macs
        book[link.target] = book.get(link.target, 0) + int(round(total))
    neuron_layers = net.neuron_layers
    engines = Counter(r.engine for r in runs)
    return SimulationResult(
        output=torch.cat([r.output for r in runs]),
        step_predictions=torch.cat([r.step_predictions for r in runs], dim=1),
        spike_counts={k: int(round(float(counts[k].sum()))) for k in neuron_layers},
        synaptic_events=events, input_macs=macs,
        neurons={k: counts[k].numel() for k in neuron_layers},
        neuron_spike_counts={k: counts[k].cpu() for k in neuron_layers},
        timesteps=timesteps, num_samples=sum(r.output.shape[0] for r in runs),
        encoding=encoding, engine=engines.most_common(1)[0][0], labels=labels, wall_time_s=wall,
        input_spike_counts=counts[INPUT].cpu() if sources[INPUT] == "events" else None,
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


def check_input(net: SpikingNetwork,
                xb: torch.Tensor) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
    """The sample shape of batch ``xb`` and every layer's output shape, or a ``ValueError``
    naming the mismatch (with the network's ``input_shape``, or the first layer that cannot
    take it)."""
    shape = tuple(xb.shape[1:])
    if net.input_shape is not None and shape != net.input_shape:
        raise ValueError(f"simulate: the network expects input of shape [N, "
                         f"{', '.join(map(str, net.input_shape))}] but got {list(xb.shape)}. "
                         f"Reshape the data (e.g. x.view(-1, {', '.join(map(str, net.input_shape))})).")
    return shape, net.shapes(shape)  # raises naming the first layer that cannot take it


def check_finite(xb: torch.Tensor) -> None:
    """A ``ValueError`` counting the NaN or infinite values of batch ``xb``, if any."""
    if not torch.isfinite(xb).all():
        bad = int((~torch.isfinite(xb)).sum())
        raise ValueError(f"simulate: the input holds {bad} NaN or infinite values; clean or impute "
                         f"the data first (e.g. torch.nan_to_num).")


def prepared(net: SpikingNetwork, device: torch.device, dtype: torch.dtype) -> SpikingNetwork:
    """The network on ``device`` in ``dtype``: the same object if nothing changes, else a copy."""
    tensors = [*net.parameters(), *net.buffers()]
    if all(t.device == device and (t.dtype == dtype or not t.is_floating_point()) for t in tensors):
        return net
    return copy.deepcopy(net).to(device=device, dtype=dtype)


@contextlib.contextmanager
def eval_mode(net: torch.nn.Module) -> Iterator[None]:
    """Every submodule of ``net`` in eval mode inside the block; each one's own mode after."""
    modes = {m: m.training for m in net.modules()}
    net.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training
