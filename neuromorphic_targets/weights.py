"""Weight representability: counting distinct weights, and quantizing to a few levels.

The quantizer is 1-D k-means (Lloyd's algorithm, initialised at quantiles, so deterministic)
on the non-zero weights of each group; zeros stay zeros, because a zero weight is an absent
synapse (a crossbar bit, a CAM entry) rather than a level.
"""
from __future__ import annotations

import torch

from snnedge.quantization import lloyd_rows

#: Elements per batched k-means step.
BUDGET = 8_000_000


def weight_rows(weight: torch.Tensor) -> torch.Tensor:
    """``(out, fan-in)`` view of a Linear or Conv weight: one row per output neuron/channel."""
    return weight.detach().reshape(weight.shape[0], -1)


def distinct_nonzero(rows: torch.Tensor) -> torch.Tensor:
    """Distinct non-zero values in each row."""
    s = rows.sort(dim=1).values
    nz = s != 0
    new = torch.ones_like(nz)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    return (nz & new).sum(1)


def sign_split_counts(values: torch.Tensor) -> tuple[int, int]:
    """Distinct positive and distinct negative values."""
    return int(values[values > 0].unique().numel()), int(values[values < 0].unique().numel())


def off_grid(values: torch.Tensor, levels: int, rel_tol: float = 1e-4) -> bool:
    """Whether ``values`` are not integer multiples of ``max|values| / levels``."""
    top = values.abs().max()
    if top == 0:
        return False
    q = values / (top / levels)
    return bool(((q - q.round()).abs() > rel_tol * levels).any())


def kmeans_rows(rows: torch.Tensor, mask: torch.Tensor, k: int, iters: int = 60) -> torch.Tensor:
    """Each masked entry of each row replaced by the nearest of ``k`` k-means centres of the
    row's masked entries (``mask`` must exclude zeros). Rows with at most ``k`` distinct
    masked values are left as they are."""
    out = rows.clone()
    per_chunk = max(1, BUDGET // max(1, rows.shape[1] * k))
    for start in range(0, rows.shape[0], per_chunk):
        r, m = rows[start:start + per_chunk], mask[start:start + per_chunk]
        todo = distinct_nonzero(torch.where(m, r, torch.zeros_like(r))) > k
        if not todo.any():
            continue
        out[start:start + per_chunk][todo] = _lloyd(r[todo], m[todo], k, iters)
    return out


def _lloyd(v: torch.Tensor, m: torch.Tensor, k: int, iters: int) -> torch.Tensor:
    return lloyd_rows(v.double(), m, k, iters).to(v.dtype)


def snap_levels_to_bits(rows: torch.Tensor, bits: int) -> torch.Tensor:
    """Round each row's values to multiples of ``max|row| / (2^(bits-1) - 1)`` (signed
    integers of ``bits`` bits times one scale per row)."""
    levels = 2 ** (bits - 1) - 1
    top = rows.abs().amax(1, keepdim=True)
    scale = torch.where(top > 0, top / levels, torch.ones_like(top))
    return (rows / scale).round() * scale
