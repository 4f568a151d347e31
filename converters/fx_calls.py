"""Function and method calls of a torch.fx graph as conversion ops (the fx front end's half
for everything that is not a module call: ``F.relu``, ``+``, ``torch.cat``, ``x.view``,
``x.mean((2, 3))``, ``clamp``, ``chunk``, channel shuffles).

:func:`function_ops` turns one ``call_function`` / ``call_method`` node into ops of
:mod:`converters.ir`; a call with no spiking equivalent raises
:class:`~converters.errors.UnsupportedLayerError` named after the module whose ``forward``
makes it (``layer1.0.sigmoid``).
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from snnedge.layers import Add, Concat, Narrow, Scale

from .errors import UnsupportedLayerError, fix_for
from .ir import Names, Op, clipped_relu, reshape_ops
from .layouts import PermuteDims, check_channel_permutation, part_bounds, per_sample_dims

RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
DIV_FUNCTIONS = {operator.truediv, operator.itruediv, torch.div}
DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout}
POOL_FUNCTIONS = {F.avg_pool1d: nn.AvgPool1d, F.avg_pool2d: nn.AvgPool2d,
                  F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d,
                  F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d, F.max_pool2d: nn.MaxPool2d,
                  F.adaptive_max_pool2d: nn.AdaptiveMaxPool2d}
RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "unflatten"}
RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
IDENTITY_METHODS = {"contiguous", "clone", "detach"}
# clamps: (low, high) read from positional args after the input and from keywords
CLAMPS = {"clamp": ("min", "max"), "clip": ("min", "max"), "clamp_min": ("min", None),
          "relu6": (None, None), "hardtanh": ("min_val", "max_val")}
CLAMP_DEFAULTS = {"relu6": (0.0, 6.0), "hardtanh": (-1.0, 1.0)}
SPLITS = {"chunk", "split", "tensor_split"}
PERMUTES = {"transpose", "permute", "swapaxes", "swapdims"}


def where(node: fx.Node) -> str:
    """Path of the module whose ``forward`` made the call (``""``: the model's own)."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else ""


def fn_name(node: fx.Node) -> str:
    """The called function or method, without a trailing ``_`` (in-place forms)."""
    if node.op == "call_method":
        return str(node.target).rstrip("_")
    name = getattr(node.target, "__name__", str(node.target))
    return {"iadd": "add", "imul": "mul", "truediv": "div", "itruediv": "div"}.get(name, name).rstrip("_")


def is_tensor(node) -> bool:
    return isinstance(node, fx.Node) and "tensor_meta" in node.meta and \
        hasattr(node.meta["tensor_meta"], "shape")


def shape_of(node: fx.Node) -> tuple[int, ...]:
    """Per-sample shape of a tensor node (from ShapeProp)."""
    return tuple(node.meta["tensor_meta"].shape[1:])


def tensor_inputs(node: fx.Node, value: dict) -> list[str]:
    """Op names of the tensors a node reads; a tensor attribute of the model is refused."""
    ins = []
    for a in (*node.args, *node.kwargs.values()):
        for item in (a if isinstance(a, (list, tuple)) else [a]):
            if isinstance(item, fx.Node) and item.op == "get_attr":
                raise UnsupportedLayerError(
                    where(node) or str(item.target), f"{fn_name(node)} with tensor attribute "
                    f"{item.target!r}", "wrap the computation in a supported module (Conv2d, "
                    "Linear, BatchNorm) so convert can read its parameters")
            if is_tensor(item) and item in value:
                ins.append(value[item])
    return ins


def _scalar_arg(node: fx.Node):
    nums = [a for a in node.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    return nums[0] if len(nums) == 1 and len(node.args) == 2 else None


def _arg(node: fx.Node, index: int, key: str | None, default=None):
    if key is not None and key in node.kwargs:
        return node.kwargs[key]
    return node.args[index] if index < len(node.args) else default


def function_ops(node: fx.Node, value: dict, names: Names) -> list[Op]:
    """Ops for a call_function / call_method node (functional relu, add, cat, view...)."""
    fn = fn_name(node)
    at = where(node)
    name = f"{at}.{fn}" if at else fn
    target = node.target
    method = node.op == "call_method"
    src = f"{'Tensor.' if method else ''}{fn}"
    if target is operator.getitem:
        return _getitem_ops(node, value, names, name)
    ins = tensor_inputs(node, value)
    shape = shape_of(node)

    def one(kind, module):
        return [Op(names.take(name), kind, (ins[0],), module, shape, src)]

    if (not method and target in RELU_FUNCTIONS) or (method and fn == "relu"):
        return one("relu", nn.ReLU())
    if fn in CLAMPS and len(ins) == 1:
        low, high = _clamp_bounds(node, fn)
        return [clipped_relu(names.take(name), ins[0], shape, src, low, high)]
    if (not method and target in ADD_FUNCTIONS) or (method and fn == "add"):
        if len(ins) < 2 or len(node.args) > 2 or node.kwargs.get("alpha", 1) != 1:
            raise UnsupportedLayerError(name, src, "add only activations to activations; put a "
                                        "constant offset into the preceding layer's bias",
                                        "It adds a constant or a scaled tensor")
        return [Op(names.take(name), "add", tuple(ins), Add(), shape, src)]
    if not method and target in CAT_FUNCTIONS:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        ndim = len(shape) + 1
        dim = dim + ndim if dim < 0 else dim
        if dim == 0:
            raise UnsupportedLayerError(name, src, "concatenate along a feature dimension (dim >= 1)",
                                        "It concatenates along the batch dimension")
        if len(ins) == 1:  # torch.cat([x]) (DenseNet's first layer of a block)
            return one("identity", nn.Identity())
        return [Op(names.take(name), "cat", tuple(ins), Concat(dim), shape, src)]
    if (not method and target in RESHAPE_FUNCTIONS) or (method and fn in RESHAPE_METHODS):
        return reshape_ops(names, name, ins[0], shape_of(node.args[0]), shape, src)
    if (not method and target in DROPOUT_FUNCTIONS) or (method and fn in IDENTITY_METHODS):
        return one("identity", nn.Identity())
    if not method and target in POOL_FUNCTIONS:
        module = POOL_FUNCTIONS[target](*node.args[1:], **node.kwargs)
        kind = "maxpool" if isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) else "avgpool"
        if kind == "maxpool" and module.return_indices:
            raise UnsupportedLayerError(name, src, "use return_indices=False")
        return one(kind, module)
    if fn == "channel_shuffle":
        return one("shuffle", nn.ChannelShuffle(int(_arg(node, 1, "groups"))))
    if fn in PERMUTES:
        return _permute_ops(node, names, name, ins[0], src)
    if (not method and target is torch.mean) or (method and fn == "mean"):
        return _mean_ops(node, names, name, ins[0], src)
    if (not method and (target in MUL_FUNCTIONS or target in DIV_FUNCTIONS)) or (
            method and fn in ("mul", "div")):
        c = _scalar_arg(node)
        div = (method and fn == "div") or (not method and target in DIV_FUNCTIONS)
        if div and not is_tensor(node.args[0]):
            c = None  # constant / tensor is not linear
        if c is not None and len(ins) == 1 and c != 0:
            return one("scale", Scale(1.0 / c if div else float(c)))
        raise UnsupportedLayerError(name, src, "multiply activations only by constants; products "
                                    "of activations have no rate-coded equivalent",
                                    "It multiplies two tensors")
    raise UnsupportedLayerError(name, src, fix_for(fn))


def _clamp_bounds(node: fx.Node, fn: str) -> tuple:
    low_key, high_key = CLAMPS[fn]
    low, high = CLAMP_DEFAULTS.get(fn, (None, None))
    if low_key is not None:
        low = _arg(node, 1, low_key, low)
    if high_key is not None:
        high = _arg(node, 2, high_key, high)
    return low, high


def _getitem_ops(node: fx.Node, value: dict, names: Names, name: str) -> list[Op]:
    """A part of ``chunk``/``split`` or a slice ``x[:, a:b]``: :class:`snnedge.layers.Narrow`."""
    parent, index = node.args[0], node.args[1]
    src = "Tensor.getitem"
    if isinstance(parent, fx.Node) and parent.op in ("call_method", "call_function") and \
            fn_name(parent) in SPLITS and isinstance(index, int):
        ins = tensor_inputs(parent, value)
        dim = _arg(parent, 2, "dim", 0)
        parts = parent.meta["tensor_meta"]
        ndim = len(parts[0].shape)
        dim = dim % ndim
        if dim == 0:
            raise UnsupportedLayerError(name, f"Tensor.{fn_name(parent)}", "split along a feature "
                                        "dimension (dim >= 1)", "It splits the batch")
        start, length = part_bounds([int(p.shape[dim]) for p in parts], index % len(parts))
        return [Op(names.take(name), "slice", (ins[0],), Narrow(dim, start, length),
                   shape_of(node), f"Tensor.{fn_name(parent)}")]
    if not (is_tensor(parent) and parent in value):
        raise UnsupportedLayerError(name, src, "index activations only by slices along feature "
                                    "dimensions (x[:, a:b])")
    items = index if isinstance(index, tuple) else (index,)
    s_in = shape_of(parent)
    fix = "index activations only by slices with step 1 along feature dimensions (x[:, a:b])"
    if not items or not isinstance(items[0], slice) or items[0] != slice(None) or \
            len(items) > len(s_in) + 1:
        raise UnsupportedLayerError(name, src, fix, f"It indexes with {index!r}")
    ops, prev = [], value[parent]
    shape = list(s_in)
    for d, item in enumerate(items[1:], start=1):
        if not isinstance(item, slice) or item.step not in (None, 1):
            raise UnsupportedLayerError(name, src, fix, f"It indexes with {index!r}")
        start, stop, _ = item.indices(shape[d - 1])
        if (start, stop) == (0, shape[d - 1]):
            continue
        if stop <= start:
            raise UnsupportedLayerError(name, src, fix, f"It takes an empty slice {item!r}")
        shape[d - 1] = stop - start
        ops.append(Op(names.take(name), "slice", (prev,), Narrow(d, start, stop - start),
                      tuple(shape), src))
        prev = ops[-1].name
    if not ops:
        ops.append(Op(names.take(name), "identity", (prev,), nn.Identity(), tuple(shape), src))
    return ops


def _permute_ops(node: fx.Node, names: Names, name: str, src_name: str, src: str) -> list[Op]:
    """A transpose inside a channel shuffle (see :mod:`converters.layouts`); checked here,
    where the reshapes around it are visible, so any other layout fails at its own call."""
    s_in = shape_of(node.args[0])
    ndim = len(s_in) + 1
    fn = fn_name(node)
    if fn == "permute":
        dims = node.args[1:] if not isinstance(_arg(node, 1, "dims"), (tuple, list)) \
            else _arg(node, 1, "dims")
    else:
        d0, d1 = (_arg(node, 1, "dim0"), _arg(node, 2, "dim1")) if fn == "transpose" else \
            (node.args[1], node.args[2])
        dims = list(range(ndim))
        dims[d0 % ndim], dims[d1 % ndim] = dims[d1 % ndim], dims[d0 % ndim]
    perm = per_sample_dims(tuple(dims), ndim, name, src)
    # the reshapes before it (used only here) and after it, as the chain that fold collapses
    first = node.args[0]
    while _is_reshape(first) and len(first.users) == 1 and is_tensor(first.args[0]):
        first = first.args[0]
    last = node
    while len(last.users) == 1 and _is_reshape(nxt := next(iter(last.users))):
        last = nxt
    steps = [("reshape", s_in), ("permute", perm), ("reshape", shape_of(last))]
    check_channel_permutation(name, src, shape_of(first) if is_tensor(first) else s_in, steps)
    return [Op(names.take(name), "permute", (src_name,), PermuteDims(perm), shape_of(node), src)]


def _is_reshape(node) -> bool:
    if not isinstance(node, fx.Node) or node.op not in ("call_method", "call_function"):
        return False
    fn = fn_name(node)
    return fn in RESHAPE_METHODS or fn in IDENTITY_METHODS or (
        node.op == "call_function" and node.target in RESHAPE_FUNCTIONS)


def _mean_ops(node: fx.Node, names: Names, name: str, src_name: str, src: str) -> list[Op]:
    args = list(node.args[1:])
    dims = node.kwargs.get("dim", args[0] if args else None)
    keep = node.kwargs.get("keepdim", args[1] if len(args) > 1 else False)
    s_in = shape_of(node.args[0])
    ndim = len(s_in) + 1
    dims = tuple(sorted(d % ndim for d in ((dims,) if isinstance(dims, int) else (dims or ()))))
    if ndim != 4 or dims != (2, 3):
        raise UnsupportedLayerError(name, src, "average over the spatial dimensions only "
                                    "(x.mean((2, 3))), or use nn.AdaptiveAvgPool2d",
                                    f"It averages over dimensions {list(dims)} of a {ndim}-D tensor")
    if keep:
        return [Op(names.take(name), "avgpool", (src_name,), nn.AdaptiveAvgPool2d(1), shape_of(node), src)]
    pool = Op(names.take(name + "_pool"), "avgpool", (src_name,), nn.AdaptiveAvgPool2d(1),
              (s_in[0], 1, 1), src)
    return [pool, Op(names.take(name), "reshape", (pool.name,), nn.Flatten(), shape_of(node), src)]
