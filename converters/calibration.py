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
    normalization);
``"none"``
    ``lambda = 1``: the ANN's weights are used as they are.

Percentiles are taken over at most :data:`MAX_VALUES` values per layer (a uniform random
sample when the calibration set is larger; seeded, so conversion is deterministic).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .graph import Graph

MAX_VALUES = 2 ** 22
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


@torch.no_grad()
def activation_scales(graph: Graph, x: torch.Tensor, names: list[str], mode: str,
                      percentile: float, batch_size: int = 256, seed: int = 0,
                      positive_only: bool = True) -> dict[str, torch.Tensor]:
    """``{layer: lambda}`` for the activation layers ``names`` (see the module docstring).

    ``lambda`` is a 0-d tensor, or for ``"channelwise"`` a tensor with one value per channel
    shaped to broadcast over the layer's per-sample output (``(C, 1, 1)`` or ``(F,)``).
    A layer (or channel) that never fires on the calibration data gets ``lambda = 1``.
    """
    if mode == "none" or not names:
        return {n: torch.tensor(1.0, dtype=torch.float64) for n in names}
    n_samples = x.shape[0]
    per_sample = {n: math.prod(graph.op(n).shape) for n in names}
    keep_rate = {n: min(1.0, MAX_VALUES / (per_sample[n] * n_samples)) for n in names}
    gen = torch.Generator().manual_seed(seed)
    maxima: dict[str, torch.Tensor] = {}
    stored: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for i in range(0, n_samples, batch_size):
        _, acts = graph.run(x[i:i + batch_size], record=tuple(names))
        for n in names:
            a = acts[n].detach().to("cpu", torch.float32)
            if mode == "max":
                m = a.max()
                maxima[n] = m if n not in maxima else torch.maximum(maxima[n], m)
                continue
            per_channel = a.transpose(0, 1).reshape(a.shape[1], -1) if mode == "channelwise" \
                else a.reshape(1, -1)
            if keep_rate[n] < 1.0:
                cols = torch.rand(per_channel.shape[1], generator=gen) < keep_rate[n]
                per_channel = per_channel[:, cols]
            stored[n].append(per_channel)
    out = {}
    for n in names:
        if mode == "max":
            lam = float(maxima[n])
            out[n] = torch.tensor(lam if lam > 0 else 1.0, dtype=torch.float64)
            continue
        values = torch.cat(stored[n], dim=1)
        stored[n] = []
        lams = []
        for row in values:
            row = row[row > 0] if positive_only else row
            lams.append(_kth(row, percentile))
        lam = torch.tensor(lams, dtype=torch.float64)
        if mode == "channelwise":
            layer = float(lam[lam > 0].median()) if (lam > 0).any() else 1.0
            lam = torch.where(lam > 0, lam, torch.full_like(lam, layer))
            shape = graph.op(n).shape
            out[n] = lam.view(-1, *([1] * (len(shape) - 1)))
        else:
            out[n] = torch.tensor(float(lam[0]) if lam[0] > 0 else 1.0, dtype=torch.float64)
    return out
