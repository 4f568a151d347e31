"""How :func:`snnedge.save_network` writes what ``neuromorphic_targets`` adds to a network,
and :func:`snnedge.load_network` reads it back.

:func:`register` registers :class:`~neuromorphic_targets.hardware_info.HardwareInfo` (the
``hardware_`` attribute of a :func:`~neuromorphic_targets.to_hardware` network) as an
attribute type with :mod:`snnedge.io`'s registry. It is named in ``pyproject.toml``::

    [project.entry-points."snnedge.layer_types"]
    neuromorphic_targets = "neuromorphic_targets.io_types:register"

so a saved hardware network loads with its info without the user importing this package.
The network's neurons (:class:`snnedge.ChipNeuron`) are a core type, registered by the core.
"""
from __future__ import annotations

import dataclasses

from snnedge import io as snn_io

from .hardware_info import HardwareInfo

__all__ = ["register"]


def _info_from_data(data: dict) -> HardwareInfo:
    # fields that a later version may add are dropped, so its files still load here
    known = {f.name for f in dataclasses.fields(HardwareInfo)}
    return HardwareInfo(**{k: v for k, v in data.items() if k in known})


def register() -> None:
    """Register neuromorphic_targets' attribute types with :mod:`snnedge.io` (idempotent)."""
    snn_io.register_attribute_type("neuromorphic_targets.HardwareInfo", HardwareInfo,
                                   dataclasses.asdict, _info_from_data)
