"""ANN-to-SNN conversion for snnedge.

``convert(ann, calibration, ...)`` turns a trained PyTorch CNN (ReLU or QCFS activations,
BatchNorm, max or average pooling, residual additions, concatenations) into a rate-coded
:class:`snnedge.SpikingNetwork` whose layers keep the ANN's module paths::

    from converters import convert, QCFS
    snn = convert(ann, calibration=x_train[:500], normalization="percentile", percentile=99.9)
    res = snnedge.simulate(snn, x_test, timesteps=32)
"""
from . import io_types
from .errors import UnsupportedLayerError
from .maxpool import SpikingAdaptiveMaxPool2d, SpikingMaxPool2d
from .membrane import CalibratedIF
from .pipeline import DEFAULT_V_INIT, ConversionInfo, convert
from .qcfs import QCFS, replace_relu_with_qcfs

__all__ = ["convert", "ConversionInfo", "QCFS", "replace_relu_with_qcfs", "SpikingMaxPool2d",
           "SpikingAdaptiveMaxPool2d", "CalibratedIF", "UnsupportedLayerError", "DEFAULT_V_INIT"]

# snnedge.save_network / load_network learn converters' types (load_network also finds them
# through the entry point in pyproject.toml, without this import)
io_types.register()
