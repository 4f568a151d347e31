"""Calibration data and the activation scales measured on them.

The scale ``lambda`` of an activation layer is the value that a neuron firing at every step
stands for (Rueckauer et al., Front. Neurosci. 11:682, 2017, doi:10.3389/fnins.2017.00682):

``"max"``
    the largest activation seen on the calibration data (Diehl et al., IJCNN 2015);
``"percentile"``
    the ``p``-th percentile of the layer's positive activations (robust normalization,
    Rueckauer et al. 2017; the largest 0.1 % are allowed to saturate at ``p = 99.9``);
``"channelwise"``
    the ``p``-th percentile per output channel (Kim et al., AAAI 2020, channel-wise
    normalization). A channel positive in fewer than ``100 - p`` % of its values
    (:func:`rare_channels`) takes the median of the layer's measured channels. The layers in
    ``layerwise`` are the exception: the activation layers whose spikes are the network's
    output (a ReLU readout, as SqueezeNet's), where no weighted layer after them takes the
    channels' units back, so they get one percentile for the layer and their spike counts
    keep the ANN's order between classes. ``convert(..., max_scale_ratio=r)`` (or
    ``hardware=`` a chip with one weight scale per layer) bounds the spread of a layer's
    channel scales (:func:`bound_ratio`);
``"none"``
    ``lambda = 1``: the ANN's weights are used as they are.

Percentiles are taken over at most :data:`MAX_VALUES` values per layer (a uniform random
sample when the calibration set is larger; seeded, so conversion is deterministic).

Over several ranks (``convert(..., distributed=True)``, the hook ``ranks=`` of
:func:`activation_scales`): each rank measures whole batches of the calibration set, those a
single process would measure in the same order (:func:`snnedge.distributed.batch_range`), and
replays the random draws of the batches before its own (:func:`skip_draws`), so the ranks
together keep exactly the values one process keeps. :func:`reduce_statistics` then reduces
them: ``"max"`` by an all-reduce of the maxima; the percentiles by
:func:`snnedge.distributed.union_kth`, which exchanges only each rank's most extreme
``min(k, n - k + 1)`` values per row. The union is not approximated: the scales are those of
one process, bit for bit (tests/test_distributed.py checks it with and without subsampling).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from snnedge import distributed as dist_glue

from .graph import Graph

MAX_VALUES = 2 ** 22
# Memory of the activations recorded at once: a batch holds the outputs of every measured
# layer, so the batch shrinks (below ``batch_size``) where these would exceed it.
RECORD_BYTES = 512 * 2 ** 20
NORMALIZATIONS = ("percentile", "max", "channelwise", "none")


def calibration_tensor(calibration, max_samples: int | None = None) -> torch.Tensor:
    """The calibration samples as one tensor ``[N, ...]`` (from a tensor or a DataLoader)."""
    if isinstance(calibration, torch.Tensor):
        x = calibration
    elif isinstance(calibration, Iterable) and not isinstance(calibration, (str, bytes)):
        parts = []
        for item in calibration:
            xb = item[0] if isinstance(item, (tuple, list)) else item
            if not isinstance(xb, torch.Tensor):
                raise TypeError(f"The 'calibration' parameter of convert must yield tensors or "
                                f"(x, y) pairs of tensors. Got a batch of {type(xb).__name__}.")
            parts.append(xb)
            if max_samples is not None and sum(p.shape[0] for p in parts) >= max_samples:
                break
        if not parts:
            raise ValueError("The 'calibration' parameter of convert got an empty DataLoader; it "
                             "needs at least one batch of training samples (a few hundred is plenty).")
        shapes = {tuple(p.shape[1:]) for p in parts}
        if len(shapes) > 1:
            raise ValueError(f"The calibration batches differ in sample shape: {sorted(shapes)}.")
        x = torch.cat(parts)
    else:
        raise TypeError(f"The 'calibration' parameter of convert must be a tensor [N, ...] or a "
                        f"DataLoader of (x, y) batches. Got {type(calibration).__name__}.")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"The 'calibration' parameter of convert must hold a batch of samples "
                         f"[N, ...] with N >= 1. Got shape {list(x.shape)}; for one sample use "
                         f"x.unsqueeze(0).")
    if not x.is_floating_point():
        raise TypeError(f"The 'calibration' parameter of convert must be a floating-point tensor. "
                        f"Got {x.dtype}; use x.float().")
    if not torch.isfinite(x).all():
        raise ValueError(f"The 'calibration' parameter of convert holds "
                         f"{int((~torch.isfinite(x)).sum())} NaN or infinite values; clean the data "
                         f"first (e.g. torch.nan_to_num).")
    return x if max_samples is None else x[:max_samples]


def _kth(values: torch.Tensor, percentile: float) -> float:
    n = values.numel()
    if n == 0:
        return 0.0
    k = min(n, max(1, math.ceil(percentile / 100.0 * n)))
    return float(values.kthvalue(k).values)


def percentiles(rows: list[torch.Tensor], percentile: float) -> list[float]:
    """The ``percentile``-th value of each row (0.0 for an empty row)."""
    return [_kth(row, percentile) for row in rows]


@torch.no_grad()
def activation_scales(graph: Graph, x: torch.Tensor, names: list[str], mode: str,
                      percentile: float, batch_size: int = 256, seed: int = 0,
                      positive_only: bool = True,
                      ranks: dist_glue.Context | None = None,
                      layerwise: Iterable[str] = (),
                      max_ratio: float | None = None) -> dict[str, torch.Tensor]:
    """``{layer: lambda}`` for the activation layers ``names`` (see the module docstring).

    ``lambda`` is a 0-d tensor, or for ``"channelwise"`` a tensor with one value per channel
    shaped to broadcast over the layer's per-sample output (``(C, 1, 1)`` or ``(F,)``).
    A layer that never fires on the calibration data gets ``lambda = 1``; under
    ``"channelwise"`` a channel that never fires, or fires too rarely to be measured
    (:func:`rare_channels`), gets the median of its layer's measured channels; with
    ``max_ratio``, no channel's scale lies below its layer's largest divided by ``max_ratio``
    (:func:`bound_ratio`). With ``ranks`` (``x`` the same on every rank) each rank measures
    its share of the batches and the statistics are reduced across ranks (see the module
    docstring).
    """
    if mode == "none" or not names:
        return {n: torch.tensor(1.0, dtype=torch.float64) for n in names}
    layerwise = frozenset(layerwise)
    n_samples = x.shape[0]
    per_sample = {n: math.prod(graph.op(n).shape) for n in names}
    batch_size = record_batch(per_sample.values(), batch_size)
    keep_rate = {n: min(1.0, MAX_VALUES / (per_sample[n] * n_samples)) for n in names}
    gen = torch.Generator().manual_seed(seed)
    maxima: dict[str, torch.Tensor] = {}
    stored: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    starts = range(0, n_samples, batch_size)
    if ranks is not None:  # this rank's batches, the generator where one process has it
        mine = dist_glue.batch_range(len(starts), ranks)
        skip_draws(graph, names, mode, keep_rate, gen, [min(batch_size, n_samples - i)
                                                        for i in starts[:mine.start]], layerwise)
        starts = starts[mine.start:mine.stop]
    for i in starts:
        _, acts = graph.run(x[i:i + batch_size], record=tuple(names))
        for n in names:
            a = acts[n].detach().to("cpu", torch.float32)
            if mode == "max":
                m = a.max()
                maxima[n] = m if n not in maxima else torch.maximum(maxima[n], m)
                continue
            per_channel = a.transpose(0, 1).reshape(a.shape[1], -1) \
                if _rows(graph, n, mode, layerwise) > 1 else a.reshape(1, -1)
            if keep_rate[n] < 1.0:
                cols = torch.rand(per_channel.shape[1], generator=gen) < keep_rate[n]
                per_channel = per_channel[:, cols]
            stored[n].append(per_channel)
    kth = percentiles
    if ranks is not None:
        maxima, kth = reduce_statistics(graph, names, mode, maxima, stored, ranks, layerwise)
    out = {}
    for n in names:
        if mode == "max":
            lam = float(maxima[n])
            out[n] = torch.tensor(lam if lam > 0 else 1.0, dtype=torch.float64)
            continue
        values = torch.cat(stored[n], dim=1)
        stored[n] = []
        lam = torch.tensor(kth([row[row > 0] if positive_only else row for row in values],
                               percentile), dtype=torch.float64)
        if mode == "channelwise" and n not in layerwise:
            measured = (lam > 0) & ~rare_channels(values, percentile, ranks)
            layer = float(lam[measured].median()) if measured.any() else 1.0
            lam = torch.where(measured, lam, torch.full_like(lam, layer))
            if max_ratio is not None:
                lam = bound_ratio(lam, max_ratio)
            shape = graph.op(n).shape
            out[n] = lam.view(-1, *([1] * (len(shape) - 1)))
        else:
            out[n] = torch.tensor(float(lam[0]) if lam[0] > 0 else 1.0, dtype=torch.float64)
    return out


def bound_ratio(lam: torch.Tensor, max_ratio: float) -> torch.Tensor:
    """Channel scales ``lam`` raised where needed so that none lies below
    ``lam.max() / max_ratio``.

    A chip with one weight scale per layer (DYNAP-CNN's 8 bits, Loihi's 8-bit mantissas times
    one power-of-two exponent) rounds every weight of a layer on the grid of its largest.
    Channel ``c``'s normalized weights grow as ``1 / lam[c]``, so a wide spread of scales leaves
    the other channels few levels: in ``hardware_accuracy.py``'s ``truenorth_cnn`` (a spread of
    186) Loihi lost 0.9 points against the float SNN, and none with 10-bit weights. A channel
    raised here fires at a lower rate than its own percentile would give, never saturates.

    >>> bound_ratio(torch.tensor([8.0, 2.0, 0.5], dtype=torch.float64), 4.0)
    tensor([8., 2., 2.], dtype=torch.float64)
    """
    return torch.clamp(lam, min=float(lam.max()) / max_ratio)


def rare_channels(values: torch.Tensor, percentile: float,
                  ranks: dist_glue.Context | None = None) -> torch.Tensor:
    """Per row of ``values`` ``[C, n]`` (one channel each, over ``ranks`` together): True
    where the channel is positive in fewer than the share of values the percentile lets
    saturate, ``1 - percentile / 100`` (0.1 % at ``p = 99.9``).

    Such a channel's percentile is one of a handful of outliers, not a measure of its range:
    in a trained MNIST CNN a channel positive once in 98,000 values got a ``lambda`` 500 times
    below its layer's, so its weights grew 500-fold and a chip with one weight scale per
    layer (DYNAP-CNN, Loihi) rounded every other channel's weights to zero. These channels
    take the layer's scale, as channels that never fire do.

    >>> rare_channels(torch.tensor([[0.0] * 999 + [5.0], [1.0] * 1000]), 99.0)
    tensor([ True, False])
    """
    counts = torch.stack([(values > 0).sum(dim=1).to(torch.float64),
                          torch.full((values.shape[0],), float(values.shape[1]), dtype=torch.float64)])
    if ranks is not None:
        counts = dist_glue.sum_exact(counts, ranks)
    positive, total = counts
    return positive * 100.0 < (100.0 - percentile) * total  # (1 - 0.99) * 1000 > 10 in floats


def target_batches(graph: Graph, x: torch.Tensor, layers: list[str],
                   scales: dict[str, torch.Tensor], timesteps: int, batch_size: int = 256):
    """Per batch of ``x`` (one ANN pass in all): ``{layer: clip(T a / lambda, 0, T)}``, the
    spikes each neuron's ANN activation stands for in ``timesteps`` steps, float32 ``[n, ...]``."""
    batch_size = record_batch([math.prod(graph.op(n).shape) for n in layers], batch_size)
    for i in range(0, x.shape[0], batch_size):
        _, acts = graph.run(x[i:i + batch_size], record=tuple(layers))
        out = {}
        for name in layers:
            a = acts[name].to(torch.float32)
            lam = scales[name].to(a.device, torch.float32)
            lam = lam if lam.dim() == 0 else lam.view(1, *lam.shape)
            out[name] = torch.clamp(a / lam * timesteps, 0, timesteps)
        yield out


def record_batch(per_sample: Iterable[int], batch_size: int) -> int:
    """Samples per batch when every sample records ``sum(per_sample)`` float32 activations:
    ``batch_size``, or fewer where the batch's activations would exceed :data:`RECORD_BYTES`
    (at least one).

    >>> record_batch([784, 512], 256), record_batch([64 * 224 * 224] * 2, 256)
    (256, 20)
    """
    return max(1, min(batch_size, RECORD_BYTES // (4 * max(1, sum(per_sample)))))


def _rows(graph: Graph, name: str, mode: str, layerwise: frozenset[str] = frozenset()) -> int:
    """Rows of the values stored for layer ``name``: its channels for ``"channelwise"``
    (unless ``name`` is in ``layerwise``), else 1."""
    return graph.op(name).shape[0] if mode == "channelwise" and name not in layerwise else 1


def skip_draws(graph: Graph, names: list[str], mode: str, keep_rate: dict[str, float],
               gen: torch.Generator, sizes: list[int], layerwise: frozenset[str] = frozenset()) -> None:
    """Advance ``gen`` past the subsampling draws :func:`activation_scales` makes for batches
    of ``sizes`` samples (the batches before this rank's), call for call, without running them."""
    if mode == "max":
        return
    for b in sizes:
        for n in names:
            if keep_rate[n] < 1.0:
                torch.rand(b * math.prod(graph.op(n).shape) // _rows(graph, n, mode, layerwise),
                           generator=gen)


def reduce_statistics(graph: Graph, names: list[str], mode: str, maxima: dict[str, torch.Tensor],
                      stored: dict[str, list[torch.Tensor]], ranks: dist_glue.Context,
                      layerwise: frozenset[str] = frozenset()):
    """The statistics of this rank's batches -> those of every rank's (one process's).

    Returns the maxima reduced over ranks (exact) and the percentile function to use on the
    stored rows, :func:`snnedge.distributed.union_kth` (exact on the union). Fills in what a
    rank without a batch lacks (no maximum, no stored values)."""
    if mode == "max":
        local = torch.stack([maxima.get(n, torch.tensor(-math.inf)) for n in names])
        reduced = dist_glue.max_over_ranks(local, ranks)
        maxima = {n: reduced[i] for i, n in enumerate(names)}
    for n in names:
        if not stored[n]:
            stored[n].append(torch.empty(_rows(graph, n, mode, layerwise), 0))

    def kth(rows: list[torch.Tensor], percentile: float) -> list[float]:
        return dist_glue.union_kth(rows, percentile, ranks)
    return maxima, kth
