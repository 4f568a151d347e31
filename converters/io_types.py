"""How :func:`snnedge.save_network` writes what ``converters`` adds to a network, and
:func:`snnedge.load_network` reads it back.

:func:`register` registers the layer types :class:`~converters.SpikingMaxPool2d`,
:class:`~converters.SpikingAdaptiveMaxPool2d` and :class:`~converters.CalibratedIF`, and :class:`~converters.ConversionInfo` (``conversion_``)
as an attribute type, with :mod:`snnedge.io`'s registry. It is named in ``pyproject.toml``::

    [project.entry-points."snnedge.layer_types"]
    converters = "converters.io_types:register"

so ``snnedge.load_network`` finds these types without the user importing ``converters``;
importing ``converters`` also calls it. A new layer type that ``converters`` builds
registers here. Copy this file to make another package's types saveable.
"""
from __future__ import annotations

import dataclasses

import torch

from snnedge import io as snn_io

from .maxpool import SpikingAdaptiveMaxPool2d, SpikingMaxPool2d
from .membrane import CalibratedIF
from .pipeline import ConversionInfo

__all__ = ["register"]


def _maxpool_args(m: SpikingMaxPool2d) -> dict:
    return {n: getattr(m, n) for n in ("kernel_size", "stride", "padding", "dilation",
                                       "ceil_mode", "mode", "keep_shape")}


def _calibrated_args(m: CalibratedIF) -> dict:
    return {"threshold_shape": list(m.threshold.shape), "reset": m.reset, "v_init": m.v_init,
            "shape": list(m.v_init_map.shape)}


def _build_calibrated(a: dict) -> CalibratedIF:
    # a placeholder threshold of the saved shape; the state dict brings the values
    return CalibratedIF(threshold=torch.ones(a["threshold_shape"]), reset=a["reset"],
                        v_init=a["v_init"], shape=a["shape"])


def _info_data(info: ConversionInfo) -> dict:
    return dataclasses.asdict(info)


def _info_from_data(data: dict) -> ConversionInfo:
    # fields that a later converters may add are dropped, so its files still load here
    known = {f.name for f in dataclasses.fields(ConversionInfo)}
    return ConversionInfo(**{k: v for k, v in data.items() if k in known})


def register() -> None:
    """Register converters' layer and attribute types with :mod:`snnedge.io` (idempotent)."""
    snn_io.register_layer_type("converters.SpikingMaxPool2d", SpikingMaxPool2d, _maxpool_args)
    snn_io.register_layer_type("converters.SpikingAdaptiveMaxPool2d", SpikingAdaptiveMaxPool2d,
                               lambda m: {"output_size": m.output_size, "mode": m.mode})
    snn_io.register_layer_type("converters.CalibratedIF", CalibratedIF, _calibrated_args,
                               _build_calibrated)
    snn_io.register_attribute_type("converters.ConversionInfo", ConversionInfo, _info_data,
                                   _info_from_data)
