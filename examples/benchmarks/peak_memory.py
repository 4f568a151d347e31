"""Peak tensor memory of a call, and of one training step of `snnedge.fit`.

:func:`measure_peak_memory` watches torch's operators (a ``TorchDispatchMode``), not an
allocator, so it works the same on every device and for any library built on torch (the
training benchmark measures snnTorch with it too). :func:`step_peak_memory` is one step of
:func:`snnedge.fit` (forward, backward, Adam) on a copy of a network, with fit's options.

Used by examples/benchmarks/training.py, examples/02_surrogate_training.ipynb and
tests/test_training.py (memory stays bounded in ``T`` with ``bptt="checkpoint"`` and
``"truncated"``).
"""
from __future__ import annotations

import copy
import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from snnedge.training import fit


class PeakMemory(TorchDispatchMode):
    """Live bytes of tensor storages created inside the mode, and their peak."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                self._track(t.untyped_storage())
        return out

    def _track(self, storage) -> None:
        key = id(storage)
        if key in self._seen:
            return
        nbytes = storage.nbytes()
        self._seen.add(key)
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, nbytes)

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes


def measure_peak_memory(fn: Callable, *args, **kwargs):
    """Run ``fn(*args, **kwargs)``; returns ``(result, peak_bytes)``.

    ``peak_bytes`` is the largest total size of tensor storages that torch allocated during the
    call and that were alive at once (activations kept for backward, gradients, optimizer
    state, temporaries); storages that existed before the call are not counted. Works on any
    device (it watches torch's operators, not an allocator).
    """
    mode = PeakMemory()
    with mode:
        result = fn(*args, **kwargs)
    return result, mode.peak


def step_peak_memory(net, x: torch.Tensor, y: torch.Tensor, timesteps: int,
                     encoding: str = "direct", *, bptt: str = "full", block_steps: int | None = None,
                     loss="ce", lr: float = 1e-3, fold_pooling: bool = True,
                     channels_last: bool = True) -> int:
    """Peak bytes of one training step (forward, backward, Adam) on a copy of ``net``: one
    epoch of :func:`snnedge.fit` over the single batch ``(x, y)`` with these options (see
    :func:`measure_peak_memory`)."""
    work = copy.deepcopy(net)
    _, peak = measure_peak_memory(fit, work, (x, y), epochs=1, timesteps=timesteps,
                                  encoding=encoding, lr=lr, batch_size=x.shape[0], seed=0,
                                  loss=loss, progress=False, bptt=bptt, block_steps=block_steps,
                                  shuffle=False, fold_pooling=fold_pooling,
                                  channels_last=channels_last)
    return peak
