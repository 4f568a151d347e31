"""ATen calls of a ``torch.export`` program read as the torch functions :mod:`snnedge.ops` counts.

A program from ``torch.export.export(model, (x,))`` (a ``.pt2`` file) calls ATen operators
(``aten.conv2d.default``, ``aten.batch_norm.default``, ``aten.relu_.default``...) instead of
modules. Each operator whose arguments come in the order of a ``torch.nn.functional`` or
``torch`` function is counted as that function (``aten.conv2d`` as ``F.conv2d``: input, weight,
bias; ``aten.max_pool2d`` as ``F.max_pool2d``: input, kernel size), so a model and its
exported program give the same counts. Reshapes, copies in memory and the program's own
input/output flattening move no data the counts charge: they are views. An operator in
neither table stays unknown, and ``count_ops`` lists it in its notes.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["ATEN_EQUIVALENTS", "ATEN_VIEWS", "aten_name", "aten_equivalent"]

#: ATen operator name (overload and in-place ``_`` aside) -> the function counted for it.
ATEN_EQUIVALENTS: dict[str, Any] = {
    "conv1d": F.conv1d, "conv2d": F.conv2d, "conv3d": F.conv3d, "linear": F.linear,
    "batch_norm": F.batch_norm, "_native_batch_norm_legit_no_training": F.batch_norm,
    "relu": F.relu, "hardtanh": F.hardtanh, "relu6": F.relu6, "leaky_relu": F.leaky_relu,
    "elu": F.elu, "gelu": F.gelu, "silu": F.silu, "mish": F.mish, "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "softmax": torch.softmax, "_softmax": torch.softmax, "log_softmax": F.log_softmax,
    "clamp": torch.clamp, "clamp_min": torch.clamp, "add": torch.add, "sub": torch.sub,
    "mul": torch.mul, "div": torch.div, "neg": torch.neg,
    "max_pool1d": F.max_pool1d, "max_pool2d": F.max_pool2d, "max_pool3d": F.max_pool3d,
    "avg_pool1d": F.avg_pool1d, "avg_pool2d": F.avg_pool2d, "avg_pool3d": F.avg_pool3d,
    "adaptive_avg_pool1d": F.adaptive_avg_pool1d, "adaptive_avg_pool2d": F.adaptive_avg_pool2d,
    "adaptive_avg_pool3d": F.adaptive_avg_pool3d, "adaptive_max_pool2d": F.adaptive_max_pool2d,
    "mean": torch.mean, "sum": torch.sum, "mm": torch.mm, "bmm": torch.bmm,
    "matmul": torch.matmul, "cat": torch.cat, "concat": torch.cat, "stack": torch.stack,
}

#: ATen operators that only reshape, select or copy (no arithmetic, no new data counted).
ATEN_VIEWS = frozenset({
    "view", "_unsafe_view", "reshape", "flatten", "squeeze", "unsqueeze", "transpose",
    "permute", "t", "contiguous", "clone", "alias", "detach", "expand", "chunk", "split",
    "split_with_sizes", "unsafe_split", "unsafe_chunk", "tensor_split", "narrow", "slice",
    "select", "dropout", "feature_dropout", "native_dropout", "lift_fresh_copy", "_to_copy",
    "to", "type_as"})

# Functions an unflattened program calls around the graph (``ExportedProgram.module()``
# flattens its inputs and unflattens its outputs with pytree)
PYTREE_VIEWS = frozenset({"tree_flatten_spec", "tree_unflatten", "tree_flatten"})


def aten_name(target: Any) -> str | None:
    """``"conv2d"`` for ``torch.ops.aten.conv2d.default`` (and ``"relu"`` for ``relu_``);
    ``None`` for anything that is not an ATen operator."""
    schema = getattr(target, "_schema", None)
    if schema is None or not schema.name.startswith("aten::"):
        return None
    name = schema.name.split("::", 1)[1]
    return name[:-1] if name.endswith("_") and not name.startswith("_") else name


def aten_equivalent(target: Any) -> Any:
    """What :func:`snnedge.count_ops` counts a call of ``target`` as: the function of
    :data:`ATEN_EQUIVALENTS`, ``operator.getitem`` (a view) for a reshape, a copy in memory or
    the pytree flattening of an exported program, else ``target`` itself."""
    name = aten_name(target)
    if name is None:
        fn = getattr(target, "__name__", "")
        return operator.getitem if fn in PYTREE_VIEWS else target
    if name in ATEN_VIEWS:
        return operator.getitem
    return ATEN_EQUIVALENTS.get(name, target)
