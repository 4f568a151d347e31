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
    "Hardtanh": "use Hardtanh(0, c) (a clipped ReLU, like ReLU6), or replace it with ReLU (or "
                "converters.QCFS) and retrain",
    "Hardswish": "replace Hardswish with ReLU (or converters.QCFS) and retrain",
    "Hardsigmoid": "replace Hardsigmoid with ReLU (or converters.QCFS) and retrain",
    "Mish": "replace Mish with ReLU (or converters.QCFS) and retrain",
    "Softplus": "replace Softplus with ReLU (or converters.QCFS) and retrain",
    "SqueezeExcitation": "squeeze-and-excitation multiplies activations by a sigmoid gate of "
                         "themselves, which rate-coded spikes cannot do; remove the block "
                         "(e.g. regnet_x instead of regnet_y) and retrain",
    "Permute": "a permutation of activations into another layout (channels-last for a "
               "LayerNorm, tokens for attention) has no spiking equivalent; keep the "
               "activations as (C, H, W) and use a convolutional model",
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
DEFAULT_FIX = ("use the supported layers (Conv1d/Conv2d with any groups, Linear, BatchNorm, "
               "ReLU, ReLU6 or clamp(0, c), converters.QCFS, AvgPool2d, MaxPool2d, adaptive "
               "average and max pooling, Flatten, Dropout, additions, torch.cat, chunk/split "
               "and channel shuffles), or build this part with snnedge modules directly")


def fix_for(type_name: str) -> str:
    """The suggested fix for an unsupported module or function called ``type_name``."""
    short = type_name.rsplit(".", 1)[-1]
    for key, fix in FIXES.items():
        if short.lower() == key.lower():
            return fix
    return DEFAULT_FIX
