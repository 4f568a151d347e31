"""neuromorphic_targets: what a spiking network would cost on neuromorphic hardware.

Hardware profiles with cited figures (TrueNorth, DYNAP-SE, DYNAP-CNN, Loihi), mapping of a
:class:`snnedge.SpikingNetwork` onto their cores with every limit checked, hardware-aware
weight quantization, the chips' own arithmetic (``to_hardware``), and energy per inference
from simulated activity::

    from neuromorphic_targets import get_profile, map_network, estimate_energy, quantize_for
    m = map_network(snn, "truenorth", input_shape=(1, 28, 28))
    m.feasible, m.problems, m.cores, m.chips, m.per_layer
    e = estimate_energy(snnedge.simulate(snn, x, timesteps=32), m)
    e.total_j, e.static_j, e.dynamic_j, e.breakdown
    estimate_energy(res, m, accounting="throughput")   # chips kept busy: share of cores

This package imports :mod:`snnedge`, never the reverse.
"""
from .baselines import (BASELINE_FAMILIES, BASELINES, BaselineEstimate, BaselineProfile,
                        EyerissProfile, estimate_baseline, get_baseline, register_baseline)
from .compare import Comparison, ComparisonRow, RateEquivalentANN, accounting_table, compare
from .energy import EnergyEstimate, chip_power, estimate_energy
from .figures import UNITS, Figure
from .formats import number_format
from .graph import MappingError
from .hardware import to_hardware
from .hardware_cuba import CubaChipNeuron
from .hardware_soft import TwoCompartmentChipNeuron
from .hardware_info import HardwareError, HardwareInfo
from .mapping import map_network
from .mapping_types import LayerRow, Mapping
from .measured import (MeasuredDevice, MeasuredEstimate, estimate_measured, measured_device,
                       time_inference)
from .power import fit_static_plus_marginal
from .pricing import EnergyTerm
from .profile_io import load_profile, profile_from_dict, profile_to_dict, save_profile
from .profiles import (ACCOUNTINGS, FAMILIES, PROFILES, DynapCNNProfile, DynapSEProfile, LoihiProfile,
                       NeuromorphicProfile, Profile, TrueNorthProfile, get_profile, register_profile)
from .quantize import quantize_for
from . import formats, io_types  # noqa: E402  (registration below)

__all__ = [
    "BASELINE_FAMILIES", "BASELINES", "BaselineEstimate", "BaselineProfile", "EyerissProfile",
    "estimate_baseline", "get_baseline", "register_baseline", "Comparison", "ComparisonRow",
    "RateEquivalentANN", "compare",
    "EnergyEstimate", "EnergyTerm", "estimate_energy", "UNITS", "Figure", "MappingError",
    "LayerRow", "Mapping", "map_network", "chip_power", "fit_static_plus_marginal",
    "load_profile", "profile_from_dict", "profile_to_dict", "save_profile", "FAMILIES",
    "PROFILES", "DynapCNNProfile", "DynapSEProfile", "LoihiProfile", "NeuromorphicProfile", "Profile",
    "TrueNorthProfile", "get_profile", "register_profile", "quantize_for", "to_hardware",
    "HardwareInfo", "HardwareError", "number_format", "CubaChipNeuron",
    "TwoCompartmentChipNeuron",
    "ACCOUNTINGS", "accounting_table", "MeasuredDevice", "MeasuredEstimate", "estimate_measured",
    "measured_device", "time_inference",
]

# the chips' number formats reach snnedge.fit(..., hardware=...) and a saved hardware network's
# info loads back (both also through the entry points in pyproject.toml, without this import)
formats.register()
io_types.register()
