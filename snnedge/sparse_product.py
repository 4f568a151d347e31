"""The sparse product ``S @ dense`` of the event path without the compiled kernels: scipy's
COO kernel on CPUs (an install without a C compiler) and gathered rows with ``index_add_``
elsewhere (:func:`snnedge.events.event_linear` and :func:`~snnedge.events.event_conv2d` with
``backend="scipy"`` or ``"torch"``)."""
from __future__ import annotations

import functools

import numpy as np
import scipy.sparse
import torch

from .kernel_threads import submit

# Below this much work per thread (the product's multiply-adds; the compiled kernel's in
# snnedge.events), splitting a call over the Python pool costs more than it saves.
PARALLEL_MIN_WORK = 1_000_000
BACKENDS = ("native", "scipy", "torch")


def sparse_times_dense(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor,
                        shape: tuple[int, int], dense: torch.Tensor, backend: str | None,
                        groups: torch.Tensor | None = None) -> torch.Tensor:
    """``S @ dense`` for the sparse matrix ``S`` of ``shape`` with entries ``(rows, cols,
    vals)`` (duplicates add up). ``backend``: ``"scipy"`` (compiled COO kernel, the CPU
    default) or ``"torch"`` (gathered rows and ``index_add_``, the default elsewhere).

    ``groups``: a non-decreasing key per entry such that entries with different keys never
    share an output row (the sample index); on CPU the entries are then split at key
    boundaries over torch's intra-op threads, each writing its own rows of the output."""
    if backend is None:
        backend = "scipy" if dense.device.type == "cpu" else "torch"
    if backend == "scipy":
        out = torch.zeros(shape[0], dense.shape[1], dtype=dense.dtype)
        kernel = _coo_kernel()
        if kernel is None:
            sparse = scipy.sparse.coo_matrix((vals.numpy(), (rows.numpy(), cols.numpy())), shape=shape)
            return out.copy_(torch.from_numpy(np.asarray(sparse @ dense.numpy())))
        r, c, v, d, o = rows.numpy(), cols.numpy(), vals.numpy(), dense.numpy().ravel(), out.numpy()
        work = rows.numel() * dense.shape[1]
        threads = min(torch.get_num_threads(), work // PARALLEL_MIN_WORK)
        if groups is None or threads < 2:
            kernel(rows.numel(), dense.shape[1], r, c, v, d, o)
            return out
        # the kernel releases the GIL: one slice of entries per thread, disjoint output rows
        last = int(groups[-1])
        bounds = torch.searchsorted(groups, torch.arange(1, threads) * (last + 1) // threads).tolist()
        cuts = [0, *bounds, rows.numel()]
        jobs = [submit(kernel, b - a, dense.shape[1], r[a:b], c[a:b], v[a:b], d, o)
                for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        for job in jobs:
            job.result()
        return out
    if backend != "torch":
        raise ValueError(f"The 'backend' parameter must be one of {', '.join(map(repr, BACKENDS))}. "
                         f"Got {backend!r} instead.")
    src = dense.index_select(0, cols).mul_(vals.unsqueeze(1))
    out = torch.zeros(shape[0], dense.shape[1], dtype=dense.dtype, device=dense.device)
    return out.index_add_(0, rows, src)


@functools.cache
def _coo_kernel():
    """scipy's compiled COO-times-dense kernel (``coo_matmat_dense``, scipy >= 1.15), checked
    once on a small product; None where it is missing or behaves differently, and then the
    public ``coo_matrix @ dense`` (same kernel, plus argument checks per call) is used."""
    try:
        from scipy.sparse._sparsetools import coo_matmat_dense
        rows, cols = np.array([0, 1, 1, 0]), np.array([1, 0, 2, 1])
        vals, dense = np.array([1.0, 2.0, 3.0, 4.0]), np.arange(6.0).reshape(3, 2)
        out = np.zeros((2, 2))
        coo_matmat_dense(4, 2, rows, cols, vals, dense.ravel(), out)
        expected = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(2, 3)) @ dense
    except (ImportError, TypeError, ValueError):
        return None
    return coo_matmat_dense if np.array_equal(out, expected) else None


__all__ = ["sparse_times_dense"]
