"""Conversion graphs from ``torch.export`` programs (ATen-level graphs, e.g. ``.pt2`` files).

A program from ``torch.export.export(model, (x,))`` holds ATen calls (``aten.conv2d``,
``aten.batch_norm``, ``aten.relu``...) with the parameters lifted to inputs. Each call is
rebuilt as the torch module it came from, named by the module path recorded in the node's
``nn_module_stack`` (a call inside a container's ``forward`` gets the container's path and
the function, ``layer1.0.add``). Pass the program as exported (not after
``run_decompositions``, which turns ``linear`` into ``addmm`` and loses the structure).
"""
from __future__ import annotations

import operator

import torch
from torch import nn

from snnedge.layers import Add, Concat, Narrow, Scale

from .errors import UnsupportedLayerError, fix_for
from .graph import LEAF_TYPES
from .ir import INPUT, Graph, Names, Op, clipped_relu, reshape_ops
from .layouts import PermuteDims, part_bounds, per_sample_dims
from .qcfs import QCFS

LEAF_NAMES = {t.__name__ for t in LEAF_TYPES}
IDENTITY_OPS = {"dropout", "clone", "contiguous", "alias", "detach", "lift_fresh_copy",
                "feature_dropout", "native_dropout"}
RESHAPE_OPS = {"view", "reshape", "_unsafe_view", "flatten", "squeeze", "unsqueeze"}
SPLIT_OPS = {"chunk", "split", "split_with_sizes", "tensor_split", "unsafe_split",
             "unsafe_chunk", "unsafe_split_with_sizes"}
TUPLE_OPS = {"_native_batch_norm_legit_no_training", "max_pool2d_with_indices",
             "adaptive_max_pool2d"}


def _aten(node) -> str:
    schema = getattr(node.target, "_schema", None)
    return schema.name.split("::")[-1] if schema is not None else getattr(node.target, "__name__", "")


def _stack(node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, typ = next(reversed(stack.values()))
    typ = typ if isinstance(typ, str) else f"{typ.__module__}.{typ.__qualname__}"
    return path, typ.rsplit(".", 1)[-1]


def _shape(node) -> tuple[int, ...]:
    return tuple(node.meta["val"].shape[1:])


def _is_tensor(node) -> bool:
    return isinstance(getattr(node, "meta", {}).get("val"), torch.Tensor)


def capture_export(program, example: torch.Tensor) -> Graph:
    """The conversion graph of an ``ExportedProgram`` (see the module docstring)."""
    sig = program.graph_signature
    state = {**program.state_dict, **getattr(program, "constants", {})}
    lifted = {**sig.inputs_to_parameters, **sig.inputs_to_buffers,
              **getattr(sig, "inputs_to_lifted_tensor_constants", {})}
    if len(sig.user_inputs) != 1:
        raise TypeError(f"convert supports programs with one input tensor; this one takes "
                        f"{len(sig.user_inputs)} ({', '.join(sig.user_inputs)}).")
    const: dict[str, torch.Tensor] = {}
    value: dict[str, str] = {}       # fx node name -> op name
    names = Names()
    ops: list[Op] = []
    qcfs_groups: dict[str, Op] = {}
    output = None
    input_shape = None
    for node in program.graph.nodes:
        if node.op == "placeholder":
            if node.name in lifted:
                const[node.name] = state[lifted[node.name]]
            else:
                value[node.name] = INPUT
                input_shape = _shape(node)
            continue
        if node.op == "output":
            outs = node.args[0]
            while isinstance(outs, (tuple, list)) and len(outs) == 1:
                outs = outs[0]
            if not hasattr(outs, "name") or outs.name not in value:
                raise TypeError("convert supports programs that return one tensor; return only the logits.")
            output = value[outs.name]
            continue
        if node.op != "call_function":
            continue
        path, typ = _stack(node)
        if typ == "QCFS":
            _qcfs_node(node, path, value, const, names, ops, qcfs_groups, program)
            continue
        if node.target is operator.getitem:
            src = node.args[0]
            if src.name in value and node.args[1] == 0:
                value[node.name] = value[src.name]
            elif _aten(src) in SPLIT_OPS and _is_tensor(node):
                op = _part_op(node, src, path, typ, value, names)
                ops.append(op)
                value[node.name] = op.name
            continue
        if not (_is_tensor(node) or _aten(node) in TUPLE_OPS):
            continue  # symbolic sizes, assertions, splits (their parts are taken by getitem)
        op_list = _aten_ops(node, path, typ, value, const, names, example)
        ops.extend(op_list)
        value[node.name] = op_list[-1].name
    if input_shape is not None and tuple(example.shape[1:]) != input_shape:
        raise ValueError(f"The calibration data do not fit the exported program: it takes samples "
                         f"of shape {list(input_shape)}, the calibration data have "
                         f"{list(example.shape[1:])}.")
    return Graph(ops, output, tuple(example.shape[1:]))


def _part_op(node, split, path, typ, value, names: Names) -> Op:
    """Part ``i`` of a ``chunk``/``split`` (a ``getitem`` of it) as a ``Narrow`` slice."""
    parts = split.meta["val"]
    args = list(split.args)
    dim = split.kwargs.get("dim", args[2] if len(args) > 2 else 0) % parts[0].dim()
    name = _name(names, path, typ, "getitem")
    if dim == 0:
        raise UnsupportedLayerError(name, f"aten.{_aten(split)}", "split along a feature "
                                    "dimension (dim >= 1)", "It splits the batch")
    start, length = part_bounds([int(p.shape[dim]) for p in parts], node.args[1] % len(parts))
    return Op(name, "slice", (value[args[0].name],), Narrow(dim, start, length), _shape(node),
              f"aten.{_aten(split)}")


def _name(names: Names, path: str, typ: str, fn: str) -> str:
    if path and typ in LEAF_NAMES:
        return names.take(path)
    return names.take(f"{path}.{fn}" if path else fn)


def _aten_ops(node, path, typ, value, const, names, example) -> list[Op]:
    fn = _aten(node)
    args = list(node.args)
    kw = dict(node.kwargs)
    short = fn.rstrip("_").lstrip("_")
    ins = [value[a.name] for a in args if hasattr(a, "name") and a.name in value]
    for a in args:
        for item in (a if isinstance(a, (list, tuple)) else [a]):
            if hasattr(item, "name") and item.name in value and value[item.name] not in ins:
                ins.append(value[item.name])
    shape = _shape(node) if _is_tensor(node) else tuple(node.meta["val"][0].shape[1:]) \
        if isinstance(node.meta.get("val"), (tuple, list)) else ()
    src = f"aten.{fn}"

    def param(i, default=None):
        if i < len(args):
            a = args[i]
            return const[a.name] if hasattr(a, "name") and a.name in const else a
        return default

    def one(kind, module, inputs=None):
        return [Op(_name(names, path, typ, short), kind, tuple(inputs or ins[:1]), module, shape,
                   typ or src)]

    if fn in ("conv1d", "conv2d", "convolution"):
        w, b = param(1), param(2)
        if fn == "convolution":
            stride, padding, dilation, transposed, _, groups = (param(i) for i in range(3, 9))
            if transposed:
                raise UnsupportedLayerError(path or node.name, "ConvTranspose", fix_for("ConvTranspose2d"))
        else:
            stride, padding, dilation, groups = param(3, 1), param(4, 0), param(5, 1), param(6, 1)
        # padding may be "same" or "valid" (aten.conv2d.padding): nn.Conv2d takes them as is
        cls = nn.Conv2d if w.dim() == 4 else nn.Conv1d
        m = cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride, padding, dilation,
                groups, bias=b is not None)
        _load(m, weight=w, bias=b)
        return one("weighted", m)
    if fn == "linear":
        w, b = param(1), param(2)
        m = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        _load(m, weight=w, bias=b)
        return one("weighted", m)
    if fn in ("batch_norm", "_native_batch_norm_legit_no_training"):
        w, b, rm, rv = param(1), param(2), param(3), param(4)
        eps = param(7) if fn == "batch_norm" else param(6)
        if fn == "batch_norm" and param(5):
            raise ValueError(f"The program computes {path or node.name!r} (BatchNorm) in training "
                             f"mode; export the model after model.eval().")
        if rm is None or rv is None:
            raise UnsupportedLayerError(path or node.name, "BatchNorm", "build the BatchNorm with "
                                        "track_running_stats=True and train it")
        c = rm.numel()
        m = (nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d)(c, eps=float(eps), affine=True)
        with torch.no_grad():
            m.weight.copy_(torch.ones(c) if w is None else w)
            m.bias.copy_(torch.zeros(c) if b is None else b)
            m.running_mean.copy_(rm)
            m.running_var.copy_(rv)
        return one("bn", m.eval())
    if fn in ("relu", "relu_"):
        return one("relu", nn.ReLU())
    if fn in ("hardtanh", "hardtanh_", "clamp", "clamp_", "clip", "clip_", "clamp_min",
              "clamp_min_", "relu6", "relu6_") and len(ins) == 1:
        low, high = ((0.0, 6.0) if short == "relu6" else (param(1, -1.0), param(2, 1.0))
                     if short == "hardtanh" else (param(1), None if short == "clamp_min"
                                                  else param(2)))
        if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):
            low, high = float(low) if low is not None else None, float(high) if high is not None else None
        return [clipped_relu(_name(names, path, typ, short), ins[0], shape, typ or src, low, high)]
    if fn == "adaptive_max_pool2d":
        return one("maxpool", nn.AdaptiveMaxPool2d(tuple(param(1))))
    if fn in ("channel_shuffle", "native_channel_shuffle"):
        return one("shuffle", nn.ChannelShuffle(int(param(1))))
    if fn in ("transpose", "permute", "swapaxes", "swapdims"):
        ndim = len(shape) + 1
        if fn == "permute":
            dims = tuple(param(1))
        else:
            d0, d1 = param(1) % ndim, param(2) % ndim
            dims = list(range(ndim))
            dims[d0], dims[d1] = dims[d1], dims[d0]
        name = _name(names, path, typ, short)
        perm = per_sample_dims(tuple(dims), ndim, name, src)
        return [Op(name, "permute", tuple(ins[:1]), PermuteDims(perm), shape, typ or src)]
    if fn == "slice" and len(ins) == 1:
        dim, start, end, step = param(1, 0), param(2, None), param(3, None), param(4, 1)
        s_in = _shape(args[0])
        dim = dim % (len(s_in) + 1)
        name = _name(names, path, typ, short)
        if dim == 0 or step != 1:
            if dim == 0 and (start in (None, 0)) and (end is None or end >= example.shape[0]):
                return one("identity", nn.Identity())
            raise UnsupportedLayerError(name, src, "index activations only by slices with step 1 "
                                        "along feature dimensions (x[:, a:b])")
        lo, hi, _ = slice(start, end).indices(s_in[dim - 1])
        return [Op(name, "slice", tuple(ins[:1]), Narrow(dim, lo, hi - lo), shape, typ or src)]
    if fn in ("max_pool2d", "max_pool2d_with_indices"):
        k = param(1)
        m = nn.MaxPool2d(k, param(2) or k, param(3, 0), param(4, 1), ceil_mode=bool(param(5, False)))
        return one("maxpool", m)
    if fn == "avg_pool2d":
        k = param(1)
        m = nn.AvgPool2d(k, param(2) or k, param(3, 0), bool(param(4, False)), bool(param(5, True)),
                         param(6, None))
        return one("avgpool", m)
    if fn in ("adaptive_avg_pool2d", "_adaptive_avg_pool2d"):
        return one("avgpool", nn.AdaptiveAvgPool2d(tuple(param(1))))
    if fn == "mean" and _is_tensor(node):
        dims = tuple(sorted(d % 4 for d in param(1))) if len(args) > 1 else ()
        if len(args[0].meta["val"].shape) != 4 or dims != (2, 3):
            raise UnsupportedLayerError(path or node.name, src, "average over the spatial "
                                        "dimensions only, or use nn.AdaptiveAvgPool2d")
        if param(2, False):
            return one("avgpool", nn.AdaptiveAvgPool2d(1))
        s_in = _shape(args[0])
        pool = Op(names.take(f"{path}.mean_pool" if path else "mean_pool"), "avgpool", tuple(ins[:1]),
                  nn.AdaptiveAvgPool2d(1), (s_in[0], 1, 1), src)
        flat = Op(_name(names, path, typ, "mean"), "reshape", (pool.name,), nn.Flatten(), shape, src)
        return [pool, flat]
    if fn in RESHAPE_OPS:
        name = path if path and typ in LEAF_NAMES else (f"{path}.{short}" if path else short)
        return reshape_ops(names, name, ins[0], _shape(args[0]), shape, typ or src)
    if fn in IDENTITY_OPS:
        return one("identity", nn.Identity())
    if fn in ("add", "add_"):
        if len(ins) < 2 or kw.get("alpha", 1) != 1:
            raise UnsupportedLayerError(path or node.name, src, "add only activations to "
                                        "activations; put a constant offset into the preceding "
                                        "layer's bias")
        return one("add", Add(), ins)
    if fn == "cat":
        dim = param(1, 0)
        dim = dim + len(shape) + 1 if dim < 0 else dim
        if dim == 0:
            raise UnsupportedLayerError(path or node.name, src, "concatenate along a feature "
                                        "dimension (dim >= 1)")
        if len(ins) == 1:
            return one("identity", nn.Identity())
        return one("cat", Concat(dim), ins)
    if fn in ("mul", "div") and len(ins) == 1 and isinstance(args[1], (int, float)) and args[1] != 0:
        c = float(args[1])
        return one("scale", Scale(1.0 / c if fn == "div" else c))
    what = typ if typ and typ not in ("Sequential",) and typ in _KNOWN_UNSUPPORTED else src
    raise UnsupportedLayerError(path or node.name, what, fix_for(what if what != src else fn))


_KNOWN_UNSUPPORTED = {"Sigmoid", "Tanh", "GELU", "SiLU", "ELU", "LeakyReLU", "PReLU",
                      "Hardtanh", "Hardswish", "Hardsigmoid", "Mish", "Softplus", "Softmax",
                      "LogSoftmax", "LayerNorm", "LayerNorm2d", "GroupNorm", "InstanceNorm2d",
                      "ConvTranspose2d", "LSTM", "GRU", "MultiheadAttention",
                      "SqueezeExcitation", "Permute"}


def _load(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    with torch.no_grad():
        module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)


def _qcfs_node(node, path, value, const, names, ops, groups, program) -> None:
    """All ATen nodes of one QCFS call become one ``qcfs`` op (its threshold, levels, shift
    read back from the parameter and the constants of the decomposition)."""
    if path not in groups:
        src = next(a for a in node.args if hasattr(a, "name") and a.name in value)
        lam = const.get(next((a.name for a in node.args if hasattr(a, "name") and a.name in const), ""))
        if lam is None:
            lam = program.state_dict.get(f"{path}.threshold")
        op = Op(names.take(path), "qcfs", (value[src.name],), QCFS(8, float(lam.detach() if isinstance(lam, torch.Tensor) else lam)), _shape(node), "QCFS")
        groups[path] = [op, False]
        ops.append(op)
    op, levels_seen = groups[path]
    fn = _aten(node)
    nums = [a for a in node.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if fn == "mul" and nums and not levels_seen:  # the first product is x * L
        op.module.levels = int(nums[0])
        groups[path][1] = True
    if fn == "add" and nums:
        op.module.shift = float(nums[0])
    value[node.name] = op.name
