r"""``fit(..., distributed=True)``: data-parallel training over torchrun ranks.

The network's training view runs inside ``torch.nn.parallel.DistributedDataParallel``
(gradients all-reduced in buckets while the backward pass runs); ``bptt="truncated"``, whose
backward pass runs block by block, accumulates locally (``no_sync``) and all-reduces the
gradients once per step.

Batches (:meth:`DataParallel.batches`). ``batch_size`` stays the *global* batch, so the
optimizer takes the steps one process takes and the learning rate needs no change:

* ``(x, y)`` tensors (the same on every rank): every rank draws the same permutation from
  ``seed`` each epoch, cuts it into the batches one process would use, applies ``transform``
  to the whole batch (from the same generator), and takes its contiguous part of it. Each
  rank's loss is weighted by its share of the batch, :math:`W\, b_r / B`, so the average that
  DDP forms is the gradient of the whole batch's mean loss: with direct encoding and no
  dropout, training follows one process's run to float rounding. When a batch has fewer
  samples than there are ranks, a rank left without one runs its first sample with weight 0
  (DDP needs every rank in every step).
* a ``DataLoader``: its dataset is split by ``torch.utils.data.DistributedSampler`` (shuffled
  each epoch from ``seed`` when the loader shuffles; padded with repeated samples to the same
  length on every rank, as that sampler does), in batches of ``ceil(batch_size / W)``;
  ``transform`` draws from a generator seeded by rank.

Stochastic encoders and dropout draw per rank (seeds offset by the rank), so runs repeat
exactly for a given world size. Loss and accuracy of the :class:`~snnedge.training.History`
are summed over ranks; validation splits ``val`` into whole batches like
:func:`snnedge.simulate` (same seeds, so its figures are one process's).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from .. import distributed as dist_glue
from ..network import SpikingNetwork
from .data import LabelledData, Transform
from .forward import readout_sequence, truncated_backward
from .losses import LossFn

# Seeds of stochastic encoders differ between ranks by this much (a prime far from the
# per-epoch and per-batch offsets of fit).
RANK_SEED_STRIDE = 7_919_993


class Readout(nn.Module):
    """The training view as a module whose ``forward`` is :func:`readout_sequence`, so that
    DDP sees the whole forward pass (it prepares its gradient buckets there)."""

    def __init__(self, view: SpikingNetwork):
        super().__init__()
        self.view = view

    def forward(self, x: torch.Tensor, timesteps: int, encoding: str, seed: int, bptt: str,
                block: int) -> torch.Tensor:
        return readout_sequence(self.view, x, timesteps, encoding, seed, bptt, block)


class DataParallel:
    """One rank's part of a distributed :func:`snnedge.fit` (see the module docstring)."""

    def __init__(self, view: SpikingNetwork, ctx: dist_glue.Context, device: torch.device,
                 seed: int):
        self.ctx, self.seed = ctx, seed
        self.model = DistributedDataParallel(
            Readout(view), device_ids=[device.index] if device.type == "cuda" else None)
        self.params = [p for p in view.parameters() if p.requires_grad]
        self.valid = 0      # samples of the current local batch that count (0: a stand-in)
        self.stand_ins = 0  # stand-in samples run this epoch
        self.loader: DataLoader | None = None
        self.aug_gen = torch.Generator().manual_seed(seed + 1 + RANK_SEED_STRIDE * ctx.rank)

    # -- batches ------------------------------------------------------------------------
    def local_loader(self, data: LabelledData, batch_size: int) -> DataLoader:
        """The loader of this rank's samples (built once)."""
        if self.loader is None:
            loader = data.data
            if not isinstance(loader, DataLoader):
                raise TypeError(f"fit(distributed=True) takes train as (x, y) tensors or a "
                                f"DataLoader. Got {type(loader).__name__}; wrap the data in a "
                                f"torch.utils.data.DataLoader.")
            if type(loader.sampler) not in (SequentialSampler, RandomSampler) or \
                    loader.batch_size is None:
                raise ValueError(f"fit(distributed=True) got a DataLoader with its own sampler "
                                 f"({type(loader.sampler).__name__}); the ranks split the dataset "
                                 f"with a DistributedSampler themselves. Pass DataLoader(dataset, "
                                 f"batch_size=..., shuffle=True or False) without a sampler.")
            sampler = DistributedSampler(loader.dataset, self.ctx.world_size, self.ctx.rank,
                                         shuffle=type(loader.sampler) is RandomSampler,
                                         seed=self.seed, drop_last=loader.drop_last)
            workers = loader.num_workers
            self.loader = DataLoader(
                loader.dataset, batch_size=math.ceil(loader.batch_size / self.ctx.world_size),
                sampler=sampler, num_workers=workers, collate_fn=loader.collate_fn,
                pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                worker_init_fn=loader.worker_init_fn,
                persistent_workers=loader.persistent_workers if workers else False)
        return self.loader

    def num_batches(self, data: LabelledData, batch_size: int) -> int | None:
        """Optimizer steps per epoch (the same on every rank)."""
        return data.num_batches(batch_size) if data.pair else len(self.local_loader(data, batch_size))

    def batches(self, data: LabelledData, batch_size: int, generator: torch.Generator | None,
                transform: Transform | None, aug_gen: torch.Generator, epoch: int):
        """This rank's ``(x, y)`` of each training step of epoch ``epoch``, transformed."""
        self.stand_ins = 0
        if not data.pair:
            loader = self.local_loader(data, batch_size)
            loader.sampler.set_epoch(epoch)
            wrapped = LabelledData(loader, data.net, data.where, data.param)
            for xb, yb in wrapped.batches(batch_size):
                self.valid = xb.shape[0]
                yield (transform(xb, self.aug_gen) if transform is not None else xb), yb
            return
        x, y = data.data
        n, world, rank = x.shape[0], self.ctx.world_size, self.ctx.rank
        order = torch.randperm(n, generator=generator) if generator is not None else None
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size] if order is not None else slice(i, i + batch_size)
            xb, yb = x[idx], y[idx]
            if transform is not None:
                xb = transform(xb, aug_gen)  # the whole batch from the shared generator
            base, extra = divmod(xb.shape[0], world)
            lo = rank * base + min(rank, extra)
            hi = lo + base + (rank < extra)
            self.valid = hi - lo
            if self.valid:
                yield xb[lo:hi], yb[lo:hi]
            else:
                self.stand_ins += 1
                yield xb[:1], yb[:1]

    # -- one step -----------------------------------------------------------------------
    def train_step(self, view: SpikingNetwork, xb: torch.Tensor, yb: torch.Tensor,
                   optimizer: torch.optim.Optimizer, loss_fn: LossFn, timesteps: int,
                   encoding: str, seed: int, bptt: str, block: int) -> tuple[float, int]:
        """:func:`snnedge.training.loop.train_step` on this rank's part of the batch, the
        gradients averaged over ranks with the weights of the module docstring."""
        optimizer.zero_grad(set_to_none=True)
        total = float(dist_glue.sum_exact(torch.tensor([float(self.valid)]), self.ctx))
        seed = seed + RANK_SEED_STRIDE * self.ctx.rank
        if bptt == "truncated":
            with self.model.no_sync():
                loss, outs = truncated_backward(view, xb, yb, loss_fn, timesteps, encoding, seed, block)
            self.sum_gradients(self.valid / total)
        else:
            outs = self.model(xb, timesteps, encoding, seed, bptt, block)
            loss = loss_fn(outs, yb)
            (loss * (self.ctx.world_size * self.valid / total)).backward()
            loss, outs = loss.detach(), outs.detach()
        optimizer.step()
        if not self.valid:
            return 0.0, 0
        return float(loss), int((outs.sum(0).argmax(-1) == yb).sum())

    def sum_gradients(self, weight: float) -> None:
        """Every gradient replaced by the sum over ranks of ``weight`` times it (one all-reduce)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads]) * weight
        flat = dist_glue.sum_exact(flat, self.ctx)
        at = 0
        for p, g in zip(self.params, grads):
            p.grad = flat[at:at + g.numel()].view_as(g).to(g.dtype)
            at += g.numel()

    def totals(self, loss_sum: float, correct: int, seen: int) -> tuple[float, int, int]:
        """An epoch's loss sum, correct predictions and samples over all ranks (stand-ins out)."""
        t = dist_glue.sum_exact(torch.tensor([loss_sum, correct, seen - self.stand_ins],
                                             dtype=torch.float64), self.ctx)
        return float(t[0]), int(t[1]), int(t[2])

    # -- validation ---------------------------------------------------------------------
    def sharded(self, evaluate_data):
        """``evaluate_data`` (:func:`snnedge.training.loop.evaluate_data`) run by every rank on
        its whole batches of the data, the figures summed over ranks: one process's figures."""
        return lambda *args: self.evaluate(evaluate_data, *args)

    def evaluate(self, evaluate_data, net: SpikingNetwork, data: LabelledData, timesteps: int,
                 encoding: str, batch_size: int, loss_fn: LossFn, seed: int,
                 device: torch.device) -> dict:
        """See :meth:`sharded`."""
        if data.pair:
            x, y = data.data
            samples, first = dist_glue.sample_range(x.shape[0], batch_size, self.ctx)
            part = (x[samples.start:samples.stop], y[samples.start:samples.stop]) if len(samples) else None
        else:
            shard = dist_glue.shard_data(data.data, batch_size, None, self.ctx, where="fit")
            part, first = shard.data, shard.first_batch
        sums = torch.zeros(3, dtype=torch.float64)
        if part is not None:
            m = evaluate_data(net, LabelledData(part, net, data.where, data.param), timesteps,
                              encoding, batch_size, loss_fn, seed + first, device)
            sums = torch.tensor([m["loss"] * m["num_samples"], m["accuracy"] * m["num_samples"],
                                 m["num_samples"]], dtype=torch.float64)
        sums = dist_glue.sum_exact(sums, self.ctx)
        seen = int(sums[2])
        return {"loss": float(sums[0]) / seen, "accuracy": round(float(sums[1])) / seen,
                "num_samples": seen}
