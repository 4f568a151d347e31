"""Axons per core and destination cores per neuron of a tiling, from closed-form receptive fields.

With a population's map written as taps (:mod:`.receptive`), a box tiling has along each axis
``a`` blocks ``b`` of outputs. For a block and a source position ``i`` let ``Q(b, i)`` be the
set of taps through which some output of the block reads ``i``. Then, exactly,

    axons(b_c, b_1..b_r) = sum_v nU[b_c, v] sum_{q_1..q_r} prod_a H_a[b_a, q_a] Z[v, q_1..q_r]
    dest(c, i_1..i_r)    = sum_v mV[c, v]   sum_{q_1..q_r} prod_a G_a[i_a, q_a] Z[v, q_1..q_r]

where ``H_a[b, q]`` counts the positions ``i`` with ``Q(b, i) = q`` (the block's receptive
field along the axis, sorted by the taps that reach each position), ``G_a[i, q]`` counts the
blocks ``b`` with ``Q(b, i) = q``, ``v`` runs over the distinct sets of taps that a block of
output channels uses on one source channel (``nU``: how many source channels use ``v`` in a
channel block; ``mV``: how many channel blocks a source channel reaches with ``v``), and
``Z[v, q..] = 1`` when some tap of ``v`` lies in every ``q_a``. Interior blocks and interior
positions share their rows of ``H`` and ``G``, so every sum runs over a handful of classes; the
border classes are computed like any other, so the counts are exact everywhere.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .receptive import Term, unique_rows
from .tiles import TileReport, Tiling, representative_neuron, representative_tile


class ClosedFormTiles:
    """Exact axon and destination counts of any tiling of one population.

    ``terms``: the :class:`~.receptive.Term` of each source that reaches the population;
    ``source_shapes``: every source's shape (sources without a term reach no neuron)."""

    def __init__(self, shape: tuple[int, ...], terms: dict[str, Term],
                 source_shapes: dict[str, tuple[int, ...]]):
        self.shape, self.terms, self.source_shapes = tuple(shape), terms, source_shapes
        self._axis: dict = {}
        self._channel: dict = {}
        self._columns: dict = {}
        self._memo: dict = {}

    # -- what the tiler asks ---------------------------------------------------------------
    def max_axons(self, tiling: Tiling) -> int:
        values, _ = self._axons(tiling)
        return int(values.max()) if values.size else 0

    def max_destinations(self, tiling: Tiling) -> int:
        return max((int(self._destinations(s, tiling)[0].max()) for s in self.terms), default=0)

    def representative_axons(self, tiling: Tiling) -> int:
        values, inverses = self._axons(tiling)
        if not values.size:
            return 0
        index = np.unravel_index(representative_tile(tiling), tiling.grid)
        return int(round(values[tuple(inv[i] for inv, i in zip(inverses, index))]))

    def representative_destinations(self, tiling: Tiling) -> int:
        out = 0
        for s in self.terms:
            d, inverses = self._destinations(s, tiling)
            index = representative_neuron(self.source_shapes[s])
            out = max(out, int(round(d[tuple(inv[i] for inv, i in zip(inverses, index))])))
        return out

    def report(self, tiling: Tiling) -> TileReport:
        values, inverses = self._axons(tiling)
        axons = values[np.ix_(*inverses)].reshape(-1) if values.size else np.zeros(tiling.n_tiles)
        dest = {s: torch.zeros(shape, dtype=torch.long) for s, shape in self.source_shapes.items()}
        for s in self.terms:
            d, index = self._destinations(s, tiling)
            dest[s] = torch.from_numpy(np.rint(d[np.ix_(*index)]).astype(np.int64))
        return TileReport(tiling, torch.from_numpy(np.rint(axons).astype(np.int64)), dest)

    # -- counts on classes -----------------------------------------------------------------
    def _tile(self, term: Term, tiling: Tiling) -> tuple[int, ...]:
        return tuple(tiling.tile) + (1,) * (len(term.shape) - len(tiling.tile))

    def _axons(self, tiling: Tiling) -> tuple[np.ndarray, list[np.ndarray]]:
        """Axon counts on joint classes of blocks (summed over sources), and each grid
        dimension's block-to-class map."""
        if ("axons", tiling) not in self._memo:
            self._memo["axons", tiling] = self._count_axons(tiling)
        return self._memo["axons", tiling]

    def _count_axons(self, tiling: Tiling) -> tuple[np.ndarray, list[np.ndarray]]:
        dims = len(self.shape)
        per_source = []
        for s, term in self.terms.items():
            tile = self._tile(term, tiling)
            chan = self._channel_counts(s, tile[0])
            axes = [self._axis_counts(s, a, t) for a, t in enumerate(tile[1:])]
            z = self._z(term, chan, axes)
            a = _contract(chan["nU"], z, [ax["H"] for ax in axes])
            inv = [chan["nU_inv"]] + [ax["H_inv"] for ax in axes]
            per_source.append((a.reshape(a.shape[:dims]), inv[:dims]))
        if not per_source:
            return np.zeros(0), []
        if len(per_source) == 1:
            return per_source[0]
        joint = [unique_rows(np.stack([inv[d] for _, inv in per_source], axis=1)) for d in range(dims)]
        total = sum(a[np.ix_(*[inv[d][joint[d][0]] for d in range(dims)])] for a, inv in per_source)
        return total, [j[1] for j in joint]

    def _destinations(self, s: str, tiling: Tiling) -> tuple[np.ndarray, list[np.ndarray]]:
        """Destination counts of source ``s`` on classes of its neurons, and each dimension's
        neuron-to-class map."""
        if (s, tiling) not in self._memo:
            self._memo[s, tiling] = self._count_destinations(s, tiling)
        return self._memo[s, tiling]

    def _count_destinations(self, s: str, tiling: Tiling) -> tuple[np.ndarray, list[np.ndarray]]:
        term = self.terms[s]
        tile = self._tile(term, tiling)
        chan = self._channel_counts(s, tile[0])
        axes = [self._axis_counts(s, a, t) for a, t in enumerate(tile[1:])]
        d = _contract(chan["mV"], self._z(term, chan, axes), [ax["G"] for ax in axes])
        cols = self._column_classes(s)
        return d, [chan["mV_inv"][cols["inverse"]]] + [ax["G_inv"] for ax in axes]

    def _z(self, term: Term, chan: dict, axes: list[dict]) -> np.ndarray:
        """``Z[v, q_1..q_r]``: some tap of pattern ``v`` lies in each axis's tap set ``q_a``."""
        x = chan["V"].astype(np.float32)  # (n_v, n_tau), then (n_v, n_q1, .., n_tau)
        factors = [ax["Q"][:, term.taps[:, a]].astype(np.float32) for a, ax in enumerate(axes)]
        if not factors:
            return (x.sum(1) > 0).astype(np.float64)
        for f in factors[:-1]:
            x = x[..., None, :] * f
        return (np.matmul(x, factors[-1].T) > 0).astype(np.float64)

    def _axis_counts(self, s: str, a: int, t: int) -> dict:
        key = (s, a, t)
        if key not in self._axis:
            mats = self.terms[s].axes[a]
            n, p, size = mats.shape
            g = math.ceil(p / t)
            padded = np.zeros((n, g * t, size), dtype=bool)
            padded[:, :p] = mats
            blocks = padded.reshape(n, g, t, size).any(2).transpose(1, 2, 0).reshape(g * size, n)
            first, inverse = unique_rows(blocks)
            ids = inverse.reshape(g, size)
            n_q = len(first)
            h = np.bincount((np.arange(g)[:, None] * n_q + ids).ravel(), minlength=g * n_q).reshape(g, n_q)
            gg = np.bincount((np.arange(size)[None, :] * n_q + ids).ravel(),
                             minlength=size * n_q).reshape(size, n_q)
            h_first, h_inv = unique_rows(h)
            g_first, g_inv = unique_rows(gg)
            self._axis[key] = {"Q": blocks[first], "H": h[h_first].astype(np.float64), "H_inv": h_inv,
                               "G": gg[g_first].astype(np.float64), "G_inv": g_inv}
        return self._axis[key]

    def _column_classes(self, s: str) -> dict:
        """Source channels with equal columns of the channel pattern are alike; the pattern is
        kept as its non-empty (output channel, column class) entries, taps packed in bits."""
        if s not in self._columns:
            ch = self.terms[s].channels
            first, inverse = unique_rows(ch.transpose(1, 0, 2).reshape(ch.shape[1], -1))
            k = ch[:, first, :]
            rows, cols = np.nonzero(k.any(2))  # sorted by output channel, then column class
            self._columns[s] = {"inverse": inverse, "sizes": np.bincount(inverse, minlength=len(first)),
                                "rows": rows, "cols": cols, "bits": np.packbits(k[rows, cols], axis=1),
                                "n_tau": k.shape[2]}
        return self._columns[s]

    def _channel_counts(self, s: str, t: int) -> dict:
        """For blocks of ``t`` output channels: the distinct tap sets ``V`` a block uses on a
        source channel, ``nU[block class, v]`` (source channels using ``v``) and ``mV[column
        class, v]`` (blocks reached with ``v``); empty sets are left out (they reach nothing)."""
        key = (s, t)
        if key not in self._channel:
            cols = self._column_classes(s)
            n_cc = len(cols["sizes"])
            block = cols["rows"] // t
            pair = block * n_cc + cols["cols"]
            order = np.argsort(pair, kind="stable")
            pair = pair[order]
            starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
            used = np.bitwise_or.reduceat(cols["bits"][order], starts, axis=0)
            pair = pair[starts]
            first, pattern = unique_rows(used)
            n_v, g = len(first), math.ceil(self.terms[s].channels.shape[0] / t)
            b, cc = pair // n_cc, pair % n_cc
            n_u = np.bincount(b * n_v + pattern, weights=cols["sizes"][cc],
                              minlength=g * n_v).reshape(g, n_v).astype(np.int64)
            m_v = np.bincount(cc * n_v + pattern, minlength=n_cc * n_v).reshape(n_cc, n_v)
            u_first, u_inv = unique_rows(n_u)
            v_first, v_inv = unique_rows(m_v)
            v = np.unpackbits(used[first], axis=1, count=cols["n_tau"]).astype(bool)
            self._channel[key] = {"V": v, "nU": n_u[u_first].astype(np.float64), "nU_inv": u_inv,
                                  "mV": m_v[v_first].astype(np.float64), "mV_inv": v_inv}
        return self._channel[key]


def _contract(w: np.ndarray, z: np.ndarray, hs: list[np.ndarray]) -> np.ndarray:
    """``sum_v w[k, v] sum_q prod_a hs[a][k_a, q_a] z[v, q..]`` as ``(k, k_1..k_r)``."""
    x = z
    for h in hs:
        x = np.tensordot(x, h, axes=([1], [1]))
    return np.tensordot(w, x, axes=([1], [0]))
