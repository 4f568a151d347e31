"""The on-chip side of :func:`~neuromorphic_targets.compare` (``hardware_data=(x, y)``): the
data pair checked, and each target's network in the chip's own arithmetic
(:func:`~neuromorphic_targets.to_hardware`), or a note saying why a chip cannot run it."""
from __future__ import annotations

import torch

from snnedge import SpikingNetwork

from .hardware import to_hardware

__all__ = ["hardware_data_pair", "on_chip"]


def hardware_data_pair(data) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(x, y)`` of ``compare``'s ``hardware_data`` (``(None, None)`` when not given)."""
    if data is None:
        return None, None
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor)
            and (data[1] is None or isinstance(data[1], torch.Tensor))):
        raise TypeError(f"The 'hardware_data' parameter of compare must be a pair (x, y) of tensors "
                        f"(y may be None). Got {type(data).__name__}.")
    x, y = data
    if y is not None and y.reshape(-1).shape[0] != x.shape[0]:
        raise ValueError(f"The 'hardware_data' of compare has {x.shape[0]} samples but "
                         f"{y.reshape(-1).shape[0]} labels; give one label per sample.")
    return x, None if y is None else y.reshape(-1)


def on_chip(net: SpikingNetwork, prof, shape, notes: list[str]) -> SpikingNetwork | None:
    """``to_hardware(net, prof)``, or None with a note saying why the chip cannot run it."""
    try:
        hw = to_hardware(net, prof, input_shape=shape)
    except ValueError as e:  # does not map, or its format cannot hold the network
        notes.append(f"{prof.name}: no on-chip simulation ({' '.join(str(e).split())}); its rows "
                     f"count the float simulation")
        return None
    info = hw.hardware_
    if info.mismatch:
        notes.append(f"{prof.name}: on chip with analog mismatch sigma {info.mismatch:g} "
                     f"(seed {info.seed})")
    notes.extend(f"{prof.name}: {n}" for n in info.notes)
    return hw
