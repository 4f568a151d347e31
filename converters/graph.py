"""The conversion graph: an ANN as a list of primitive operations, captured with torch.fx.

Every ANN becomes a :class:`Graph` of :class:`Op` s in topological order before anything
else happens. Each op has a name (the ANN's module path, ``features.3``, or for a function
called inside a module's ``forward`` that module's path and the function, ``layer1.0.add``),
a kind (see :data:`KINDS`), the names of its inputs (``"input"`` is the ANN's input), a
private copy of the torch module that computes it, and its per-sample output shape. The
graph runs as an ANN (:meth:`Graph.run`), which is how calibration data are pushed through
it and how capture is checked against the original model.

Front ends: :func:`capture_fx` (``torch.fx.symbolic_trace`` of an ``nn.Module``) and
:func:`converters.export.capture_export` (a ``torch.export.ExportedProgram``).
"""
from __future__ import annotations

import copy
import math
import operator
from collections import Counter
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from snnedge.layers import Add, Concat, Scale

from .errors import UnsupportedLayerError, fix_for
from .qcfs import QCFS

INPUT = "input"

KINDS = {
    "weighted": "Conv1d, Conv2d or Linear (weights rescaled, BatchNorm folded in)",
    "bn": "BatchNorm1d/2d (folded, or a per-channel Scale)",
    "relu": "ReLU (an IF neuron)",
    "qcfs": "QCFS (an IF neuron with the trained threshold)",
    "avgpool": "AvgPool1d/2d, AdaptiveAvgPool2d",
    "maxpool": "MaxPool2d (a spiking max pool)",
    "reshape": "Flatten, Unflatten, view, reshape",
    "add": "element-wise sum of two or more tensors (snnedge.Add)",
    "cat": "concatenation (snnedge.Concat)",
    "scale": "per-channel affine map (snnedge.Scale)",
    "identity": "Identity, Dropout, contiguous (removed)",
}

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
AVGPOOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
IDENTITIES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
LEAF_TYPES = (*WEIGHTED, *BATCHNORMS, nn.ReLU, QCFS, *AVGPOOLS, nn.MaxPool2d, nn.Flatten,
              nn.Unflatten, *IDENTITIES)


@dataclass
class Op:
    """One primitive operation of the ANN (see the module docstring)."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    module: nn.Module
    shape: tuple[int, ...]
    source: str = ""  # the ANN module type or function, for messages


@dataclass
class Graph:
    """Ops in topological order; ``output`` names the op whose value the ANN returns."""

    ops: list[Op]
    output: str
    input_shape: tuple[int, ...]

    def op(self, name: str) -> Op:
        for o in self.ops:
            if o.name == name:
                return o
        raise KeyError(name)

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.input_shape if name == INPUT else self.op(name).shape

    @torch.no_grad()
    def run(self, x: torch.Tensor, record: tuple[str, ...] = ()) -> tuple[torch.Tensor, dict]:
        """The ANN's output for ``x`` ``[N, ...]`` and the values of the ``record`` ops."""
        vals = {INPUT: x}
        uses = Counter(i for o in self.ops for i in o.inputs)
        kept = {}
        for o in self.ops:
            vals[o.name] = o.module(*[vals[i] for i in o.inputs])
            if o.name in record:
                kept[o.name] = vals[o.name]
            for i in o.inputs:
                uses[i] -= 1
                if uses[i] == 0 and i != self.output:
                    vals.pop(i, None)
        return vals[self.output], kept


class _Names:
    """Unique op names that never nest inside one another (SpikingNetwork stores layers
    as nested modules, so ``a.b`` and ``a.b.c`` cannot both be layers)."""

    def __init__(self):
        self.used: set[str] = set()

    def _clash(self, name: str) -> bool:
        if name in self.used or name == INPUT:
            return True
        parts = name.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts))}
        return bool(prefixes & self.used) or any(u.startswith(name + ".") for u in self.used)

    def take(self, name: str) -> str:
        base, k = name, 1
        while self._clash(name):
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name


def reshape_ops(names: _Names, name: str, src: str, s_in: tuple, s_out: tuple,
                source: str) -> list[Op]:
    """Ops that reshape a per-sample ``s_in`` into ``s_out`` (Flatten and/or Unflatten)."""
    if math.prod(s_in) != math.prod(s_out):
        raise UnsupportedLayerError(name, source, "keep the batch dimension first and reshape "
                                    "only the per-sample dimensions",
                                    f"It reshapes a sample of shape {list(s_in)} into {list(s_out)}, "
                                    f"which mixes samples of the batch")
    if tuple(s_in) == tuple(s_out):
        return [Op(names.take(name), "identity", (src,), nn.Identity(), tuple(s_out), source)]
    if len(s_out) == 1:
        return [Op(names.take(name), "reshape", (src,), nn.Flatten(), tuple(s_out), source)]
    if len(s_in) == 1:
        return [Op(names.take(name), "reshape", (src,), nn.Unflatten(1, tuple(s_out)), tuple(s_out), source)]
    flat = Op(names.take(name + "_flatten"), "reshape", (src,), nn.Flatten(), (math.prod(s_in),), source)
    return [flat, Op(names.take(name), "reshape", (flat.name,), nn.Unflatten(1, tuple(s_out)),
                     tuple(s_out), source)]


def module_op(path: str, module: nn.Module, src: str, shape: tuple) -> Op:
    """The op for a call of ANN module ``module`` at ``path`` (a private copy)."""
    tname = type(module).__name__
    if isinstance(module, WEIGHTED):
        if getattr(module, "padding_mode", "zeros") != "zeros":
            raise UnsupportedLayerError(path, tname, "use padding_mode='zeros'",
                                        f"It pads with padding_mode={module.padding_mode!r}")
        return Op(path, "weighted", (src,), copy.deepcopy(module), shape, tname)
    if isinstance(module, BATCHNORMS):
        if module.running_mean is None or module.running_var is None:
            raise UnsupportedLayerError(path, tname, "build the BatchNorm with "
                                        "track_running_stats=True and train it",
                                        "It keeps no running statistics to fold")
        return Op(path, "bn", (src,), copy.deepcopy(module), shape, tname)
    if type(module) is nn.ReLU:
        return Op(path, "relu", (src,), nn.ReLU(), shape, tname)
    if isinstance(module, QCFS):
        return Op(path, "qcfs", (src,), copy.deepcopy(module), shape, tname)
    if isinstance(module, AVGPOOLS):
        return Op(path, "avgpool", (src,), copy.deepcopy(module), shape, tname)
    if isinstance(module, nn.MaxPool2d):
        if module.return_indices:
            raise UnsupportedLayerError(path, tname, "use return_indices=False")
        return Op(path, "maxpool", (src,), copy.deepcopy(module), shape, tname)
    if isinstance(module, (nn.Flatten, nn.Unflatten)):
        return Op(path, "reshape", (src,), copy.deepcopy(module), shape, tname)
    if isinstance(module, IDENTITIES):
        return Op(path, "identity", (src,), nn.Identity(), shape, tname)
    raise UnsupportedLayerError(path, tname, fix_for(tname))


# -- torch.fx front end ------------------------------------------------------------------
RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
DIV_FUNCTIONS = {operator.truediv, operator.itruediv, torch.div}
DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout}
POOL_FUNCTIONS = {F.avg_pool1d: nn.AvgPool1d, F.avg_pool2d: nn.AvgPool2d,
                  F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d, F.max_pool2d: nn.MaxPool2d}
RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze"}
IDENTITY_METHODS = {"contiguous", "clone", "detach"}


class _Tracer(fx.Tracer):
    """Keeps QCFS (and every torch.nn module) as one call."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, QCFS) or super().is_leaf_module(m, qualname)


def _where(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else ""


def _fn_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return str(node.target).rstrip("_")
    name = getattr(node.target, "__name__", str(node.target))
    return {"iadd": "add", "imul": "mul", "truediv": "div", "itruediv": "div"}.get(name, name).rstrip("_")


def _is_tensor(node) -> bool:
    return isinstance(node, fx.Node) and "tensor_meta" in node.meta and \
        hasattr(node.meta["tensor_meta"], "shape")


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape[1:])


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx`` capture of ``model``; a readable error when it cannot be traced."""
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises many types; the advice is the same
        raise TypeError(
            f"convert could not capture {type(model).__name__} with torch.fx: {type(e).__name__}: "
            f"{e}. Models whose forward branches on tensor values cannot be traced; export it "
            f"with torch.export.export(model, (x,)) and pass the ExportedProgram, or move the "
            f"data-dependent code out of forward.") from None
    return fx.GraphModule(model, graph, type(model).__name__)


def capture_fx(model: nn.Module, example: torch.Tensor) -> Graph:
    """The conversion graph of ``model`` traced with torch.fx, shapes from ``example``."""
    gm = trace(model)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise TypeError(f"convert supports models with one input tensor; {type(model).__name__}."
                        f"forward takes {len(placeholders)} ({', '.join(n.name for n in placeholders)}).")
    try:
        ShapeProp(gm).propagate(example)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"The calibration data do not fit the model: a batch of shape "
                         f"{list(example.shape)} fails in {type(model).__name__}.forward with "
                         f"{type(e).__name__}: {e}. Pass samples shaped like the model's input.") from None
    modules = dict(gm.named_modules())
    names = _Names()
    ops: list[Op] = []
    value: dict[fx.Node, str] = {}   # fx node -> op name producing its tensor
    output = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            value[node] = INPUT
        elif node.op == "output":
            output = _output_of(node, value, type(model).__name__)
        elif node.op == "get_attr":
            continue  # constants: an op that consumes one is refused below
        elif node.op == "call_module":
            module = modules[node.target]
            ins = _tensor_inputs(node, value)
            op = module_op(names.take(node.target), module, ins[0], _shape(node))
            ops.append(op)
            value[node] = op.name
        elif not _is_tensor(node):
            continue  # shape arithmetic (x.size(0), x.shape): view/reshape use measured shapes
        else:
            new = _function_ops(node, value, names)
            ops.extend(new)
            value[node] = new[-1].name
    return Graph(ops, output, tuple(example.shape[1:]))


def _output_of(node: fx.Node, value: dict, model_name: str) -> str:
    out = node.args[0]
    while isinstance(out, (tuple, list)) and len(out) == 1:
        out = out[0]
    if not isinstance(out, fx.Node) or out not in value:
        raise TypeError(f"convert supports models that return one tensor; {model_name}.forward "
                        f"returns {type(out).__name__}. Return only the logits.")
    return value[out]


def _tensor_inputs(node: fx.Node, value: dict) -> list[str]:
    ins = []
    for a in (*node.args, *node.kwargs.values()):
        for item in (a if isinstance(a, (list, tuple)) else [a]):
            if isinstance(item, fx.Node) and item.op == "get_attr":
                raise UnsupportedLayerError(
                    _where(node) or node.name, f"{_fn_name(node)} with tensor attribute "
                    f"{item.target!r}", "wrap the computation in a supported module (Conv2d, "
                    "Linear, BatchNorm) so convert can read its parameters")
            if _is_tensor(item) and item in value:
                ins.append(value[item])
    return ins


def _scalar_arg(node: fx.Node):
    nums = [a for a in node.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    return nums[0] if len(nums) == 1 and len(node.args) == 2 else None


def _function_ops(node: fx.Node, value: dict, names: _Names) -> list[Op]:
    """Ops for a call_function / call_method node (functional relu, add, cat, view...)."""
    fn = _fn_name(node)
    where = _where(node)
    name = f"{where}.{fn}" if where else fn
    target = node.target
    ins = _tensor_inputs(node, value)
    shape = _shape(node)
    method = node.op == "call_method"
    src = f"{'Tensor.' if method else ''}{fn}"

    def one(kind, module):
        return [Op(names.take(name), kind, (ins[0],), module, shape, src)]

    if (not method and target in RELU_FUNCTIONS) or (method and fn == "relu"):
        return one("relu", nn.ReLU())
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
        return [Op(names.take(name), "cat", tuple(ins), Concat(dim), shape, src)]
    if (not method and target in (torch.flatten,)) or (method and fn in RESHAPE_METHODS):
        return reshape_ops(names, name, ins[0], _shape(node.args[0]), shape, src)
    if (not method and target in DROPOUT_FUNCTIONS) or (method and fn in IDENTITY_METHODS):
        return one("identity", nn.Identity())
    if not method and target in POOL_FUNCTIONS:
        module = POOL_FUNCTIONS[target](*node.args[1:], **node.kwargs)
        kind = "maxpool" if isinstance(module, nn.MaxPool2d) else "avgpool"
        if kind == "maxpool" and module.return_indices:
            raise UnsupportedLayerError(name, src, "use return_indices=False")
        return one(kind, module)
    if (not method and target is torch.mean) or (method and fn == "mean"):
        return _mean_ops(node, names, name, ins[0], src)
    if (not method and (target in MUL_FUNCTIONS or target in DIV_FUNCTIONS)) or (
            method and fn in ("mul", "div")):
        c = _scalar_arg(node)
        div = (method and fn == "div") or (not method and target in DIV_FUNCTIONS)
        if div and not _is_tensor(node.args[0]):
            c = None  # constant / tensor is not linear
        if c is not None and len(ins) == 1 and c != 0:
            return one("scale", Scale(1.0 / c if div else float(c)))
        raise UnsupportedLayerError(name, src, "multiply activations only by constants; products "
                                    "of activations have no rate-coded equivalent",
                                    "It multiplies two tensors")
    raise UnsupportedLayerError(name, src, fix_for(fn))


def _mean_ops(node: fx.Node, names: _Names, name: str, src_name: str, src: str) -> list[Op]:
    args = list(node.args[1:])
    dims = node.kwargs.get("dim", args[0] if args else None)
    keep = node.kwargs.get("keepdim", args[1] if len(args) > 1 else False)
    s_in = _shape(node.args[0])
    ndim = len(s_in) + 1
    dims = tuple(sorted(d % ndim for d in ((dims,) if isinstance(dims, int) else (dims or ()))))
    if ndim != 4 or dims != (2, 3):
        raise UnsupportedLayerError(name, src, "average over the spatial dimensions only "
                                    "(x.mean((2, 3))), or use nn.AdaptiveAvgPool2d",
                                    f"It averages over dimensions {list(dims)} of a {ndim}-D tensor")
    if keep:
        return [Op(names.take(name), "avgpool", (src_name,), nn.AdaptiveAvgPool2d(1), _shape(node), src)]
    pool = Op(names.take(name + "_pool"), "avgpool", (src_name,), nn.AdaptiveAvgPool2d(1),
              (s_in[0], 1, 1), src)
    return [pool, Op(names.take(name), "reshape", (pool.name,), nn.Flatten(), _shape(node), src)]
