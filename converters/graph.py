"""Graph capture with torch.fx: an ``nn.Module`` as a :class:`~converters.ir.Graph` of ops.

Every ANN becomes a :class:`Graph` of :class:`Op` s (:mod:`converters.ir`: names are the
ANN's module paths, ``features.3``, or for a function called inside a module's ``forward``
that module's path and the function, ``layer1.0.add``). This module holds the fx front end:
:func:`trace`, :func:`capture_fx` and the rules for module calls (:func:`module_op`); calls
of functions and methods are in :mod:`converters.fx_calls`. The other front end is
:func:`converters.export.capture_export` (a ``torch.export.ExportedProgram``).

Bad input fails here with one clear error each, naming where and the fix: an untraceable
``forward`` (data-dependent control flow: the module being traced is named), calibration
samples of the wrong shape (the layer that cannot take them is named), and modules with no
spiking equivalent (:class:`~converters.errors.UnsupportedLayerError` with the module path
and type; types known to be unsupported, such as torchvision's ``LayerNorm2d`` or
``SqueezeExcitation``, are kept whole so that the error names them and not a function
inside them).
"""
from __future__ import annotations

import copy

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from snnedge.layers import DROPOUTS

from .errors import FIXES, UnsupportedLayerError, fix_for
from .fx_calls import fn_name, function_ops, is_tensor, shape_of, tensor_inputs, where
from .ir import INPUT, KINDS, Graph, Names, Op, clipped_relu, reshape_ops
from .qcfs import QCFS

__all__ = ["INPUT", "KINDS", "Graph", "Op", "Names", "reshape_ops", "module_op", "trace",
           "capture_fx", "LEAF_TYPES"]
_Names = Names  # the name earlier code imports

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
AVGPOOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
MAXPOOLS = (nn.MaxPool2d, nn.AdaptiveMaxPool2d)
IDENTITIES = (nn.Identity, *DROPOUTS)
LEAF_TYPES = (*WEIGHTED, *BATCHNORMS, nn.ReLU, nn.ReLU6, nn.Hardtanh, QCFS, *AVGPOOLS, *MAXPOOLS,
              nn.Flatten, nn.Unflatten, nn.ChannelShuffle, *IDENTITIES)


def read_only_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters and buffers share the ANN's storage, detached from
    it: nothing in conversion writes to an op's weights (folding and normalization build their
    own copies), so the graph needs no second copy of them (on VGG-16 that copy is 0.55 GB).
    Each parameter keeps its ``requires_grad``, which the spiking network's copies inherit
    (a converted network is fine-tuned with :func:`snnedge.fit`)."""
    memo: dict[int, torch.Tensor] = {}
    for t in module.parameters():
        memo[id(t)] = nn.Parameter(t.detach(), requires_grad=t.requires_grad)
    for t in module.buffers():
        memo[id(t)] = t.detach()
    return copy.deepcopy(module, memo)


def module_op(path: str, module: nn.Module, src: str, shape: tuple) -> Op:
    """The op for a call of ANN module ``module`` at ``path`` (a private copy)."""
    tname = type(module).__name__
    if isinstance(module, WEIGHTED):
        if getattr(module, "padding_mode", "zeros") != "zeros":
            raise UnsupportedLayerError(path, tname, "use padding_mode='zeros'",
                                        f"It pads with padding_mode={module.padding_mode!r}")
        return Op(path, "weighted", (src,), read_only_copy(module), shape, tname)
    if isinstance(module, BATCHNORMS):
        if module.running_mean is None or module.running_var is None:
            raise UnsupportedLayerError(path, tname, "build the BatchNorm with "
                                        "track_running_stats=True and train it",
                                        "It keeps no running statistics to fold")
        return Op(path, "bn", (src,), read_only_copy(module), shape, tname)
    if type(module) is nn.ReLU:
        return Op(path, "relu", (src,), nn.ReLU(), shape, tname)
    if isinstance(module, nn.Hardtanh):  # ReLU6 is a Hardtanh(0, 6)
        return clipped_relu(path, src, shape, tname, module.min_val, module.max_val)
    if isinstance(module, QCFS):
        return Op(path, "qcfs", (src,), copy.deepcopy(module), shape, tname)
    if isinstance(module, AVGPOOLS):
        return Op(path, "avgpool", (src,), copy.deepcopy(module), shape, tname)
    if isinstance(module, MAXPOOLS):
        if module.return_indices:
            raise UnsupportedLayerError(path, tname, "use return_indices=False")
        return Op(path, "maxpool", (src,), copy.deepcopy(module), shape, tname)
    if isinstance(module, nn.ChannelShuffle):
        return Op(path, "shuffle", (src,), copy.deepcopy(module), shape, tname)
    if isinstance(module, (nn.Flatten, nn.Unflatten)):
        return Op(path, "reshape", (src,), copy.deepcopy(module), shape, tname)
    if isinstance(module, IDENTITIES):
        return Op(path, "identity", (src,), nn.Identity(), shape, tname)
    raise UnsupportedLayerError(path, tname, fix_for(_unsupported_type(module) or tname))


def _unsupported_type(m: nn.Module) -> str | None:
    """The name under which an unsupported module is known (``LayerNorm2d`` is a LayerNorm;
    torchvision's ``SqueezeExcitation`` gates channels with a sigmoid), else None."""
    for cls in type(m).__mro__:
        if cls.__name__ in FIXES:
            return cls.__name__
    return None


class _Tracer(fx.Tracer):
    """Keeps QCFS (and every torch.nn module) as one call, and also any module of a type
    that has no spiking equivalent (so the error names it, not a function inside it).
    Records the path of the innermost module being traced when tracing fails."""

    failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, QCFS) or _unsupported_type(m) is not None or \
            super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                path = self.path_of_module(m)
                self.failed_in = f"the forward of module {path!r} ({type(m).__name__})" if path \
                    else f"{type(m).__name__}.forward"
            raise


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx`` capture of ``model``; a readable error when it cannot be traced."""
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises many types; the advice is the same
        at = tracer.failed_in or f"{type(model).__name__}.forward"
        raise TypeError(
            f"convert could not capture {type(model).__name__} with torch.fx: tracing fails in "
            f"{at} with {type(e).__name__}: {e}. Models whose forward "
            f"branches on tensor values (if x.sum() > 0, loops over x.shape of data) cannot be "
            f"traced. Fix: compute the branch with tensor operations (torch.where), or move "
            f"the data-dependent code out of forward; a model that torch.export.export(model, "
            f"(x,)) accepts may be passed as the ExportedProgram.") from None
    return fx.GraphModule(model, graph, type(model).__name__)


class _ShapeProp(ShapeProp):
    """ShapeProp that remembers the node it failed on."""

    failed: fx.Node | None = None

    def run_node(self, n: fx.Node):
        try:
            return super().run_node(n)
        except Exception:
            if self.failed is None:
                self.failed = n
            raise


def _node_path(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    at = where(node)
    return f"{at}.{fn_name(node)}" if at else fn_name(node)


def capture_fx(model: nn.Module, example: torch.Tensor) -> Graph:
    """The conversion graph of ``model`` traced with torch.fx, shapes from ``example``."""
    gm = trace(model)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise TypeError(f"convert supports models with one input tensor; {type(model).__name__}."
                        f"forward takes {len(placeholders)} ({', '.join(n.name for n in placeholders)}).")
    prop = _ShapeProp(gm)
    try:
        prop.propagate(example)
    except Exception as e:  # noqa: BLE001
        at = f"layer {_node_path(prop.failed)!r}" if prop.failed is not None else \
            f"{type(model).__name__}.forward"
        first = next((n for n in gm.graph.nodes if n.op == "call_module"), None)
        hint = ""
        if first is not None and first is prop.failed:
            m = gm.get_submodule(first.target)
            expects = getattr(m, "in_channels", getattr(m, "in_features", None))
            if expects is not None:
                hint = f" Its first layer {first.target!r} ({type(m).__name__}) takes {expects} " \
                       f"{'channels' if hasattr(m, 'in_channels') else 'features'}."
        cause = e.__cause__ or e  # ShapeProp wraps the module's own error
        what = str(cause).strip().splitlines()[0].rstrip(".") if str(cause).strip() else ""
        raise ValueError(f"The calibration data do not fit the model: a batch of shape "
                         f"{list(example.shape)} fails in {at} with {type(cause).__name__}: "
                         f"{what}.{hint} Fix: pass samples shaped like the model's input, "
                         f"[N, *input shape].") from None
    modules = dict(gm.named_modules())
    names = Names()
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
            ins = tensor_inputs(node, value)
            op = module_op(names.take(node.target), module, ins[0], shape_of(node))
            ops.append(op)
            value[node] = op.name
        elif not is_tensor(node):
            continue  # shape arithmetic (x.size(0), x.shape): view/reshape use measured shapes
        else:
            new = function_ops(node, value, names)
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


