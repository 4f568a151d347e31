r"""Data-parallel runs over ``torch.distributed``: the glue that :func:`snnedge.simulate`,
:func:`snnedge.fit`, ``converters.convert`` and the command line share.

Launch one process per CPU share or GPU with ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``)::

    torchrun --nproc_per_node=2 my_script.py              # calls simulate(..., distributed=True)
    torchrun --nproc_per_node=2 -m snnedge simulate snn.pt --data test.npz --distributed

:func:`setup` joins the process group that is already there, or starts one from the torchrun
environment: ``gloo`` on CPU-only machines, ``cpu:gloo,cuda:nccl`` where CUDA is present (CUDA
tensors go through NCCL, CPU tensors through gloo). A rank's GPU is ``cuda:LOCAL_RANK``; its CPU
threads are ``OMP_NUM_THREADS`` when set (torchrun sets 1), else the cores divided by the
processes on the node. Without a process group and without torchrun's variables,
``distributed=True`` raises a ``ValueError`` that says how to launch.

Shards are whole batches (:func:`batch_range`): batch ``b`` of a single-process run is batch
``b`` of exactly one rank, contiguous ranges in rank order, so no sample is dropped or
repeated for any world size and each batch keeps its seed (``seed + b``). Gathered results
are therefore those of one process, in the original order.

What crosses the wire in :func:`gather_runs` (one simulation, ``n_r`` samples on rank ``r``,
``C`` outputs, ``T`` steps): one all-gather of ``max_r n_r x (C + T + 1)`` float64 values per
rank (outputs, per-step predictions, labels), one all-reduce of every per-neuron spike count
(float64: integer sums stay exact up to :math:`2^{53}`), and one all-gather of a few hundred
bytes of pickled batch metadata.
"""
from __future__ import annotations

import atexit
import hashlib
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import (BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler,
                              SequentialSampler, Subset)

from .engine import BatchRun

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
LAUNCH = ("launch the script with torchrun, e.g. `torchrun --nproc_per_node=2 your_script.py` or "
          "`torchrun --nproc_per_node=2 -m snnedge simulate snn.pt --data test.npz --distributed` "
          "(torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT), or call "
          "torch.distributed.init_process_group(...) before")


@dataclass(frozen=True)
class Context:
    """This process's place in the process group.

    ``rank`` and ``world_size`` of the group; ``local_rank`` on this node (``LOCAL_RANK``, the
    index of its GPU); ``backend`` as ``torch.distributed.get_backend`` names it."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the one that writes files and shows progress."""
        return self.rank == 0


def launched() -> bool:
    """Whether this process runs under torchrun (its environment variables are all set)."""
    return all(v in os.environ for v in TORCHRUN_VARIABLES)


def is_main_process() -> bool:
    """True unless a process group is initialized and this is not its rank 0."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def setup(where: str) -> Context:
    """The :class:`Context` of this process, starting the process group from torchrun's
    environment when none is initialized (see the module docstring); ``where`` names the
    caller in the ``ValueError`` raised when there is neither."""
    if not dist.is_available():
        raise ValueError(f"{where}(distributed=True) needs torch.distributed, which this torch "
                         f"build lacks; install a torch with distributed support.")
    if not dist.is_initialized():
        missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
        if missing:
            raise ValueError(f"{where}(distributed=True) needs a torch.distributed process group, "
                             f"but none is initialized and this process was not started by "
                             f"torchrun (missing {', '.join(missing)}). To run on several "
                             f"processes, {LAUNCH}. For one process, leave distributed=False.")
        local = int(os.environ["LOCAL_RANK"])
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
        threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or \
            max(1, (os.cpu_count() or 1) // max(local_world, 1))
        torch.set_num_threads(threads)
        if torch.cuda.is_available():
            torch.cuda.set_device(local % torch.cuda.device_count())
            dist.init_process_group(backend="cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group(backend="gloo")
        atexit.register(_shutdown)
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return Context(dist.get_rank(), dist.get_world_size(), local, str(dist.get_backend()))


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_device(ctx: Context, device: str | torch.device | None,
                module_at: torch.device) -> torch.device:
    """The device this rank computes on: ``device`` when it names a GPU index or the CPU;
    ``cuda`` without an index, or no ``device`` for a module on a GPU (``module_at``), is
    ``cuda:LOCAL_RANK``."""
    named = device is not None
    device = torch.device(device) if named else module_at
    if device.type == "cuda" and (device.index is None or not named):
        return torch.device("cuda", ctx.local_rank % max(torch.cuda.device_count(), 1))
    return device


def _wire(ctx: Context, device: torch.device) -> torch.device:
    """Where a collective's tensors must lie: CUDA tensors stay on their GPU when NCCL is in
    the group; everything else goes through gloo on the CPU (or to this rank's GPU when NCCL is
    the only backend)."""
    if "nccl" in ctx.backend and (device.type == "cuda" or "gloo" not in ctx.backend):
        return device if device.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --------------------------------------------------------------------------------------
# shards
# --------------------------------------------------------------------------------------
def batch_range(n_batches: int, ctx: Context) -> range:
    """The batches of rank ``ctx.rank``: ``n_batches`` split into ``world_size`` contiguous
    ranges in rank order, the first ``n_batches % world_size`` ranks taking one more."""
    base, extra = divmod(n_batches, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return range(start, start + base + (ctx.rank < extra))


def sample_range(n_samples: int, batch_size: int, ctx: Context) -> tuple[range, int]:
    """``(samples of this rank, index of its first batch)`` when ``n_samples`` are cut into
    batches of ``batch_size`` and the batches are split by :func:`batch_range`."""
    batches = batch_range(math.ceil(n_samples / batch_size), ctx)
    start = batches.start * batch_size
    return range(start, min(batches.stop * batch_size, n_samples)), batches.start


@dataclass
class Shard:
    """This rank's part of a simulation's data (:func:`shard_data`).

    ``data``: what :func:`snnedge.simulate.split_batches` takes (a tensor, a DataLoader over a
    subset, or a list of batches), ``None`` when this rank has no batch; ``labels``: labels of
    a tensor input, for the whole data (``None`` otherwise: batches bring their own);
    ``first_batch``: the global index of this rank's first batch (its seed offset);
    ``first_size``: the size of the data's first batch (which sizes the time blocks, as in
    one process); ``sample_shape``: one sample's shape; ``num_batches``: batches in all."""

    data: object
    labels: torch.Tensor | None
    first_batch: int
    first_size: int
    sample_shape: tuple[int, ...]
    num_batches: int


def _first_x(item) -> torch.Tensor:
    xb = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(xb, torch.Tensor):
        raise TypeError(f"simulate expects batches of tensors (x or (x, y)). Got {type(xb).__name__}.")
    return xb


def _loader_like(loader: DataLoader, dataset, batch_size: int, indices: range) -> DataLoader:
    """A loader over ``dataset[indices]`` in order, with ``loader``'s workers and collation."""
    workers = loader.num_workers
    return DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                      num_workers=workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      worker_init_fn=loader.worker_init_fn, timeout=loader.timeout,
                      multiprocessing_context=loader.multiprocessing_context if workers else None,
                      prefetch_factor=loader.prefetch_factor if workers else None,
                      persistent_workers=loader.persistent_workers if workers else False)


def check_loader(loader: DataLoader, where: str) -> None:
    """A ``TypeError``/``ValueError`` unless ``loader`` reads a map-style dataset in order in
    batches of a fixed size: the only kind that ranks can split without reading it all."""
    if isinstance(loader.dataset, IterableDataset):
        raise TypeError(f"{where}(distributed=True) cannot split a DataLoader over an "
                        f"IterableDataset ({type(loader.dataset).__name__}) between ranks without "
                        f"reading all of it on each; give a map-style Dataset (with __len__ and "
                        f"__getitem__), a DataLoader over one, or a tensor.")
    if loader.batch_size is None or type(loader.batch_sampler) is not BatchSampler:
        raise ValueError(f"{where}(distributed=True) got a DataLoader with its own batch_sampler "
                         f"({type(loader.batch_sampler).__name__}); the ranks split the dataset "
                         f"into batches themselves. Pass DataLoader(dataset, batch_size=..., "
                         f"shuffle=False), or the Dataset itself.")
    if type(loader.sampler) is not SequentialSampler:
        raise ValueError(f"{where}(distributed=True) got a DataLoader with its own sampler "
                         f"({type(loader.sampler).__name__}"
                         f"{': shuffle=True' if type(loader.sampler) is RandomSampler else ''}); "
                         f"the ranks split the dataset between them in order, so that results "
                         f"come back in the original order. Pass DataLoader(dataset, "
                         f"batch_size=..., shuffle=False) without a sampler, or the Dataset itself.")


def shard_data(x, batch_size: int, labels, ctx: Context, where: str = "simulate") -> Shard:
    """This rank's whole batches of ``x``: a tensor ``[N, ...]`` (the same on every rank,
    checked by hash), a map-style ``Dataset`` (batches of ``batch_size``), a ``DataLoader``
    over one (its batch size; in order, no sampler of its own) or a list of batches."""
    if isinstance(x, torch.Tensor):
        if x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"{where} expects a tensor [N, ...] with N >= 1 samples. Got shape "
                             f"{tuple(x.shape)}; add a batch dimension with x.unsqueeze(0).")
        y = None if labels is None else torch.as_tensor(labels).reshape(-1)
        prints = (data_fingerprint(x), None if y is None else data_fingerprint(y))
        check_same(prints, "the input data (hash of x and labels)",
                   "give every rank the same tensor (load the same file, or split a Dataset instead)",
                   ctx, where)
        samples, first = sample_range(x.shape[0], batch_size, ctx)
        part = x[samples.start:samples.stop] if len(samples) else None
        return Shard(part, y, first, min(batch_size, x.shape[0]), tuple(x.shape[1:]),
                     math.ceil(x.shape[0] / batch_size))
    if labels is not None:
        raise ValueError(f"{where}: labels= goes with a tensor input; a Dataset or DataLoader "
                         f"brings its labels in its (x, y) items.")
    if isinstance(x, DataLoader):
        check_loader(x, where)
        dataset, batch_size = x.dataset, x.batch_size
        n = len(dataset) // batch_size * batch_size if x.drop_last else len(dataset)
        loader = x
    elif isinstance(x, Dataset) and not isinstance(x, IterableDataset):
        dataset, n, loader = x, len(x), DataLoader(x, batch_size=batch_size)
    elif isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{where} got an empty list; it needs at least one batch.")
        check_same(len(x), "the number of batches", "give every rank the same list", ctx, where)
        mine = batch_range(len(x), ctx)
        return Shard(list(x[mine.start:mine.stop]) or None, None, mine.start,
                     _first_x(x[0]).shape[0], tuple(_first_x(x[0]).shape[1:]), len(x))
    else:
        raise TypeError(f"{where}(distributed=True) splits a tensor [N, ...], a map-style Dataset, "
                        f"a DataLoader over one, or a list of batches between ranks. Got "
                        f"{type(x).__name__}; convert arrays with torch.as_tensor(x).")
    if n == 0:
        raise ValueError(f"{where} got an empty Dataset/DataLoader; it needs at least one sample.")
    check_same(n, "the dataset's length", "give every rank the same dataset", ctx, where)
    samples, first = sample_range(n, batch_size, ctx)
    item = dataset[0]
    shape = tuple(torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item).shape)
    local = _loader_like(loader, dataset, batch_size, samples) if len(samples) else None
    return Shard(local, None, first, min(batch_size, n), shape, math.ceil(n / batch_size))


# --------------------------------------------------------------------------------------
# agreement between ranks
# --------------------------------------------------------------------------------------
def tensor_digest(t: torch.Tensor, h=None):
    """A sha256 over ``t``'s dtype, shape and bytes (``h`` to extend, else a new one)."""
    h = h if h is not None else hashlib.sha256()
    t = t.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    flat = t.to("cpu").contiguous().reshape(-1)
    if flat.numel():
        h.update(memoryview(flat.view(torch.uint8).numpy()))
    return h


FINGERPRINT_ELEMENTS = 2 ** 23


def data_fingerprint(x: torch.Tensor) -> str:
    """A hash that tells data sets apart cheaply: all of ``x`` up to
    :data:`FINGERPRINT_ELEMENTS` elements; beyond that, an even stride of that many elements
    together with the float64 sum of all of them (a GPU's whole-dataset simulation should not
    wait for hashing gigabytes on a CPU)."""
    x = x.detach()
    if x.numel() <= FINGERPRINT_ELEMENTS:
        return tensor_digest(x).hexdigest()
    flat = x.reshape(-1)
    h = tensor_digest(flat[::math.ceil(flat.numel() / FINGERPRINT_ELEMENTS)])
    h.update(f"{tuple(x.shape)}{float(flat.double().sum())!r}".encode())
    return h.hexdigest()


def module_digest(module) -> str:
    """A hash of a module's structure (submodule paths and types) and state dict; for a
    ``torch.export.ExportedProgram``, of its state dict."""
    h = hashlib.sha256()
    if isinstance(module, nn.Module):
        h.update(repr([(n, type(m).__qualname__) for n, m in module.named_modules()]).encode())
        state = module.state_dict()
    else:
        state = dict(getattr(module, "state_dict", {}) or {})
    for key, value in state.items():
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            tensor_digest(value, h)
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def all_gather_objects(obj, ctx: Context) -> list:
    """``obj`` of every rank (picklable), in rank order."""
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def check_same(value, what: str, fix: str, ctx: Context, where: str) -> None:
    """A ``ValueError`` on every rank unless ``value`` (a digest, a shape) is equal on all of
    them; the message names ``what`` differs, the ranks that disagree with rank 0, and ``fix``."""
    values = all_gather_objects(value, ctx)
    odd = [r for r, v in enumerate(values) if v != values[0]]
    if odd:
        raise ValueError(f"{where}(distributed=True): {what} differs between ranks (rank "
                         f"{', '.join(map(str, odd))} against rank 0); {fix}.")


def check_same_network(net, ctx: Context, where: str) -> None:
    """The same network on every rank (a hash of its structure and state dict), or a
    ``ValueError``."""
    check_same(module_digest(net), "the network (hash of its state dict)",
               "build it the same way on every rank: seed before creating it (torch.manual_seed) "
               "or load the same weights on every rank", ctx, where)


# --------------------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------------------
def sum_exact(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    """The sum of ``t`` over ranks, added in float64 (exact for integer counts below
    :math:`2^{53}`), in ``t``'s dtype and device."""
    buf = t.to(_wire(ctx, t.device), torch.float64)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device, t.dtype)


def max_over_ranks(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    """The elementwise maximum of ``t`` over ranks (exact), in ``t``'s dtype and device."""
    buf = t.to(_wire(ctx, t.device), torch.float64)
    dist.all_reduce(buf, op=dist.ReduceOp.MAX)
    return buf.to(t.device, t.dtype)


def gather_rows(t: torch.Tensor, ctx: Context, sizes: list[int]) -> torch.Tensor:
    """Every rank's ``t`` (``sizes[r]`` rows on rank ``r``, the same columns) stacked in rank
    order: one all-gather of ``max(sizes)`` padded rows per rank."""
    width = max(sizes)
    buf = torch.zeros((width, *t.shape[1:]), dtype=t.dtype, device=_wire(ctx, t.device))
    buf[:t.shape[0]] = t.to(buf.device)
    out = [torch.empty_like(buf) for _ in range(ctx.world_size)]
    dist.all_gather(out, buf)
    return torch.cat([part[:n] for part, n in zip(out, sizes)]).to(t.device)


def union_kth(rows: list[torch.Tensor], percentile: float, ctx: Context) -> list[float]:
    r"""For each row, the ``percentile``-th value of the union of that row over all ranks,
    exactly as one process computes it on the union: the ``k``-th smallest with
    :math:`k = \min(n, \max(1, \lceil p n / 100 \rceil))`, ``n`` the union's size (0.0 when
    ``n = 0``).

    Only tails travel: the ``k``-th smallest is the ``m``-th largest, :math:`m = n - k + 1`,
    and the union's ``m`` largest values are among the ``m`` largest of each rank, so each rank
    sends its ``min(k, m)`` most extreme values of each row (about 0.1% of them at
    ``p = 99.9``), padded to one all-gather, and the answer is picked from what arrives.
    """
    counts = sum_exact(torch.tensor([r.numel() for r in rows], dtype=torch.float64), ctx)
    total = [int(c) for c in counts]
    ks = [min(n, max(1, math.ceil(percentile / 100.0 * n))) for n in total]
    from_top = [n - k + 1 <= k for n, k in zip(total, ks)]
    need = [(n - k + 1 if top else k) if n else 0 for n, k, top in zip(total, ks, from_top)]
    width = max(need + [1])
    local = torch.full((len(rows), width), -math.inf, dtype=torch.float64)
    for i, (row, top) in enumerate(zip(rows, from_top)):
        take = min(need[i], row.numel())
        if take:
            v = row.to(torch.float64) if top else -row.to(torch.float64)  # bottom: largest of -v
            local[i, :take] = v.topk(take).values
    merged = gather_rows(local.unsqueeze(0), ctx, [1] * ctx.world_size)  # [W, rows, width]
    out = []
    for i, (n, top) in enumerate(zip(total, from_top)):
        if n == 0:
            out.append(0.0)
            continue
        value = float(merged[:, i].reshape(-1).topk(need[i]).values[-1])
        out.append(value if top else -value)
    return out


def share_choice(choice: list[str] | None, ctx: Context) -> list[str]:
    """Rank 0's ``choice`` (engine ``"auto"``: the event layers measured on the first block of
    batch 0, as one process measures them) on every rank; the others pass ``None`` and wait
    for it, so that every batch runs the layers one process runs."""
    box = [choice]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --------------------------------------------------------------------------------------
# simulation results
# --------------------------------------------------------------------------------------
@dataclass
class Gathered:
    """What :func:`gather_runs` returns: every batch of every rank in the original order
    (counts left empty), the per-neuron counts summed over all of them, the labels the batches
    carried (``None`` unless every batch had some), what each rank did, and the bytes the two
    collectives moved."""

    runs: list[BatchRun]
    counts: dict[str, torch.Tensor]
    labels: torch.Tensor | None
    rank_samples: list[int]
    rank_seconds: list[float]
    gather_bytes: int   # the all-gather's result on each rank (padded rows of every rank)
    reduce_bytes: int   # the all-reduced per-neuron counts


def gather_runs(runs: list[BatchRun], labels: torch.Tensor | None, template: dict,
                ctx: Context, seconds: float) -> Gathered:
    """The batches ``runs`` of every rank, for :func:`snnedge.simulate.assemble_result`.

    ``labels`` are this rank's labels (``None`` when its batches carried none; a rank without
    batches passes ``None``); ``template`` maps each counted source to a zero tensor of its
    per-neuron count's shape, dtype and device (what a rank without batches contributes);
    ``seconds`` is this rank's simulation time. Counts are summed with :func:`sum_exact`; the
    outputs, per-step predictions and labels travel in one float64 all-gather (exact for
    every float type up to float64 and for class indices).
    """
    meta = [(r.output.shape[0], r.output.shape[1:], r.output.dtype, r.step_predictions.shape[0],
             r.engine, r.activity, r.extra) for r in runs]
    n_local = sum(b[0] for b in meta)
    if labels is not None and labels.numel() != n_local:
        labels = None  # not one class index per sample: kept by no rank, as by one process
    label_dtype = None if labels is None else labels.dtype
    everyone = all_gather_objects((meta, label_dtype, seconds), ctx)
    metas = [m for m, _, _ in everyone]
    sizes = [sum(b[0] for b in m) for m in metas]
    with_labels = all(dt is not None or not m for m, dt, _ in everyone)
    label_dtype = next((dt for _, dt, _ in everyone if dt is not None), None)
    _, out_shape, _, steps, *_ = next(m[0] for m in metas if m)
    classes = math.prod(out_shape)

    device = runs[0].output.device if runs else next(iter(template.values())).device
    cols = classes + steps + 1
    local = torch.zeros((n_local, cols), dtype=torch.float64, device=device)
    if runs:
        local[:, :classes] = torch.cat([r.output for r in runs]).reshape(n_local, -1)
        local[:, classes:classes + steps] = torch.cat([r.step_predictions for r in runs], 1).T
        if labels is not None:
            local[:, -1] = labels.to(device).reshape(-1)
    rows = gather_rows(local, ctx, sizes)

    local_counts = {s: sum(r.counts[s] for r in runs) if runs else z for s, z in template.items()}
    flat = torch.cat([c.reshape(-1).to(torch.float64) for c in local_counts.values()]) \
        if local_counts else torch.zeros(0, dtype=torch.float64)
    flat = sum_exact(flat, ctx)
    counts, at = {}, 0
    for s, c in local_counts.items():
        counts[s] = flat[at:at + c.numel()].reshape(c.shape).to(c.device, c.dtype)
        at += c.numel()

    gathered, row = [], 0
    for m in metas:
        for n, shape, dtype, _, engine, activity, extra in m:
            block = rows[row:row + n]
            gathered.append(BatchRun(
                output=block[:, :classes].reshape(n, *shape).to(dtype),
                step_predictions=block[:, classes:classes + steps].T.to(torch.int64).contiguous(),
                counts={}, engine=engine, activity=activity, extra=extra))
            row += n
    y = rows[:, -1].to(label_dtype).cpu() if with_labels else None
    return Gathered(gathered, counts, y, sizes, [s for _, _, s in everyone],
                    gather_bytes=max(sizes) * cols * 8 * ctx.world_size, reduce_bytes=flat.numel() * 8)
