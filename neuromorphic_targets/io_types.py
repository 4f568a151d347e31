"""How :func:`snnedge.save_network` writes what ``neuromorphic_targets`` adds to a network,
and :func:`snnedge.load_network` reads it back.

:func:`register` registers :class:`~neuromorphic_targets.hardware_info.HardwareInfo` (the
``hardware_`` attribute of a :func:`~neuromorphic_targets.to_hardware` network) as an
attribute type with :mod:`snnedge.io`'s registry. It is named in ``pyproject.toml``::

    [project.entry-points."snnedge.layer_types"]
    neuromorphic_targets = "neuromorphic_targets.io_types:register"

so a saved hardware network loads with its info without the user importing this package.
The network's neurons (:class:`snnedge.ChipNeuron`) are a core type, registered by the core;
:class:`~neuromorphic_targets.hardware_cuba.CubaChipNeuron` (a ChipNeuron behind Loihi's
synaptic current) and :class:`~neuromorphic_targets.hardware_soft.TwoCompartmentChipNeuron`
(Loihi's two-compartment reset by subtraction) are registered here.
"""
from __future__ import annotations

import dataclasses

import torch

from snnedge import io as snn_io
from snnedge.chip_neuron import ChipNeuron

from .hardware_cuba import CubaChipNeuron
from .hardware_info import HardwareInfo
from .hardware_soft import TwoCompartmentChipNeuron

__all__ = ["register"]


def _info_from_data(data: dict) -> HardwareInfo:
    # fields that a later version may add are dropped, so its files still load here
    known = {f.name for f in dataclasses.fields(HardwareInfo)}
    return HardwareInfo(**{k: v for k, v in data.items() if k in known})


# the membrane's buffers: their shapes are saved, the state dict brings their values
_MEMBRANE_BUFFERS = ("threshold", "bias", "v_init", "decay")
_MEMBRANE_ATTRS = ("reset", "decay_shift", "v_min", "v_max", "current_bits", "strict")


def _membrane_args(mem: ChipNeuron) -> dict:
    return {**{f"{k}_shape": None if getattr(mem, k) is None else list(getattr(mem, k).shape)
               for k in _MEMBRANE_BUFFERS},
            **{k: getattr(mem, k) for k in _MEMBRANE_ATTRS}}


def _membrane(a: dict) -> ChipNeuron:
    shaped = {k: None if a[f"{k}_shape"] is None else torch.ones(a[f"{k}_shape"])
              for k in _MEMBRANE_BUFFERS}
    return ChipNeuron(shaped["threshold"], shaped["bias"], shaped["v_init"], a["reset"],
                      decay=shaped["decay"], decay_shift=a["decay_shift"], v_min=a["v_min"],
                      v_max=a["v_max"], current_bits=a["current_bits"], strict=a["strict"],
                      integer=True)


def _cuba_args(m: CubaChipNeuron) -> dict:
    return {**_membrane_args(m.membrane), "current_decay": m.current_decay,
            "current_shift": m.current_shift, "synaptic_bits": m.current_bits}


def _build_cuba(a: dict) -> CubaChipNeuron:
    return CubaChipNeuron(_membrane(a), a["current_decay"], a["current_shift"], a["synaptic_bits"])


def _two_compartment_args(m: TwoCompartmentChipNeuron) -> dict:
    return {**_membrane_args(m.membrane), "reset_weight_shape": list(m.reset_weight.shape)}


def _build_two_compartment(a: dict) -> TwoCompartmentChipNeuron:
    return TwoCompartmentChipNeuron(_membrane(a), torch.ones(a["reset_weight_shape"]))


def register() -> None:
    """Register neuromorphic_targets' attribute and layer types with :mod:`snnedge.io`
    (idempotent)."""
    snn_io.register_attribute_type("neuromorphic_targets.HardwareInfo", HardwareInfo,
                                   dataclasses.asdict, _info_from_data)
    snn_io.register_layer_type("neuromorphic_targets.CubaChipNeuron", CubaChipNeuron,
                               _cuba_args, _build_cuba)
    snn_io.register_layer_type("neuromorphic_targets.TwoCompartmentChipNeuron",
                               TwoCompartmentChipNeuron, _two_compartment_args,
                               _build_two_compartment)
