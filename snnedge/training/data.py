"""Labelled data for training: checked pairs and loaders, batches, and augmentation.

:class:`LabelledData` takes what :func:`snnedge.fit` and :func:`snnedge.training.evaluate`
accept, ``(x, y)`` tensors or a DataLoader of ``(x, y)`` batches, and checks it against the
network (shapes, finite inputs, labels in range) with errors that name the data.
:func:`random_shift` is the augmentation both trainers use (``fit``'s ``transform=``, and
:func:`snnedge.ann.train_classifier`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from ..errors import check_positive_int
from ..network import SpikingNetwork

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def check_pair(x, y, where: str, param: str) -> None:
    """A ``TypeError``/``ValueError`` naming ``where`` and the ``param`` data unless ``(x, y)``
    is a floating-point input tensor ``[N, ...]`` and integer labels ``[N]``."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"The {param!r} data of {where} must be tensors (x, y). Got "
                        f"({type(x).__name__}, {type(y).__name__}); convert with torch.as_tensor.")
    if x.dim() < 2 or x.shape[0] == 0 or not x.is_floating_point():
        raise ValueError(f"The {param!r} inputs of {where} must be a floating-point tensor [N, ...] "
                         f"with N >= 1. Got {x.dtype} of shape {tuple(x.shape)}.")
    if y.dim() != 1 or y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"The {param!r} labels of {where} must be a 1-D integer tensor of class "
                        f"indices [N]. Got {y.dtype} of shape {tuple(y.shape)}; use y.long().")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{where} got {x.shape[0]} samples in x but {y.shape[0]} labels in y "
                         f"({param!r} data); x and y need the same length N.")


class LabelledData:
    """A ``(x, y)`` pair (checked once, batched and shuffled here) or a DataLoader (checked
    batch by batch) of labelled samples for ``net``. ``sequence``: the inputs are sequences
    ``[N, T, *sample_shape]`` (``encoding="sequence"``), of ``timesteps`` steps when given."""

    def __init__(self, data, net: SpikingNetwork, where: str, param: str, sequence: bool = False,
                 timesteps: int | None = None):
        self.net, self.where, self.param = net, where, param
        self.sequence, self.timesteps = sequence, timesteps
        self.shape = self.classes = None
        self.pair = isinstance(data, (tuple, list)) and len(data) == 2 and not any(
            isinstance(d, (tuple, list)) for d in data)
        if self.pair:
            self.data = tuple(data)
            self.check(*self.data)
        elif isinstance(data, Iterable) and not isinstance(data, (torch.Tensor, str, dict)):
            self.data = data
        else:
            raise TypeError(f"The {param!r} parameter of {where} must be a pair (x, y) of tensors "
                            f"or a DataLoader of (x, y) batches. Got {type(data).__name__}.")

    def __len__(self) -> int:  # samples, or 0 when a loader does not say
        if self.pair:
            return self.data[0].shape[0]
        try:
            return len(self.data.dataset)
        except (AttributeError, TypeError):
            return 0

    def num_batches(self, batch_size: int) -> int | None:
        if self.pair:
            return math.ceil(len(self) / batch_size)
        try:
            return len(self.data)
        except TypeError:
            return None

    def check(self, x, y) -> None:
        check_pair(x, y, self.where, self.param)
        if self.sequence:
            self.check_sequence(x)
        shape, net = tuple(x.shape[2 if self.sequence else 1:]), self.net
        if shape != self.shape:
            if net.input_shape is not None and shape != net.input_shape:
                raise ValueError(f"{self.where}: the network expects input of shape [N, "
                                 f"{', '.join(map(str, net.input_shape))}] but got {list(x.shape)}.")
            out = net.shapes(shape)[net.output_name]  # names the first layer that cannot take it
            self.shape, self.classes = shape, math.prod(out)
        if not torch.isfinite(x).all():
            raise ValueError(f"{self.where}: the {self.param!r} inputs hold NaN or infinite values; "
                             f"clean them first (e.g. torch.nan_to_num).")
        if self.sequence and self.timesteps is None:
            self.timesteps = int(x.shape[1])
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= self.classes:
            raise ValueError(f"The labels of {self.where} must be class indices in [0, {self.classes}) "
                             f"for a network with {self.classes} outputs (output layer "
                             f"{net.output_name!r}). Got labels in [{lo}, {hi}] ({self.param!r} data); "
                             f"check the labels or the size of the last layer.")

    def check_sequence(self, x: torch.Tensor) -> None:
        """A ``ValueError`` unless ``x`` is ``[N, T, *sample_shape]`` with the expected ``T``."""
        if x.dim() < 3:
            raise ValueError(f"The {self.param!r} inputs of {self.where} with encoding='sequence' must "
                             f"be [N, T, *sample_shape] (3 or more dimensions). Got shape "
                             f"{tuple(x.shape)}.")
        if self.timesteps is not None and x.shape[1] != self.timesteps:
            raise ValueError(f"{self.where}(encoding='sequence'): the {self.param!r} inputs have "
                             f"T = {x.shape[1]} steps (dimension 1 of {tuple(x.shape)}) but "
                             f"timesteps={self.timesteps} was given or found first; leave timesteps "
                             f"out (T comes from the data) and give sequences of one length.")

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """``(x, y)`` batches; a pair is reshuffled from ``generator`` when one is given."""
        if self.pair:
            x, y = self.data
            n = x.shape[0]
            order = torch.randperm(n, generator=generator) if generator is not None else None
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size] if order is not None else slice(i, i + batch_size)
                yield x[idx], y[idx]
            return
        for item in self.data:
            if not (isinstance(item, (tuple, list)) and len(item) >= 2):
                raise TypeError(f"{self.where}: {self.param!r} batches must be (x, y) pairs. Got "
                                f"{type(item).__name__}.")
            self.check(item[0], item[1])
            yield item[0], item[1]


def random_shift(max_shift: int = 1) -> Transform:
    """Augmentation for :func:`fit`: shift each image ``[N, C, H, W]`` by up to ``max_shift``
    pixels in each direction (uniform integers), filling with zeros."""
    check_positive_int(max_shift, param="max_shift", where="random_shift")

    def shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"random_shift expects images [N, C, H, W]. Got shape {tuple(x.shape)}.")
        n, _, h, w = x.shape
        d = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator).to(x.device)
        padded = F.pad(x, (max_shift,) * 4)
        rows = torch.arange(h, device=x.device) + d[0]  # [N, H]
        cols = torch.arange(w, device=x.device) + d[1]  # [N, W]
        out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()  # advanced indexing put channels last
    return shift
