r"""The quantization-clip-floor-shift activation (QCFS) for conversion-friendly ANNs.

Bu, Fang, Ding, Dai, Yu and Huang, "Optimal ANN-SNN conversion for high-accuracy and
ultra-low-latency spiking neural networks", ICLR 2022 (arXiv:2303.04347)::

    h(x) = lambda / L * clip(floor(x * L / lambda + phi), 0, L),   phi = 1/2

``L`` quantization levels, a trainable threshold ``lambda``; the floor is passed straight
through in the backward pass. An IF neuron with threshold ``lambda`` (after weight
normalization: 1) and initial membrane ``lambda / 2`` reproduces ``h`` in expectation, so
QCFS-trained ANNs convert with small error at a few time steps.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from snnedge.errors import check_positive_int, check_real


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class QCFS(nn.Module):
    r"""Clip-floor-shift activation with a trainable threshold, a drop-in for ``nn.ReLU``.

    ``h(x) = threshold / levels * clip(floor(x * levels / threshold + shift), 0, levels)``
    (Bu et al., ICLR 2022). The floor uses a straight-through gradient; the threshold
    receives the gradient of the clip and of the final rescaling.

    Parameters
    ----------
    levels:
        Quantization levels ``L`` (the SNN needs about ``L`` steps to express them).
    threshold:
        Initial threshold ``lambda`` (Bu et al. start from 8.0), a positive float.
    shift:
        ``phi`` in ``[0, 1)``; 0.5 matches an IF neuron that starts at half its threshold.
    trainable:
        Make the threshold a parameter (default) or a fixed buffer.

    Example
    -------
    >>> import torch
    >>> act = QCFS(levels=4, threshold=2.0)
    >>> act(torch.tensor([-1.0, 0.2, 0.3, 1.1, 5.0])).tolist()
    [0.0, 0.0, 0.5, 1.0, 2.0]
    """

    def __init__(self, levels: int = 8, threshold: float = 8.0, shift: float = 0.5,
                 trainable: bool = True):
        super().__init__()
        self.levels = check_positive_int(levels, param="levels", where="QCFS")
        check_real(threshold, param="threshold", where="QCFS", low=0.0, low_open=True)
        self.shift = check_real(shift, param="shift", where="QCFS", low=0.0, high=1.0, high_open=True)
        t = torch.tensor(float(threshold))
        if trainable:
            self.threshold = nn.Parameter(t)
        else:
            self.register_buffer("threshold", t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.threshold
        y = torch.clamp(x / lam, 0.0, 1.0)
        y = _FloorSTE.apply(y * self.levels + self.shift) / self.levels
        return y * lam

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={float(self.threshold):.4g}, shift={self.shift:g}"


def replace_relu_with_qcfs(model: nn.Module, levels: int = 8, threshold: float = 8.0,
                           shift: float = 0.5) -> nn.Module:
    """A copy of ``model`` with every ``nn.ReLU`` module replaced by :class:`QCFS`.

    ``model`` itself is left unchanged. ``threshold`` is each QCFS's initial threshold:
    a float, or a dict ``{module path: float}`` (for instance activation percentiles
    measured on the ReLU model) with a float under ``"default"`` for the others.
    Functional ``F.relu`` calls cannot be swapped; they are reported with a warning.
    """
    check_positive_int(levels, param="levels", where="replace_relu_with_qcfs")
    if not isinstance(model, nn.Module):
        raise TypeError(f"replace_relu_with_qcfs expects a torch.nn.Module. Got {type(model).__name__}.")
    new = copy.deepcopy(model)
    per_path = threshold if isinstance(threshold, dict) else {}
    default = float(per_path.get("default", 8.0)) if per_path else float(threshold)
    replaced = 0
    for path, module in list(new.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.ReLU:
                full = f"{path}.{child_name}" if path else child_name
                setattr(module, child_name, QCFS(levels, _one_threshold(per_path.get(full, default), full),
                                                 shift))
                replaced += 1
    if isinstance(new, nn.ReLU):  # the model is a single ReLU
        return QCFS(levels, default, shift)
    functional = _functional_relus(new)
    if functional:
        warnings.warn(f"replace_relu_with_qcfs: {len(functional)} functional ReLU call(s) "
                      f"({', '.join(functional[:5])}) stay ReLU; use nn.ReLU modules to make "
                      f"them QCFS.", stacklevel=2)
    elif replaced == 0:
        warnings.warn("replace_relu_with_qcfs found no nn.ReLU module to replace.", stacklevel=2)
    return new


def _one_threshold(value, path: str) -> float:
    """``value`` as one QCFS threshold, or a ValueError naming the module ``path``."""
    if isinstance(value, (list, tuple)) or (torch.is_tensor(value) and value.numel() != 1):
        raise ValueError(
            f"replace_relu_with_qcfs: the threshold for {path!r} has several values (per-channel "
            f"scales, as convert's default normalization='channelwise' records); a QCFS layer takes "
            f"one. Use one scale per layer, e.g. convert(ann, calib, normalization='percentile')"
            f".conversion_.scales.")
    return float(value)


def _functional_relus(model: nn.Module) -> list[str]:
    """Names of functional relu calls in the model's traced graph (empty when untraceable)."""
    import torch.fx as fx
    import torch.nn.functional as F

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - an untraceable model is only a missed warning
        return []
    found = []
    for node in graph.nodes:
        if (node.op == "call_function" and node.target in (F.relu, torch.relu, torch.relu_)) or (
                node.op == "call_method" and node.target in ("relu", "relu_")):
            found.append(node.name)
    return found
