"""Boxes of neurons, one box per core: a :class:`Tiling` and what it costs (:class:`TileReport`).

A population of shape ``(C, H, W)`` (or ``(N,)``, ``(C, L)``) is cut into boxes ``tile`` of at
most a core's neurons, numbered row-major over the box grid; box ``i`` is core ``i`` of the
layer. The last box along a dimension may be cut short by the population's edge.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Tiling:
    """Box ``tile`` over a population of ``shape``."""

    shape: tuple[int, ...]
    tile: tuple[int, ...]

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(math.ceil(d / t) for d, t in zip(self.shape, self.tile))

    @property
    def n_tiles(self) -> int:
        return math.prod(self.grid)

    @property
    def volume(self) -> int:
        return math.prod(self.tile)

    def slices(self, i: int) -> tuple[slice, ...]:
        out = []
        for g, t in zip(reversed(self.grid), reversed(self.tile)):
            i, k = divmod(i, g)
            out.append(slice(k * t, (k + 1) * t))
        return tuple(reversed(out))

    def indicator(self, indices) -> torch.Tensor:
        g = torch.zeros((len(indices), *self.shape))
        for b, i in enumerate(indices):
            g[(b, *self.slices(i))] = 1.0
        return g

    def tile_ids(self, coords: torch.Tensor) -> torch.Tensor:
        """Core of each neuron given as rows of ``coords`` (``(m, ndim)``)."""
        ids = torch.zeros(coords.shape[0], dtype=torch.long)
        for d, (g, t) in enumerate(zip(self.grid, self.tile)):
            ids = ids * g + coords[:, d] // t
        return ids

    def neurons_per_tile(self) -> torch.Tensor:
        return self.per_tile_sum(torch.ones(self.shape, dtype=torch.long))

    def per_tile_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of a per-neuron tensor over each core's neurons, in core order."""
        pad = [p for g, t, d in reversed(list(zip(self.grid, self.tile, self.shape)))
               for p in (0, g * t - d)]
        v = F.pad(values, pad) if any(pad) else values
        split = [n for g, t in zip(self.grid, self.tile) for n in (g, t)]
        dims = len(self.shape)
        return v.reshape(split).permute(*range(0, 2 * dims, 2), *range(1, 2 * dims, 2)) \
            .reshape(self.n_tiles, -1).sum(1)


def representative_tile(tiling: Tiling) -> int:
    """The core whose axons break ties: the first block of channels (of a multi-dimensional
    population) and the middle block along every other dimension."""
    grid = tiling.grid
    i = 0
    for d, g in enumerate(grid):
        i = i * g + (0 if (d == 0 and len(grid) > 1) else g // 2)
    return i


def representative_neuron(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The source neuron whose destinations break ties: channel 0 (of a multi-dimensional
    source) at the middle position."""
    return tuple(0 if (d == 0 and len(shape) > 1) else n // 2 for d, n in enumerate(shape))


@dataclass(frozen=True)
class TileReport:
    """A tiling checked on every core.

    ``axons[i]``: distinct source neurons core ``i`` needs; ``destinations[s]``: for each
    neuron of source ``s``, how many of this population's cores it reaches."""

    tiling: Tiling
    axons: torch.Tensor
    destinations: dict[str, torch.Tensor]

    @property
    def max_destinations(self) -> int:
        return max((int(d.max()) for d in self.destinations.values() if d.numel()), default=0)
