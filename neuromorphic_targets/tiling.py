"""Choosing how a population is cut into cores, exactly.

Candidate boxes are ``t_d = ceil(d / k)`` along each dimension (the smallest box giving ``k``
blocks) with at most ``cap`` neurons (:func:`candidate_tilings`). Keeping all channels of a
spatial patch together keeps each input's targets on few cores, and small patches keep each
core's receptive-field union (its axons) small. :func:`choose_tiling` returns the candidate
with the fewest cores whose *every* core fits ``max_axons`` and whose sources' neurons each
reach at most ``max_fanout`` of its cores; ties prefer fewer destinations, then fewer axons
(when they are limited), then the smaller box. Every candidate is judged by its exact worst
core and worst neuron, so a feasible tiling is found whenever one exists among the candidates.

The counts come from the population's receptive fields in closed form
(:mod:`.receptive`, :mod:`.tile_counts`): interior cores of a convolution are alike, border
ones are counted as they are. A layer kind the closed form does not read falls back to
:func:`evaluate`, the structural map's vector-Jacobian products over every core (exact, slower).
"""
from __future__ import annotations

import itertools
import math

import torch

from .graph import NetworkGraph, Population
from .receptive import population_terms
from .tile_counts import ClosedFormTiles
from .tiles import TileReport, Tiling, representative_neuron, representative_tile

__all__ = ["BUDGET", "AutogradTiles", "TileReport", "Tiling", "candidate_tilings", "choose_tiling",
           "evaluate", "representative_neuron", "representative_tile", "tile_counter"]

#: Elements per batched structural pass of :func:`evaluate` (about 16 MiB per float32 tensor).
BUDGET = 4_000_000


def candidate_tilings(shape: tuple[int, ...], cap: int) -> list[Tiling]:
    per_dim = [sorted({math.ceil(d / k) for k in range(1, d + 1)}) for d in shape]
    return [Tiling(tuple(shape), t) for t in itertools.product(*per_dim) if math.prod(t) <= cap]


def evaluate(graph: NetworkGraph, pop: Population, tiling: Tiling) -> TileReport:
    """Axons of every core and destinations of every source neuron, exactly, by autograd
    through the structural map (any layer kind the mapper reads; work grows with cores x
    neurons)."""
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


class AutogradTiles:
    """The counting interface of :class:`~.tile_counts.ClosedFormTiles` over :func:`evaluate`."""

    def __init__(self, graph: NetworkGraph, pop: Population):
        self.graph, self.pop, self._reports = graph, pop, {}

    def report(self, tiling: Tiling) -> TileReport:
        if tiling not in self._reports:
            self._reports[tiling] = evaluate(self.graph, self.pop, tiling)
        return self._reports[tiling]

    def max_axons(self, tiling: Tiling) -> int:
        return int(self.report(tiling).axons.max())

    def max_destinations(self, tiling: Tiling) -> int:
        return self.report(tiling).max_destinations

    def representative_axons(self, tiling: Tiling) -> int:
        return int(self.report(tiling).axons[representative_tile(tiling)])

    def representative_destinations(self, tiling: Tiling) -> int:
        dest = self.report(tiling).destinations
        return max((int(d[representative_neuron(tuple(d.shape))]) for d in dest.values()), default=0)


def tile_counter(graph: NetworkGraph, pop: Population) -> ClosedFormTiles | AutogradTiles:
    """The closed-form counter of ``pop``'s tilings, or the autograd one when a layer between
    its sources and its neurons is not separable."""
    terms = population_terms(graph, pop)
    if terms is None:
        return AutogradTiles(graph, pop)
    return ClosedFormTiles(pop.shape, terms, {s: graph.source_shape(s) for s in pop.sources})


def choose_tiling(graph: NetworkGraph, pop: Population, cap: int, max_axons: int | None = None,
                  max_fanout: int | None = None, counter=None) -> TileReport:
    """The box with the fewest cores whose every core fits ``max_axons`` and whose sources'
    neurons each reach at most ``max_fanout`` of its cores (both judged on the worst core and
    the worst neuron, exactly).

    Ties among those go to fewer destinations of the representative source neuron
    (:func:`representative_neuron`), then (when axons are limited) fewer axons on the
    representative core (:func:`representative_tile`), then the smaller box: the choices the
    screening tiler made whenever it found a feasible box. When no candidate satisfies the
    limits, the box first in that order among those whose representatives do (else among
    all) is returned, and the caller reports the violated limit."""
    counter = counter if counter is not None else tile_counter(graph, pop)
    cands = sorted(candidate_tilings(pop.shape, cap), key=lambda c: (c.n_tiles, c.tile))

    def key(c: Tiling) -> tuple:
        fan = counter.representative_destinations(c)
        axons = counter.representative_axons(c) if max_axons is not None else 0
        screened_out = ((max_axons is not None and axons > max_axons)
                        or (max_fanout is not None and fan > max_fanout))
        return screened_out, c.n_tiles, fan, axons, c.tile

    for _, group in itertools.groupby(cands, key=lambda c: c.n_tiles):
        feasible = [c for c in group
                    if (max_axons is None or counter.max_axons(c) <= max_axons)
                    and (max_fanout is None or counter.max_destinations(c) <= max_fanout)]
        if feasible:
            return counter.report(min(feasible, key=key))
    return counter.report(min(cands, key=key))
