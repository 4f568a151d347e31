"""Checkpoints of training: a network's state dict with an optimizer's and a :class:`History`.

Only tensors, numbers, strings, lists and dicts are written, so loading uses
``torch.load(weights_only=True)``: no pickled code runs.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..atomic import atomic_path
from ..distributed import is_main_process
from ..network import SpikingNetwork, module_device
from .history import History

CHECKPOINT_FORMAT = "snnedge-checkpoint"


def save_checkpoint(net: SpikingNetwork, path: str | Path, *, optimizer=None,
                    history: History | None = None, every_rank: bool = False) -> Path:
    """Write ``net``'s state dict (and optionally an optimizer's and a history) to ``path``.

    Only tensors, numbers, strings, lists and dicts are written, so :func:`load_checkpoint`
    reads it back with ``torch.load(weights_only=True)`` (no pickled code runs). Under
    ``torch.distributed`` (after ``fit(..., distributed=True)``, whose ranks hold the same
    weights) only rank 0 writes, unless ``every_rank``; call
    ``torch.distributed.barrier()`` before other ranks read the file.
    """
    path = Path(path)
    if not (every_rank or is_main_process()):
        return path
    payload = {"format": CHECKPOINT_FORMAT, "version": 1, "state_dict": net.state_dict()}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if history is not None:
        payload["history"] = history.to_dict()
    with atomic_path(path) as tmp:  # a reader never sees half a file
        torch.save(payload, tmp)
    return path


def load_checkpoint(net: SpikingNetwork, path: str | Path, *, optimizer=None, strict: bool = True,
                    map_location=None) -> History | None:
    """Load a checkpoint written by :func:`save_checkpoint` into ``net`` (and ``optimizer``).

    Returns the saved :class:`History` or ``None``. Loading uses ``weights_only=True``.
    """
    payload = torch.load(Path(path), map_location=map_location or module_device(net), weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a snnedge checkpoint (no 'format': {CHECKPOINT_FORMAT!r}); "
                         f"write it with snnedge.training.save_checkpoint, or load a bare state dict "
                         f"with net.load_state_dict(torch.load(path, weights_only=True)).")
    net.load_state_dict(payload["state_dict"], strict=strict)
    if optimizer is not None and "optimizer" in payload:
        optimizer.load_state_dict(payload["optimizer"])
    return History(**payload["history"]) if "history" in payload else None
