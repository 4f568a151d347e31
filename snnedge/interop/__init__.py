"""Interoperability: brian2 as a reference simulator and NIR export/import.

Importing this package registers the ``"brian2"`` engine of :func:`snnedge.simulate`;
brian2 and nir themselves are imported only when used (both are slow or optional).

* ``snnedge.simulate(snn, x, engine="brian2", code_target="numpy")``
  (:mod:`snnedge.interop.brian2_engine`)
* :func:`to_nir`, :func:`from_nir`, :func:`initial_membranes` (:mod:`snnedge.interop.nir_io`;
  needs the ``peers`` extra)
"""
from .brian2_engine import CODE_TARGETS, simulate_brian2
from .nir_io import PresetIF, PresetLIF, from_nir, initial_membranes, to_nir

__all__ = ["simulate_brian2", "CODE_TARGETS", "to_nir", "from_nir", "initial_membranes",
           "PresetIF", "PresetLIF"]
