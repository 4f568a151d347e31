r"""Graph simplification before normalization: remove no-ops, fold BatchNorm.

A BatchNorm in eval mode is the per-channel affine map
``y = gamma * (x - mu) / sqrt(var + eps) + beta = a * x + c``. Right after a convolution or
linear layer whose output goes nowhere else it folds into that layer,
``W' = a * W`` (per output channel) and ``b' = a * b + c``, so the SNN has no extra layer.
Any other BatchNorm (after a pooling layer, on the input, after an addition) stays as a
per-channel :class:`snnedge.Scale`. Identity, Dropout (inactive in eval mode) and
``contiguous``/``clone`` calls are removed, and a channel shuffle written as reshapes around a
transpose becomes one ``nn.ChannelShuffle`` (:func:`converters.layouts.collapse_shuffles`).

A max pool applied to analog values right before a ReLU (``conv -> MaxPool2d -> ReLU``)
swaps places with it: ``relu(max(x)) = max(relu(x))`` for any non-decreasing activation, so
the neurons fire at full resolution and the max pool routes spikes as usual.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from snnedge.layers import Scale

from .graph import INPUT, Graph, Op
from .layouts import collapse_shuffles


def _rewire(ops: list[Op], output: str, old: str, new: str) -> tuple[list[Op], str]:
    ops = [replace(o, inputs=tuple(new if i == old else i for i in o.inputs)) for o in ops]
    return ops, (new if output == old else output)


def bn_as_scale(bn: nn.Module) -> Scale:
    """The eval-mode BatchNorm ``bn`` as ``Scale(a, c)`` (see the module docstring)."""
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(var)
    a = gamma / torch.sqrt(var + bn.eps)
    return Scale(a.float(), (beta - a * mean).float())


def fold_scale(weighted: nn.Module, scale: Scale) -> nn.Module:
    """A copy of ``weighted`` whose output is ``scale`` applied to the original output."""
    new = copy.deepcopy(weighted)
    out_ch = new.weight.shape[0]
    a = scale.scale.double()
    a = a.expand(out_ch) if a.dim() == 0 else a
    w = new.weight.detach().double() * a.view(-1, *([1] * (new.weight.dim() - 1)))
    if new.bias is not None:
        b = new.bias.detach().double()
    else:
        b = torch.zeros(out_ch, dtype=torch.float64, device=new.weight.device)
    b = b * a + (0 if scale.bias is None else scale.bias.double())
    dtype = new.weight.dtype
    with torch.no_grad():
        new.weight.copy_(w.to(dtype))
        new.bias = nn.Parameter(b.to(dtype=dtype, device=new.weight.device))
    return new


def _foldable(scale: Scale, op: Op) -> bool:
    out_ch = op.module.weight.shape[0]
    return scale.scale.dim() == 0 or scale.scale.numel() == out_ch


def simplify(graph: Graph) -> tuple[Graph, dict[str, str]]:
    """``(graph without no-ops and with BatchNorm folded, {folded layer: layer it went into})``."""
    ops, output = list(graph.ops), graph.output
    # No-ops first, so that conv -> Identity -> BN still folds.
    for o in [o for o in ops if o.kind == "identity"]:
        ops = [p for p in ops if p.name != o.name]
        ops, output = _rewire(ops, output, o.name, o.inputs[0])
    ops, output = collapse_shuffles(ops, output, graph.input_shape)
    ops = [replace(o, kind="scale", module=bn_as_scale(o.module)) if o.kind == "bn" else o for o in ops]
    folded: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for o in ops:
            if o.kind != "scale" or o.inputs[0] == INPUT:
                continue
            prev = next(p for p in ops if p.name == o.inputs[0])
            consumers = [c for c in ops if prev.name in c.inputs]
            if prev.kind != "weighted" or len(consumers) != 1 or prev.name == output \
                    or not _foldable(o.module, prev):
                continue
            merged = replace(prev, module=fold_scale(prev.module, o.module), shape=o.shape)
            ops = [merged if p.name == prev.name else p for p in ops if p.name != o.name]
            ops, output = _rewire(ops, output, o.name, prev.name)
            folded[o.name] = prev.name
            changed = True
            break
    ops, output = _activation_before_maxpool(ops, output)
    return Graph(ops, output, graph.input_shape), folded


def _activation_before_maxpool(ops: list[Op], output: str) -> tuple[list[Op], str]:
    spiking = {"relu", "qcfs", "maxpool"}
    kinds = {o.name: o.kind for o in ops}
    for pool in [o for o in ops if o.kind == "maxpool"]:
        src = pool.inputs[0]
        consumers = [c for c in ops if pool.name in c.inputs]
        if src == INPUT or kinds.get(src) in spiking or pool.name == output or len(consumers) != 1 \
                or consumers[0].kind not in ("relu", "qcfs"):
            continue
        act = consumers[0]
        in_shape = next(o.shape for o in ops if o.name == src)
        new_act = replace(act, inputs=(src,), shape=in_shape)
        new_pool = replace(pool, inputs=(act.name,), shape=act.shape)
        rest = [o for o in ops if o.name not in (pool.name, act.name)]
        rest = [replace(o, inputs=tuple(pool.name if i == act.name else i for i in o.inputs))
                for o in rest]
        at = next(i for i, o in enumerate(ops) if o.name == pool.name)
        ops = rest[:at] + [new_act, new_pool] + rest[at:]
        output = pool.name if output == act.name else output
        kinds = {o.name: o.kind for o in ops}
    return ops, output
