"""Errors raised by conversion.

Messages follow snnedge's template (:mod:`snnedge.errors`): what went wrong, where (the
ANN's module path and type), what was expected, and how to fix it.
"""
from __future__ import annotations


class UnsupportedLayerError(TypeError):
    """An ANN module or function call that has no spiking equivalent.

    Attributes
    ----------
    path:
        Module path in the ANN (``"features.4"``), or the path of the module whose
        ``forward`` makes the unsupported call (``"layer1.0.sigmoid"``).
    layer_type:
        Name of the module type or function (``"Sigmoid"``, ``"torch.sigmoid"``).
    fix:
        What to change in the ANN.
    """

    def __init__(self, path: str, layer_type: str, fix: str, detail: str = ""):
        self.path, self.layer_type, self.fix = path, layer_type, fix
        where = f"{path!r} ({layer_type})" if path else f"a {layer_type} call"
        detail = f" {detail.rstrip('.')}." if detail else ""
        super().__init__(f"convert cannot convert {where}: it has no spiking equivalent.{detail} "
                         f"Fix: {fix}")


# What to tell the user for common unsupported activations and layers.
FIXES = {
    "Sigmoid": "replace Sigmoid with ReLU (or converters.QCFS) and retrain",
    "Tanh": "replace Tanh with ReLU (or converters.QCFS) and retrain",
    "GELU": "replace GELU with ReLU (or converters.QCFS) and retrain",
    "SiLU": "replace SiLU with ReLU (or converters.QCFS) and retrain",
    "ELU": "replace ELU with ReLU (or converters.QCFS) and retrain",
    "LeakyReLU": "replace LeakyReLU with ReLU (or converters.QCFS) and retrain",
    "PReLU": "replace PReLU with ReLU (or converters.QCFS) and retrain",
    "ReLU6": "replace ReLU6 with ReLU (or converters.QCFS, whose threshold also clips) and retrain",
    "Hardtanh": "replace Hardtanh with ReLU (or converters.QCFS) and retrain",
    "Softmax": "remove the final Softmax: the spiking readout accumulates logits and its argmax "
               "is the same",
    "LogSoftmax": "remove the final LogSoftmax: the spiking readout accumulates logits and its "
                  "argmax is the same",
    "LayerNorm": "use BatchNorm, which folds into the preceding convolution or linear layer",
    "GroupNorm": "use BatchNorm, which folds into the preceding convolution or linear layer",
    "InstanceNorm2d": "use BatchNorm, which folds into the preceding convolution or linear layer",
    "ConvTranspose2d": "use Conv2d (with upsampling by a fixed pattern outside the network)",
    "LSTM": "recurrent layers are not convertible; use convolutions or train an SNN with "
            "snnedge.fit",
    "GRU": "recurrent layers are not convertible; use convolutions or train an SNN with "
           "snnedge.fit",
    "MultiheadAttention": "attention multiplies activations together, which rate-coded "
                          "spikes cannot do; use a convolutional model",
}
DEFAULT_FIX = ("use the supported layers (Conv1d/Conv2d, Linear, BatchNorm, ReLU or "
               "converters.QCFS, AvgPool2d, AdaptiveAvgPool2d, MaxPool2d, Flatten, Dropout, "
               "additions and torch.cat), or build this part with snnedge modules directly")


def fix_for(type_name: str) -> str:
    """The suggested fix for an unsupported module or function called ``type_name``."""
    short = type_name.rsplit(".", 1)[-1]
    for key, fix in FIXES.items():
        if short.lower() == key.lower():
            return fix
    return DEFAULT_FIX
