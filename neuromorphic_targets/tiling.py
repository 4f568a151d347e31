"""Tiling a population onto cores: boxes of neurons, one box per core.

A population of shape ``(C, H, W)`` (or ``(N,)``, ``(C, L)``) is cut into boxes
``(t_c, t_h, t_w)`` of at most ``cap`` neurons, numbered row-major over the box grid; box ``i``
is core ``i`` of the layer. Keeping all channels of a spatial patch together keeps each
input's targets on few cores, and small patches keep each core's receptive-field union (its
axons) small. :func:`choose_tiling` searches box shapes ``t_d = ceil(d / k)`` (the smallest
box giving ``k`` blocks along a dimension), screens them on a representative core and a
representative input neuron, and checks the best ones exactly on every core.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from .graph import NetworkGraph, Population

#: Elements per batched structural pass (bounds memory: about 16 MiB per float32 tensor).
BUDGET = 4_000_000
#: Candidates checked exactly on every core before settling for the best screened one.
EXACT_TRIES = 4


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
        per_dim = [torch.tensor([min(t, d - k * t) for k in range(g)])
                   for d, t, g in zip(self.shape, self.tile, self.grid)]
        out = per_dim[0]
        for p in per_dim[1:]:
            out = (out[:, None] * p[None, :]).reshape(-1)
        return out

    def per_tile_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of a per-neuron tensor over each core's neurons."""
        return torch.stack([values[self.slices(i)].sum() for i in range(self.n_tiles)])


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


def candidate_tilings(shape: tuple[int, ...], cap: int) -> list[Tiling]:
    per_dim = [sorted({math.ceil(d / k) for k in range(1, d + 1)}) for d in shape]
    return [Tiling(tuple(shape), t) for t in itertools.product(*per_dim) if math.prod(t) <= cap]


def evaluate(graph: NetworkGraph, pop: Population, tiling: Tiling) -> TileReport:
    """Axons of every core and destinations of every source neuron, exactly."""
    n = tiling.n_tiles
    width = pop.neurons + sum(math.prod(graph.source_shape(s)) for s in pop.sources)
    step = max(1, BUDGET // width)
    axons = torch.zeros(n, dtype=torch.long)
    dest = {s: torch.zeros(graph.source_shape(s)) for s in pop.sources}
    for start in range(0, n, step):
        idx = list(range(start, min(n, start + step)))
        for s, m in graph.supports(pop, tiling.indicator(idx)).items():
            axons[start:start + len(idx)] += m.flatten(1).sum(1)
            dest[s] += m.sum(0)
    return TileReport(tiling, axons, {s: d.round().long() for s, d in dest.items()})


def _representative_tile(t: Tiling) -> int:
    grid = t.grid
    index = [0 if (d == 0 and len(grid) > 1) else g // 2 for d, g in enumerate(grid)]
    i = 0
    for g, k in zip(grid, index):
        i = i * g + k
    return i


def _screen_axons(graph: NetworkGraph, pop: Population, cands: list[Tiling], fan: list[int],
                  max_axons: int, max_fanout: int | None) -> list[float]:
    """Axons of each candidate's representative core, in order of increasing cores, stopping
    after the first group of equal core counts that has a candidate within the limits (the
    rest are not needed and stay ``inf``)."""
    width = pop.neurons + sum(math.prod(graph.source_shape(s)) for s in pop.sources)
    step, out, stop_at = max(1, BUDGET // width), [math.inf] * len(cands), None
    for start in range(0, len(cands), step):
        idx = [i for i in range(start, min(len(cands), start + step))
               if stop_at is None or cands[i].n_tiles <= stop_at]
        if not idx:
            break
        g = torch.stack([cands[i].indicator([_representative_tile(cands[i])])[0] for i in idx])
        sizes = sum(m.flatten(1).sum(1) for m in graph.supports(pop, g).values())
        for i, a in zip(idx, sizes.tolist()):
            out[i] = int(a)
            if stop_at is None and a <= max_axons and (max_fanout is None or fan[i] <= max_fanout):
                stop_at = cands[i].n_tiles
    return out


def _screen_fanout(graph: NetworkGraph, pop: Population, cands: list[Tiling]) -> list[int]:
    coords = []
    for s in pop.sources:
        shape = graph.source_shape(s)
        index = tuple(0 if (d == 0 and len(shape) > 1) else n // 2 for d, n in enumerate(shape))
        coords.append(graph.targets(pop, s, index).nonzero())
    return [max((int(c.tile_ids(xy).unique().numel()) for xy in coords), default=0) for c in cands]


def choose_tiling(graph: NetworkGraph, pop: Population, cap: int, max_axons: int | None = None,
                  max_fanout: int | None = None) -> TileReport:
    """The box with the fewest cores whose every core fits ``max_axons`` and whose sources
    reach at most ``max_fanout`` of its cores; ties prefer fewer destinations. When no
    screened box satisfies the limits, the fewest-cores box is returned (the caller reports
    the violated limit)."""
    cands = sorted(candidate_tilings(pop.shape, cap), key=lambda c: (c.n_tiles, c.tile))
    fan = _screen_fanout(graph, pop, cands)
    axons = ([0] * len(cands) if max_axons is None
             else _screen_axons(graph, pop, cands, fan, max_axons, max_fanout))

    def violates(i: int) -> bool:
        return ((max_axons is not None and axons[i] > max_axons)
                or (max_fanout is not None and fan[i] > max_fanout))

    order = sorted(range(len(cands)),
                   key=lambda i: (violates(i), cands[i].n_tiles, fan[i], axons[i], cands[i].tile))
    first = None
    for i in order[:EXACT_TRIES]:
        if violates(i) and first is not None:
            break
        rep = evaluate(graph, pop, cands[i])
        first = first or rep
        if ((max_axons is None or int(rep.axons.max()) <= max_axons)
                and (max_fanout is None or rep.max_destinations <= max_fanout)):
            return rep
    return first
