"""Operation counts of a conventional (ANN) forward pass: MACs, parameters, activations, traffic.

These are the quantities whose growth Xu et al. set against accelerators' performance and
memory energy (Nature Electronics 1:216, 2018, doi:10.1038/s41928-018-0059-3), and that
conventional baselines multiply by energy per MAC and per memory access.

Conventions (Sze et al., Proc. IEEE 105:2295, 2017, doi:10.1109/JPROC.2017.2761740, Sec. II;
the same as torchvision's ``Weights.meta["_ops"]``, which it states in GMACs):

- one multiply-accumulate (MAC) is one multiply and one add; bias adds are not MACs;
- ConvNd: ``MACs = out_elements * (in_channels / groups) * prod(kernel)``; stride, padding and
  dilation enter through ``out_elements``;
- ConvTransposeNd: ``MACs = in_elements * (out_channels / groups) * prod(kernel)``;
- Linear: ``MACs = out_elements * in_features`` (``out_features * in_features`` per sample);
- matmul / bmm / mm: ``MACs = out_elements * k`` with ``k`` the contracted dimension;
- "other ops" (not MACs): bias adds, BatchNorm (2 per element: scale and shift, once folded
  from mean, variance, gamma and beta), activation functions and elementwise arithmetic
  (1 per output element), max-pooling (``K - 1`` comparisons per output over a window of ``K``),
  average pooling (``K - 1`` adds and one scale per output), mean and sum (1 per input element);
- views (flatten, view, reshape, transpose, getitem, dropout and identity at inference) move
  no data: no ops, no activations, no traffic; concatenation copies its inputs (no ops).

Memory traffic assumes no fusion between layers: each layer reads its input activations and
writes its output once, and every weight is read once per forward pass (so once per batch of
``batch_size`` samples), each element taking ``precision_bits`` bits.
"""
from __future__ import annotations

import copy
import math
import numbers
import operator
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import check_positive_int
from .layers import DROPOUTS
from .ops_aten import aten_equivalent, aten_name

__all__ = ["LayerOps", "OpCount", "count_ops"]


@dataclass(frozen=True)
class LayerOps:
    """Counts of one call in the forward pass (a module call or a functional op).

    Attributes
    ----------
    name : str
        Module path (``"features.3"``) or, for a functional op, its torch.fx node name
        (``"add_1"``).
    op_type : str
        Module class name (``"Conv2d"``) or function / tensor method name (``"cat"``).
    output_shape : tuple
        Output shape including the batch dimension; a tuple of shapes for several outputs.
    macs, params, activations, other_ops : int
        MACs; parameters first read here (a shared module's parameters appear on its first
        call only); output elements written (0 for views); ops that are not MACs.
    """

    name: str
    op_type: str
    output_shape: tuple
    macs: int
    params: int
    activations: int
    other_ops: int


@dataclass(frozen=True)
class OpCount:
    """Operation counts of one forward pass over a batch of ``batch_size`` samples.

    Attributes
    ----------
    macs : int
        Multiply-accumulates.
    params : int
        All parameters of the model, shared ones once (``sum(p.numel() for p in
        model.parameters())``), whether or not the forward pass used them.
    activations : int
        Output elements written by all layers that produce new data.
    other_ops : int
        Operations that are not MACs (see the module docstring for what each layer adds).
    weight_bytes, activation_bytes, memory_bytes : int
        Memory traffic at ``precision_bits`` per element: weights read once, input
        activations read and outputs written once per layer; ``memory_bytes`` is their sum.
    per_layer : tuple of LayerOps
        One row per call, in execution order.
    input_shape : tuple of int
        Shape of one sample, without the batch dimension.
    batch_size, precision_bits : int
    method : str
        ``"fx"`` (torch.fx graph: modules and functional ops), ``"hooks"`` (forward hooks on
        leaf modules only, used when the model could not be traced) or ``"export"`` (the
        graph of a ``torch.export`` program).
    notes : tuple of str
        What the counts leave out or assume (folding BatchNorm, unsupported ops, hooks).
    """

    macs: int
    params: int
    activations: int
    other_ops: int
    weight_bytes: int
    activation_bytes: int
    memory_bytes: int
    per_layer: tuple[LayerOps, ...]
    input_shape: tuple[int, ...]
    batch_size: int
    precision_bits: int
    method: str
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values; ``per_layer`` becomes a list of dicts."""
        out = asdict(self)
        out["per_layer"] = [asdict(row) for row in self.per_layer]
        out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpCount:
        """The counts back from :meth:`to_dict` (lists read back as tuples), e.g. counts
        stored beside a converted network by ``snnedge convert``."""
        def tuples(v):
            return tuple(tuples(x) for x in v) if isinstance(v, (list, tuple)) else v

        rows = tuple(LayerOps(**{k: tuples(v) for k, v in row.items()})
                     for row in data["per_layer"])
        return cls(**{**{k: tuples(v) for k, v in data.items()}, "per_layer": rows})

    def table(self) -> str:
        """An aligned text table: one row per layer, then totals, traffic and notes."""
        header = ("layer", "type", "output shape", "MACs", "params", "activations", "other ops")
        rows = [(r.name, r.op_type, str(tuple(r.output_shape)), f"{r.macs:,}", f"{r.params:,}",
                 f"{r.activations:,}", f"{r.other_ops:,}") for r in self.per_layer]
        rows.append(("total", "", "", f"{self.macs:,}", f"{self.params:,}",
                     f"{self.activations:,}", f"{self.other_ops:,}"))
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(row: tuple[str, ...]) -> str:
            cells = [c.ljust(w) if i < 3 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(row, widths))]
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(header))
        text = [line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1]), "",
                f"memory traffic at {self.precision_bits} bits, batch {self.batch_size}: "
                f"weights {self.weight_bytes:,} B + activations {self.activation_bytes:,} B "
                f"= {self.memory_bytes:,} B"]
        text += [f"note: {n}" for n in self.notes]
        return "\n".join(text)


# Tables of what each op costs. Function objects are fx ``call_function`` targets, strings are
# Tensor method names (fx ``call_method`` targets).
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_ACTIVATION_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.Softmax, nn.LogSoftmax, nn.Threshold,
)
_VIEW_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity, *DROPOUTS)
# module or function -> (kind, spatial dims, adaptive)
_POOLS: dict[Any, tuple[str, int, bool]] = {
    nn.MaxPool1d: ("max", 1, False), nn.MaxPool2d: ("max", 2, False), nn.MaxPool3d: ("max", 3, False),
    nn.AvgPool1d: ("avg", 1, False), nn.AvgPool2d: ("avg", 2, False), nn.AvgPool3d: ("avg", 3, False),
    nn.AdaptiveMaxPool1d: ("max", 1, True), nn.AdaptiveMaxPool2d: ("max", 2, True),
    nn.AdaptiveMaxPool3d: ("max", 3, True), nn.AdaptiveAvgPool1d: ("avg", 1, True),
    nn.AdaptiveAvgPool2d: ("avg", 2, True), nn.AdaptiveAvgPool3d: ("avg", 3, True),
    F.max_pool1d: ("max", 1, False), F.max_pool2d: ("max", 2, False), F.max_pool3d: ("max", 3, False),
    F.avg_pool1d: ("avg", 1, False), F.avg_pool2d: ("avg", 2, False), F.avg_pool3d: ("avg", 3, False),
    F.adaptive_max_pool1d: ("max", 1, True), F.adaptive_max_pool2d: ("max", 2, True),
    F.adaptive_max_pool3d: ("max", 3, True), F.adaptive_avg_pool1d: ("avg", 1, True),
    F.adaptive_avg_pool2d: ("avg", 2, True), F.adaptive_avg_pool3d: ("avg", 3, True),
}
_ELEMENTWISE = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
    operator.truediv, operator.itruediv, operator.neg, torch.add, torch.sub, torch.mul, torch.div,
    torch.neg, torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.clamp, torch.softmax,
    F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid,
    F.hardtanh, F.sigmoid, F.tanh, F.softmax, F.log_softmax,
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "relu", "relu_",
    "sigmoid", "tanh", "clamp", "clamp_", "softmax",
}
_VIEWS = {
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose, torch.permute,
    torch.t, torch.chunk, torch.split, torch.narrow, operator.getitem, F.dropout,
    "view", "view_as", "reshape", "reshape_as", "flatten", "squeeze", "unsqueeze", "permute",
    "transpose", "t", "contiguous", "expand", "expand_as", "chunk", "split", "narrow", "to",
    "float", "type_as", "detach",
}
_COPIES = {torch.cat, torch.concat, torch.stack}
_MATMULS = {torch.matmul, operator.matmul, torch.mm, torch.bmm, "matmul", "mm", "bmm"}
_REDUCTIONS = {torch.mean, torch.sum, "mean", "sum"}
_FUNCTIONAL_CONVS = {F.conv1d, F.conv2d, F.conv3d}


def _tensors(obj: Any) -> list[torch.Tensor]:
    """The tensors inside ``obj`` (nested lists, tuples and dict values), in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _call_type(n: torch.fx.Node, module: nn.Module | None) -> str:
    """Module class name, or function / method name, of an fx node."""
    if module is not None:
        return type(module).__name__
    if isinstance(n.target, str):
        return n.target
    return aten_name(n.target) or getattr(n.target, "__name__", str(n.target))


def _pool_ops(kind: str, dims: int, adaptive: bool, kernel: Any, x: torch.Tensor,
              out: torch.Tensor) -> int:
    """Comparisons (max) or adds plus one scale (avg) of a pooling layer over all outputs."""
    if adaptive:
        # Adaptive bins span [floor(j*i/o), ceil((j+1)*i/o)); the window sizes multiply
        # across dimensions, so their total is a product of per-dimension sums.
        windows = out.numel() // math.prod(out.shape[-dims:])
        for i, o in zip(x.shape[-dims:], out.shape[-dims:]):
            windows *= sum(-(-(j + 1) * i // o) - (j * i) // o for j in range(o))
    else:
        k = kernel if isinstance(kernel, (tuple, list)) else (kernel,) * dims
        windows = out.numel() * math.prod(k)
    return windows - out.numel() if kind == "max" else windows


def _count_module(m: nn.Module, inputs: tuple, out: Any) -> tuple[int, int, str]:
    """``(macs, other_ops, kind)`` of a module call; kind is "op", "view" or "unknown"."""
    n_out = sum(t.numel() for t in _tensors(out))
    bias_adds = n_out if getattr(m, "bias", None) is not None else 0
    if isinstance(m, _CONVS):
        return n_out * math.prod(m.weight.shape[1:]), bias_adds, "op"
    if isinstance(m, _CONV_TRANSPOSES):
        return inputs[0].numel() * math.prod(m.weight.shape[1:]), bias_adds, "op"
    if isinstance(m, nn.Linear):
        return n_out * m.in_features, bias_adds, "op"
    if isinstance(m, _BATCHNORMS):
        return 0, 2 * n_out, "op"
    if type(m) in _POOLS:
        kernel = getattr(m, "kernel_size", None)
        return 0, _pool_ops(*_POOLS[type(m)], kernel, inputs[0], out), "op"
    if isinstance(m, _ACTIVATION_MODULES):
        return 0, n_out, "op"
    if isinstance(m, _VIEW_MODULES):
        return 0, 0, "view"
    return 0, 0, "unknown"


def _count_call(target: Any, args: tuple, kwargs: dict, out: Any) -> tuple[int, int, str]:
    """``(macs, other_ops, kind)`` of a functional op or tensor method call (an ATen
    operator of an exported program as its torch function, :mod:`snnedge.ops_aten`)."""
    target = aten_equivalent(target)
    n_out = sum(t.numel() for t in _tensors(out))
    if target in _VIEWS:
        return 0, 0, "view"
    if target in _ELEMENTWISE:
        return 0, n_out, "op"
    if target in _COPIES:
        return 0, 0, "op"
    if target in _MATMULS:
        return n_out * args[0].shape[-1], 0, "op"
    if target in _REDUCTIONS:
        return 0, args[0].numel(), "op"
    if target is F.linear or target in _FUNCTIONAL_CONVS:
        bias_adds = n_out if _arg(args, kwargs, 2, "bias") is not None else 0
        return n_out * math.prod(_arg(args, kwargs, 1, "weight").shape[1:]), bias_adds, "op"
    if target is F.batch_norm:
        return 0, 2 * n_out, "op"
    if target in _POOLS:
        kernel = _arg(args, kwargs, 1, "kernel_size")
        return 0, _pool_ops(*_POOLS[target], kernel, args[0], out), "op"
    return 0, 0, "unknown"


class _Tally:
    """Accumulates rows and activation reads as the forward pass runs."""

    def __init__(self, model: nn.Module) -> None:
        self.weights = {id(t) for t in [*model.parameters(), *model.buffers()]}
        self.seen_params: set[int] = set()
        self.rows: list[LayerOps] = []
        self.reads = 0
        self.unknown: list[str] = []
        self.batchnorms: list[str] = []

    def record(self, name: str, op_type: str, counted: tuple[int, int, str], inputs: Any,
               out: Any, module: nn.Module | None = None) -> None:
        outs = _tensors(out)
        if not outs:  # shape arithmetic (x.size(1), x.shape[0] + 1): no data
            return
        macs, other_ops, kind = counted
        tensors_in = _tensors(inputs)
        used = list(module.parameters()) if module is not None else tensors_in
        new = {id(p): p for p in used
               if isinstance(p, nn.Parameter) and id(p) not in self.seen_params}
        self.seen_params.update(new)
        activations = 0 if kind == "view" else sum(t.numel() for t in outs)
        if kind != "view":
            self.reads += sum(t.numel() for t in tensors_in if id(t) not in self.weights)
        if kind == "unknown":
            self.unknown.append(f"{name} ({op_type})")
        if op_type.startswith("BatchNorm") or op_type == "batch_norm":
            self.batchnorms.append(name)
        shapes = tuple(tuple(t.shape) for t in outs)
        self.rows.append(LayerOps(name, op_type, shapes[0] if len(shapes) == 1 else shapes, macs,
                                  sum(p.numel() for p in new.values()), activations, other_ops))


class _RunError(Exception):
    """The forward pass failed; ``layer`` names the call that raised, if known."""

    def __init__(self, layer: str | None, cause: BaseException) -> None:
        super().__init__(layer, cause)
        self.layer, self.cause = layer, cause


class _FxRecorder(torch.fx.Interpreter):
    """Runs a traced graph node by node and tallies every call."""

    def __init__(self, gm: torch.fx.GraphModule, tally: _Tally, module_paths: bool = False) -> None:
        super().__init__(gm)
        self.tally = tally
        self.module_paths = module_paths

    def run_node(self, n: torch.fx.Node) -> Any:
        module = self.fetch_attr(n.target) if n.op == "call_module" else None
        name = n.target if module is not None else n.name
        stack = n.meta.get("nn_module_stack") if self.module_paths else None
        if stack and next(reversed(stack.values()))[0]:  # an exported call: its module's path
            name = next(reversed(stack.values()))[0]
        try:
            out = super().run_node(n)
        except Exception as exc:
            raise _RunError(f"{name!r} ({_call_type(n, module)})", exc) from exc
        if n.op not in ("call_module", "call_function", "call_method"):
            return out
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        if module is not None:
            counted = _count_module(module, args, out)
        else:
            counted = _count_call(n.target, args, kwargs, out)
        self.tally.record(name, _call_type(n, module), counted, (args, kwargs), out, module)
        return out


def _run_with_hooks(model: nn.Module, x: torch.Tensor, tally: _Tally) -> None:
    """Forward pass with hooks on the leaf modules of ``model`` (a copy: hooks are removed)."""
    current: list[str | None] = [None]
    handles = []
    for name, m in model.named_modules():
        if next(m.children(), None) is not None:
            continue
        label = name or type(m).__name__

        def before(mod, inputs, label=label):
            current[0] = f"{label!r} ({type(mod).__name__})"

        def after(mod, inputs, out, label=label):
            counted = _count_module(mod, inputs, out)
            tally.record(label, type(mod).__name__, counted, inputs, out, mod)
            current[0] = None

        handles += [m.register_forward_pre_hook(before), m.register_forward_hook(after)]
    try:
        model(x)
    except Exception as exc:
        raise _RunError(current[0], exc) from exc
    finally:
        for h in handles:
            h.remove()


def _tally_forward(model: nn.Module, x: torch.Tensor, exported: bool = False
                   ) -> tuple[_Tally, str, str | None]:
    """Run ``model`` (a copy in eval mode) on ``x``; returns tally, method, trace error. An
    ``exported`` program's module is a graph already: it runs as it is, rows named by the
    module paths its calls came from."""
    tally = _Tally(model)
    if exported:
        _FxRecorder(model, tally, module_paths=True).run(x)
        return tally, "export", None
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # untraceable Python control flow: fall back to hooks
        _run_with_hooks(model, x, tally)
        return tally, "hooks", _first_line(exc)
    _FxRecorder(gm, tally).run(x)
    return tally, "fx", None


def _exported_batch(program) -> int | None:
    """The batch size an exported program is fixed to (``None`` when it is dynamic)."""
    user = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            batch = val.shape[0] if isinstance(val, torch.Tensor) and val.dim() else None
            return batch if isinstance(batch, int) else None
    return None


def _rescaled(rows: tuple[LayerOps, ...], old: int, new: int) -> tuple[LayerOps, ...]:
    """Rows counted at batch ``old`` as at batch ``new``: every count but the parameters is
    per sample (an inference mixes no samples), so it scales exactly."""
    def shape(s):
        return tuple(shape(t) for t in s) if s and isinstance(s[0], tuple) else (new, *s[1:])

    return tuple(replace(r, output_shape=shape(r.output_shape), macs=r.macs * new // old,
                         activations=r.activations * new // old,
                         other_ops=r.other_ops * new // old) for r in rows)


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    ok = isinstance(input_shape, (tuple, list)) and len(input_shape) > 0 and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in input_shape)
    if not ok:
        raise ValueError(
            "The 'input_shape' parameter of count_ops must be a tuple of positive ints giving "
            "one sample's shape without the batch dimension, like (1, 28, 28). "
            f"Got {input_shape!r} instead.")
    return tuple(int(d) for d in input_shape)


def count_ops(model: nn.Module, input_shape: tuple[int, ...], precision_bits: int = 32,
              batch_size: int = 1) -> OpCount:
    """Count MACs, parameters, activations and memory traffic of one forward pass.

    The model is traced with ``torch.fx.symbolic_trace`` and run on a zero input of shape
    ``(batch_size, *input_shape)`` (on the meta device when it can, so no arithmetic is done),
    recording every module call and functional op. A model that cannot be traced is run with
    forward hooks on its leaf modules instead, and the result says that functional ops were
    not seen. The counting rules are in this module's docstring (Sze et al., Proc. IEEE
    105:2295, 2017, doi:10.1109/JPROC.2017.2761740).

    Parameters
    ----------
    model : torch.nn.Module or torch.export.ExportedProgram
        Any module; it is not changed (the count runs on a deep copy in eval mode). A
        ``torch.export`` program (a ``.pt2`` file read by ``torch.export.load``) counts as
        the model it was exported from (its ATen calls read as torch functions,
        :mod:`snnedge.ops_aten`; rows named by module paths); one exported with a fixed
        batch runs at that batch, and the counts are rescaled to ``batch_size``, exactly
        (every count but the weights' is the same for each sample of an inference).
    input_shape : tuple of int
        One sample's shape without the batch dimension, e.g. ``(1, 28, 28)``.
    precision_bits : int, default 32
        Bits per weight and per activation for the memory traffic.
    batch_size : int, default 1
        Samples per forward pass: MACs, activations and activation traffic grow with it,
        weight traffic does not (weights are read once per pass).

    Returns
    -------
    OpCount
        Totals and one row per call; ``weight_bytes = ceil(params * precision_bits / 8)``,
        ``activation_bytes = ceil((elements read + elements written) * precision_bits / 8)``.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module`` or cannot be deep-copied.
    ValueError
        If ``input_shape``, ``precision_bits`` or ``batch_size`` is invalid, or the model
        fails on that input shape (the message names the layer that failed).

    Examples
    --------
    >>> from torch import nn
    >>> ops = count_ops(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), input_shape=(1, 28, 28))
    >>> ops.macs, ops.params, ops.other_ops  # 784 * 10 MACs, 7840 + 10 params, 10 bias adds
    (7840, 7850, 10)
    """
    exported = isinstance(model, torch.export.ExportedProgram)
    if not (exported or isinstance(model, nn.Module)):
        raise TypeError("The 'model' parameter of count_ops must be a torch.nn.Module. "
                        f"Got {type(model).__name__} instead. (A torch.export.ExportedProgram, "
                        "from torch.export.export or torch.export.load, is counted too.)")
    shape = _check_input_shape(input_shape)
    check_positive_int(precision_bits, param="precision_bits", where="count_ops")
    check_positive_int(batch_size, param="batch_size", where="count_ops")
    run_batch = batch_size
    if exported:
        run_batch = _exported_batch(model) or batch_size
        model = model.module()
    first = next(iter(model.parameters()), None)
    floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
    dtype = floats[0] if floats else torch.get_default_dtype()
    device = first.device if first is not None else torch.device("cpu")

    notes: list[str] = []
    failure: _RunError | None = None
    for on_meta in (True, False):  # meta first (no arithmetic), real zeros if an op needs values
        try:
            with warnings.catch_warnings():  # copying an exported module's pytree specs
                warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
                work = copy.deepcopy(model).eval()
        except Exception as exc:
            raise TypeError("count_ops works on a deep copy of the model so as not to change it, "
                            f"and copy.deepcopy failed: {type(exc).__name__}: {exc}") from exc
        if on_meta:
            work = work.to("meta")
        x = torch.zeros((run_batch, *shape), dtype=dtype, device="meta" if on_meta else device)
        try:
            with torch.no_grad():
                tally, method, trace_error = _tally_forward(work, x, exported)
            break
        except _RunError as err:
            failure = err
    else:
        where = f" at layer {failure.layer}" if failure.layer else ""
        raise ValueError(
            f"count_ops could not run the model on input_shape {shape} (input tensor "
            f"{(run_batch, *shape)}): it failed{where} with {_first_line(failure.cause)}. "
            "input_shape is one sample's shape without the batch dimension, like (1, 28, 28); "
            "check that it matches what the model expects.") from failure.cause
    if not on_meta:
        notes.append("the model could not run on the meta device, so it ran on an all-zero "
                     "input: value-dependent control flow followed that input's path.")
    if method == "hooks":
        notes.append(f"torch.fx could not trace the model ({trace_error}); counted with forward "
                     "hooks on leaf modules, so functional ops (F.relu, x + y, torch.cat, "
                     "matmul, ...) were not seen and are missing from the counts.")
    if tally.batchnorms:
        names = ", ".join(tally.batchnorms[:3]) + (", ..." if len(tally.batchnorms) > 3 else "")
        notes.append(f"{len(tally.batchnorms)} BatchNorm layer(s) ({names}) counted as 2 ops per "
                     "element (scale, shift); at inference they fold into the preceding "
                     "convolution's weights and bias, and those ops disappear.")
    if tally.unknown:
        notes.append("ops not counted (unsupported op types; their outputs are counted as "
                     f"activations): {', '.join(tally.unknown)}.")

    def to_bytes(elements: int) -> int:
        return -(-elements * precision_bits // 8)

    rows = tuple(tally.rows)
    if run_batch != batch_size:
        rows = _rescaled(rows, run_batch, batch_size)
        tally.reads = tally.reads * batch_size // run_batch
        notes.append(f"the exported program takes batches of {run_batch} only: counted at that "
                     f"batch and rescaled to {batch_size} (weights read once per pass)")
    params = sum(p.numel() for p in model.parameters())
    activations = sum(r.activations for r in rows)
    weight_bytes = to_bytes(params)
    activation_bytes = to_bytes(tally.reads + activations)
    return OpCount(
        macs=sum(r.macs for r in rows), params=params, activations=activations,
        other_ops=sum(r.other_ops for r in rows), weight_bytes=weight_bytes,
        activation_bytes=activation_bytes, memory_bytes=weight_bytes + activation_bytes,
        per_layer=rows, input_shape=shape, batch_size=batch_size, precision_bits=precision_bits,
        method=method, notes=tuple(notes))
