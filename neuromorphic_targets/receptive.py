"""Receptive fields in closed form: which source neurons each neuron of a population reads.

The structural map from a source to a population (:mod:`.graph`) is, for the layers CNNs are
built from, separable along the spatial axes. With ``r`` spatial axes,

    M[(o_c, o_1..o_r), (c, i_1..i_r)] = OR_tau  K[o_c, c, tau]  AND  AND_a R_a[tau_a][o_a, i_a]

over a list of *taps* ``tau = (tau_1, .., tau_r)``: ``R_a[j]`` is the 0/1 matrix of tap ``j``
along axis ``a`` (:meth:`snnedge.geometry.Axis.tap_matrices`, padding modes included) and
``K[:, :, tau]`` says which channel pairs a tap joins (the weights' non-zero pattern, groups
included). A pooling window is a single tap (its window matrix, :mod:`snnedge.geometry`) that
keeps channels; a pool before a convolution multiplies each of the convolution's tap matrices
by the window matrix; ``Add`` and ``Concat`` join tap lists; a ``Linear`` after ``Flatten`` is a
convolution whose kernel covers its whole input (one tap per input position, a population of
spatial size 1). :class:`Term` holds ``(R, taps, K)`` for one source; :func:`population_terms`
builds them for every source of a population, or returns ``None`` for a layer kind it does not
read (the caller then falls back to the autograd structural map, which reads every kind).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from snnedge import Add, Concat, Scale, SumPool2d
from snnedge.connectivity import structural, window_sum
from snnedge.geometry import module_axes
from snnedge.layers import DROPOUTS, Narrow

from .graph import NetworkGraph, Population

#: Largest channel-by-tap pattern a term may hold (bools); beyond it the autograd map is used.
MAX_PATTERN = 400_000_000
WINDOWS = (nn.AvgPool1d, nn.AvgPool2d, SumPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
PASS = (*DROPOUTS, nn.Identity)


class NotSeparable(Exception):
    """A layer kind :func:`population_terms` does not read (never reaches users)."""


@dataclass(frozen=True)
class Term:
    """The structural map from one source ``(S_c, S_1..S_r)`` to a node ``(P_c, P_1..P_r)``.

    ``axes[a]``: bool ``(n_a, P_a, S_a)``, the tap matrices of axis ``a``; ``taps``: int
    ``(n_tau, r)``, per tap the index of its matrix on each axis; ``channels``: bool
    ``(P_c, S_c, n_tau)``, the channel pairs each tap joins."""

    axes: tuple[np.ndarray, ...]
    taps: np.ndarray
    channels: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels.shape[0], *(m.shape[1] for m in self.axes))

    @property
    def source_shape(self) -> tuple[int, ...]:
        return (self.channels.shape[1], *(m.shape[2] for m in self.axes))


def identity(shape: tuple[int, ...]) -> Term:
    r = len(shape) - 1
    return Term(tuple(np.eye(n, dtype=bool)[None] for n in shape[1:]), np.zeros((1, r), dtype=np.int64),
                np.eye(shape[0], dtype=bool)[:, :, None])


def window(term: Term, mats: list[np.ndarray], keep: np.ndarray | None = None) -> Term:
    """``term`` followed by a per-channel window (one matrix ``(O_a, M_a)`` per axis) and a
    channel mask ``keep`` (``None``: every channel)."""
    axes = tuple(_bool_matmul(m[None], a) for m, a in zip(mats, term.axes))
    ch = term.channels if keep is None else term.channels & keep[:, None, None]
    return simplify(Term(axes, term.taps, ch))


def weighted(k: np.ndarray, axes: list[np.ndarray], taps: np.ndarray, term: Term) -> Term:
    """``term`` followed by a weighted layer with channel pattern ``k`` ``(O_c, M_c, n_B)``,
    tap matrices ``axes[a]`` ``(n_Ba, O_a, M_a)`` and taps ``(n_B, r)``: the taps of the
    result are the pairs (layer tap, term tap)."""
    n_a = [a.shape[0] for a in term.axes]
    new_axes = tuple(_bool_matmul(b[:, None], a[None]).reshape(-1, b.shape[1], a.shape[2])
                     for b, a in zip(axes, term.axes))
    pairs = (taps[:, None, :] * np.array(n_a, dtype=np.int64) + term.taps[None, :, :]).reshape(
        len(taps) * len(term.taps), len(n_a))
    o, m, n_b = k.shape
    s, n_t = term.channels.shape[1], term.channels.shape[2]
    if o * s * n_b * n_t > MAX_PATTERN:
        raise NotSeparable("channel pattern too large")
    diag = _diagonal(term.channels)
    if diag is not None:
        ch = k[:, :, :, None] & diag[None, :, None, :]
    else:
        ch = np.tensordot(k.astype(np.float32), term.channels.astype(np.float32), axes=([1], [0]))
        ch = (ch > 0).transpose(0, 2, 1, 3)
    return simplify(Term(new_axes, pairs, ch.reshape(o, s, n_b * n_t)))


def union(terms: list[Term]) -> Term:
    """The OR of maps from one source to one node (``Add`` of branches, ``Concat`` padded)."""
    if len(terms) == 1:
        return terms[0]
    offsets = np.cumsum([[0] * len(terms[0].axes)] + [[a.shape[0] for a in t.axes] for t in terms[:-1]],
                        axis=0)
    axes = tuple(np.concatenate([t.axes[a] for t in terms]) for a in range(len(terms[0].axes)))
    taps = np.concatenate([t.taps + off for t, off in zip(terms, offsets)]).astype(np.int64)
    return simplify(Term(axes, taps, np.concatenate([t.channels for t in terms], axis=2)))


def simplify(term: Term) -> Term:
    """Merge equal tap matrices and equal taps; drop taps that join no channels."""
    used = term.channels.any((0, 1))
    taps, ch = (term.taps, term.channels) if used.all() else (term.taps[used], term.channels[:, :, used])
    axes = []
    for a, mats in enumerate(term.axes):
        keep = np.unique(taps[:, a]) if len(taps) else np.zeros(0, dtype=np.int64)
        first, inverse = unique_rows(mats[keep].reshape(len(keep), mats.shape[1] * mats.shape[2]))
        remap = np.zeros(mats.shape[0], dtype=np.int64)
        remap[keep] = inverse
        axes.append(mats[keep[first]])
        taps = taps.copy()
        taps[:, a] = remap[taps[:, a]]
    if len(taps) > 1:
        # Without spatial axes every tap is the same one.
        first, inverse = unique_rows(taps) if taps.shape[1] else (np.zeros(1, dtype=np.int64),
                                                                   np.zeros(len(taps), dtype=np.int64))
        if len(first) < len(taps):
            merged = np.zeros((*ch.shape[:2], len(first)), dtype=bool)
            for t in range(len(first)):
                merged[:, :, t] = ch[:, :, inverse == t].any(2)
            taps, ch = taps[first], merged
    return Term(tuple(axes), taps, ch)


def unique_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: index of one row per distinct row of the 2-D ``x``, and for each
    row the position of its distinct row in ``first``."""
    x = np.ascontiguousarray(np.packbits(x, axis=1) if x.dtype == bool else x)
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if x.shape[1] == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(x.shape[0], dtype=np.int64)
    v = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inverse = np.unique(v, return_index=True, return_inverse=True)
    return first.astype(np.int64), inverse.ravel().astype(np.int64)


def population_terms(graph: NetworkGraph, pop: Population) -> dict[str, Term] | None:
    """The :class:`Term` of each source of ``pop`` that reaches it (spatial axes of size 1
    appended to a ``Linear`` population), or ``None`` when a layer between is not separable."""
    try:
        terms = _Builder(graph, pop).terms(pop.pre)
    except NotSeparable:
        return None
    terms = {s: t for s, t in terms.items() if len(t.taps)}
    for t in terms.values():
        if t.shape[0] != pop.shape[0] or math.prod(t.shape) != pop.neurons or \
                t.shape[:len(pop.shape)] != pop.shape:
            return None
    return terms


class _Builder:
    def __init__(self, graph: NetworkGraph, pop: Population):
        self.graph, self.net, self.pop, self.memo = graph, graph.net, pop, {}

    def terms(self, node: str) -> dict[str, Term]:
        if node not in self.memo:
            self.memo[node] = self._terms(node)
        return self.memo[node]

    def _terms(self, node: str) -> dict[str, Term]:
        if node in self.pop.sources:
            return {node: identity(self.graph.shapes[node])}
        net, shapes = self.net, self.graph.shapes
        module, ins = net.layer(node), net.inputs_of(node)
        kind = net.kind(node)
        if kind == "weighted":
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                return self._conv(node, module, ins[0])
            if isinstance(module, nn.Linear):
                return self._linear(node, module, ins[0])
            raise NotSeparable(node)
        if kind == "temporal":  # a non-spiking event router (a spiking max pool)
            mats = routing_matrices(module, node, shapes[ins[0]], shapes[node])
            return {s: window(t, mats) for s, t in self.terms(ins[0]).items()}
        if isinstance(module, PASS):
            return self.terms(ins[0])
        if isinstance(module, WINDOWS):
            src = shapes[ins[0]]
            mats = [ax.matrix() > 0 for ax in module_axes(module, src[1:], node)]
            return {s: window(t, mats) for s, t in self.terms(ins[0]).items()}
        if isinstance(module, Scale):
            c = shapes[node][0]
            scale = module.scale.detach().cpu()
            keep = np.broadcast_to((scale != 0).numpy().reshape(-1), (c,)).copy()
            mats = [np.eye(n, dtype=bool) for n in shapes[node][1:]]
            return {s: window(t, mats, keep) for s, t in self.terms(ins[0]).items()}
        if isinstance(module, Narrow):
            return self._narrow(node, module, ins[0])
        if isinstance(module, nn.ChannelShuffle):
            # out channel j copies in channel perm[j]: read off the module itself
            c = shapes[node][0]
            probe = torch.arange(c, dtype=torch.float64).view(1, c, *([1] * (len(shapes[node]) - 1)))
            perm = module(probe.expand(1, *shapes[ins[0]])).reshape(c, -1)[:, 0].round().long().numpy()
            return {s: _rows(t, perm) for s, t in self.terms(ins[0]).items()}
        if isinstance(module, Add):
            return self._join([(i, 0) for i in ins], shapes[node][0])
        if isinstance(module, Concat) and module.dim in (1, -len(shapes[node])):
            offsets = np.cumsum([0] + [shapes[i][0] for i in ins[:-1]])
            return self._join(list(zip(ins, offsets.tolist())), shapes[node][0])
        raise NotSeparable(node)

    def _narrow(self, node: str, module: Narrow, x: str) -> dict[str, Term]:
        src = self.graph.shapes[x]
        dim = module.dim if module.dim > 0 else module.dim + len(src) + 1
        keep = np.arange(module.start, module.start + module.length)
        if dim == 1:
            return {s: _rows(t, keep) for s, t in self.terms(x).items()}
        mats = [np.eye(n, dtype=bool) for n in src[1:]]
        mats[dim - 2] = mats[dim - 2][keep]
        return {s: window(t, mats) for s, t in self.terms(x).items()}

    def _join(self, parts: list[tuple[str, int]], channels: int) -> dict[str, Term]:
        by_source: dict[str, list[Term]] = {}
        for node, offset in parts:
            for s, t in self.terms(node).items():
                ch = t.channels
                if offset or ch.shape[0] != channels:
                    padded = np.zeros((channels, *ch.shape[1:]), dtype=bool)
                    padded[offset:offset + ch.shape[0]] = ch
                    t = Term(t.axes, t.taps, padded)
                by_source.setdefault(s, []).append(t)
        return {s: union(ts) for s, ts in by_source.items()}

    def _conv(self, node: str, module: nn.Module, x: str) -> dict[str, Term]:
        src = self.graph.shapes[x]
        mask = (module.weight.detach() != 0).cpu().numpy()
        o, i_g, *kernel = mask.shape
        g = module.groups
        k = np.zeros((o, i_g * g, math.prod(kernel)), dtype=bool)
        for gi in range(g):
            rows = slice(gi * (o // g), (gi + 1) * (o // g))
            k[rows, gi * i_g:(gi + 1) * i_g] = mask[rows].reshape(o // g, i_g, -1)
        axes = [ax.tap_matrices(module.padding_mode) for ax in module_axes(module, src[1:], node)]
        taps = np.indices(kernel).reshape(len(kernel), -1).T.astype(np.int64)
        return {s: weighted(k, axes, taps, t) for s, t in self.terms(x).items()}

    def _linear(self, node: str, module: nn.Linear, x: str) -> dict[str, Term]:
        mask = (module.weight.detach() != 0).cpu().numpy()
        flat = x
        while flat not in self.pop.sources and isinstance(self.net.layer(flat), PASS):
            flat = self.net.inputs_of(flat)[0]
        if flat not in self.pop.sources and isinstance(self.net.layer(flat), nn.Flatten):
            f = self.net.layer(flat)
            if (f.start_dim, f.end_dim) != (1, -1):
                raise NotSeparable(flat)
            x = self.net.inputs_of(flat)[0]
        elif len(self.graph.shapes[x]) != 1:  # a Linear on the last axis of a larger tensor
            raise NotSeparable(node)
        src = self.graph.shapes[x]
        if math.prod(src) != mask.shape[1]:
            raise NotSeparable(node)
        spatial = src[1:]
        # A kernel covering the whole input: tap p reads input position p into the single output.
        axes = [np.eye(n, dtype=bool)[:, None, :] for n in spatial]
        taps = np.indices(spatial).reshape(len(spatial), -1).T.astype(np.int64) if spatial else \
            np.zeros((1, 0), dtype=np.int64)
        k = mask.reshape(mask.shape[0], src[0], max(1, math.prod(spatial)))
        return {s: weighted(k, axes, taps, t) for s, t in self.terms(x).items()}


def routing_matrices(module: nn.Module, name: str, in_shape: tuple[int, ...],
                     out_shape: tuple[int, ...]) -> list[np.ndarray]:
    """Per-axis 0/1 matrices of a temporal routing module (a spiking max pool) that routes each
    channel separably: each event to its own position, or through the pooling windows of its
    ``kernel_size``/``output_size`` attributes (:func:`snnedge.geometry.module_axes`). The
    module's own structural model decides: a candidate is taken only when it gives exactly the
    module's output on two random non-negative integer inputs (a different linear map agrees
    on both with probability below 2**-32); otherwise :class:`NotSeparable`."""
    candidates = []
    if tuple(out_shape) == tuple(in_shape):
        candidates.append(None)
    try:
        axes = module_axes(module, in_shape[1:], name)
        if (in_shape[0], *(a.size_out for a in axes)) == tuple(out_shape):
            candidates.append(axes)
    except (TypeError, ValueError):
        pass
    if not candidates:
        raise NotSeparable(name)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2**16, (2, *in_shape), generator=g).to(torch.float64)
    try:
        y = structural(module, [x], name)
    except ValueError:
        raise NotSeparable(name) from None
    for axes in candidates:
        want = x if axes is None else window_sum(x, axes)
        if want.shape == y.shape and torch.equal(want, y):
            return [np.eye(n, dtype=bool) for n in in_shape[1:]] if axes is None else \
                [a.matrix() > 0 for a in axes]
    raise NotSeparable(name)


def _rows(term: Term, rows: np.ndarray) -> Term:
    """``term`` followed by a channel selection: output channel ``k`` is channel ``rows[k]``."""
    return simplify(Term(term.axes, term.taps, term.channels[rows]))


def _bool_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a.astype(np.float32), b.astype(np.float32)) > 0


def _diagonal(channels: np.ndarray) -> np.ndarray | None:
    """``channels[c, c, :]`` when the pattern joins each channel only to itself, else None."""
    m, s, _ = channels.shape
    if m != s:
        return None
    joined = channels.any(2)
    if joined.sum() != np.trace(joined):
        return None
    return channels[np.arange(m), np.arange(m)]
