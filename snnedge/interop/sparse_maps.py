"""Exact sparse matrices of snnedge's synaptic modules, for simulators that want synapse lists.

Every synaptic and weight-free module of a :class:`~snnedge.SpikingNetwork` is affine on one
sample. :func:`module_matrix` gives its linear part as a ``scipy.sparse`` matrix
``(out elements x in elements)`` over C-order flattened per-sample tensors; biases stay with
torch (see :func:`affine_maps`). Convolutions keep their padding (``"same"`` included),
stride, dilation and groups; pooling uses PyTorch's own window and divisor rules
(``ceil_mode`` and adaptive windows included), so a pooling layer folded into the next
layer's synapses gives the same numbers as running it. The windows come from
:mod:`snnedge.geometry`.

:func:`affine_maps` composes them through the graph: the input current of every neuron layer
(and of the readout) is ``sum_S A[S] @ z_S + c``, one sparse ``A[S]`` per spiking source
``S`` (neuron layers, and the input when it is spikes) and a static part ``c``.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..geometry import module_axes
from ..layers import Add, Concat, Narrow, Scale, SumPool2d
from ..layers import DROPOUTS, INPUT
from ..network import SpikingNetwork

IDENTITY_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity, *DROPOUTS)


class UnsupportedLayer(ValueError):
    """A layer that an exporter or simulator cannot express (the message names it)."""


def _numel(shape) -> int:
    return int(math.prod(shape))


def _conv_matrix(module, in_shape, out_shape, name: str) -> sp.csr_matrix:
    if module.padding_mode != "zeros":
        raise UnsupportedLayer(f"Layer {name!r} ({type(module).__name__}) uses padding_mode="
                               f"{module.padding_mode!r}; only zero padding has synapse lists. "
                               f"Pad the input explicitly or use padding_mode='zeros'.")
    w = module.weight.detach().to("cpu", torch.float64).numpy()
    c_out, c_in_g, *kernel = w.shape
    dims = len(kernel)
    axes = [a.taps() for a in module_axes(module, in_shape[1:], name)]
    groups = module.groups
    per_group = c_out // groups
    o_ch = np.arange(c_out).reshape(-1, 1)
    in_ch = (o_ch // per_group) * c_in_g + np.arange(c_in_g).reshape(1, -1)  # (c_out, c_in_g)
    if dims == 1:
        (oo, jj, ii), = axes
        rows = o_ch[:, :, None] * out_shape[1] + oo[None, None, :]
        cols = in_ch[:, :, None] * in_shape[1] + ii[None, None, :]
        vals = w[:, :, jj]
    else:
        (oy, ky, iy), (ox, kx, ix) = axes
        oh, ow = out_shape[1:]
        h, wd = in_shape[1:]
        rows = (o_ch[:, :, None, None] * (oh * ow) + oy[None, None, :, None] * ow
                + ox[None, None, None, :])
        cols = (in_ch[:, :, None, None] * (h * wd) + iy[None, None, :, None] * wd
                + ix[None, None, None, :])
        vals = w[:, :, ky[:, None], kx[None, :]]
    rows, cols, vals = (np.broadcast_to(a, vals.shape).reshape(-1) for a in (rows, cols, vals))
    keep = vals != 0  # a zero weight is no synapse (as in snnedge.connectivity.fanout)
    return sp.csr_matrix((vals[keep], (rows[keep], cols[keep])),
                         shape=(_numel(out_shape), _numel(in_shape)))


def _pool_matrix(axes, channels: int, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> sp.csr_matrix:
    """Average pooling over the trailing axes, per channel, with PyTorch's divisor per
    window: ``divisor_override``, else the window's size counting padding
    (``count_include_pad``) or not; adaptive windows have no padding (``divisor_override=1``:
    a sum pool)."""
    mat = None
    for axis in axes:
        oo, _, ii = axis.taps()
        if divisor_override:
            vals = np.full(len(oo), 1.0 / divisor_override) if mat is None else np.ones(len(oo))
        else:
            vals = 1.0 / (axis.padded_sizes() if count_include_pad else axis.fan_in())[oo]
        m = sp.csr_matrix((vals, (oo, ii)), shape=(axis.size_out, axis.size_in))
        mat = m if mat is None else sp.kron(mat, m, format="csr")
    return sp.kron(sp.identity(channels, format="csr"), mat, format="csr")


def module_matrix(module: nn.Module, in_shape, out_shape, name: str = "?") -> sp.csr_matrix:
    """The linear part of one single-input module as a sparse ``(out x in)`` matrix.

    Raises :class:`UnsupportedLayer` naming ``name`` for modules without an exact form.
    """
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    if isinstance(module, nn.Linear):
        w = module.weight.detach().to("cpu", torch.float64).numpy()
        m = sp.csr_matrix(w)
        m.eliminate_zeros()
        rest = _numel(in_shape[:-1])
        return m if rest == 1 else sp.kron(sp.identity(rest, format="csr"), m, format="csr")
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return _conv_matrix(module, in_shape, out_shape, name)
    if isinstance(module, IDENTITY_MODULES):
        return sp.identity(_numel(in_shape), format="csr")
    if isinstance(module, Scale):
        s = module.scale.detach().to("cpu", torch.float64)
        s = s if s.dim() == 0 else s.view(-1, *([1] * (len(in_shape) - 1)))
        return sp.diags(torch.broadcast_to(s, in_shape).reshape(-1).numpy(), format="csr")
    if isinstance(module, SumPool2d):
        return _pool_matrix(module_axes(module, in_shape[1:], name), in_shape[0],
                            divisor_override=1)
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)):
        return _pool_matrix(module_axes(module, in_shape[1:], name), in_shape[0],
                            module.count_include_pad, getattr(module, "divisor_override", None))
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        return _pool_matrix(module_axes(module, in_shape[1:], name), in_shape[0],
                            count_include_pad=False)
    if isinstance(module, (Narrow, nn.ChannelShuffle)):
        return _selection_matrix(module, in_shape, out_shape)
    raise UnsupportedLayer(f"Layer {name!r} is a {type(module).__name__}, which has no synapse "
                           f"list; supported: Linear, Conv1d, Conv2d, pooling, Flatten, Scale, "
                           f"Add, Concat, Narrow, ChannelShuffle, Identity, the dropouts.")


def _selection_matrix(module: nn.Module, in_shape, out_shape) -> sp.csr_matrix:
    """A module that only moves elements (a slice, a channel shuffle): run it on the elements'
    indices to learn where each output comes from."""
    index = torch.arange(_numel(in_shape), dtype=torch.float64).view(1, *in_shape)
    cols = module(index).reshape(-1).round().long().numpy()
    rows = np.arange(cols.size)
    return sp.csr_matrix((np.ones(cols.size), (rows, cols)),
                         shape=(_numel(out_shape), _numel(in_shape)))


def affine_maps(net: SpikingNetwork, input_shape, input_is_source: bool):
    """For every neuron layer's input and for the output: ``{source: sparse matrix}``.

    Sources are the neuron layers (their spikes) and, when ``input_is_source``, the network
    input. The static part (biases, and a direct-encoded input) is left to torch: it is the
    layer's value when every source is zero.

    Returns ``(maps, shapes, static)``: ``maps[name]`` for each temporal layer ``name`` and
    for ``net.output_name`` when the output is not temporal; ``shapes`` the per-sample
    shapes; ``static`` the layers that no spiking source reaches (constant over time).
    """
    shapes = dict(net.shapes(input_shape))
    shapes[INPUT] = tuple(input_shape)
    values: dict[str, dict[str, sp.csr_matrix]] = {
        INPUT: {INPUT: sp.identity(_numel(input_shape), format="csr")} if input_is_source else {}}
    # a neuron is a source wherever it is read, also by a layer listed before it (recurrent edges)
    values.update({n: {n: sp.identity(_numel(shapes[n]), format="csr")} for n in net.names
                   if net.kind(n) == "temporal"})
    for name in net.names:
        module = net.layer(name)
        ins = net.inputs_of(name)
        if net.kind(name) == "temporal":
            values[name] = {name: sp.identity(_numel(shapes[name]), format="csr")}
        elif isinstance(module, Add):
            acc: dict[str, sp.csr_matrix] = {}
            for i in ins:
                for s, m in values[i].items():
                    acc[s] = m if s not in acc else acc[s] + m
            values[name] = acc
        elif isinstance(module, Concat):
            values[name] = _concat(module, [values[i] for i in ins], [shapes[i] for i in ins],
                                   shapes, name)
        else:
            m = module_matrix(module, shapes[ins[0]], shapes[name], name)
            values[name] = {s: (m @ a).tocsr() for s, a in values[ins[0]].items()}
    sinks = {n: values[net.inputs_of(n)[0]] for n in net.names if net.kind(n) == "temporal"}
    if net.kind(net.output_name) != "temporal":
        sinks[net.output_name] = values[net.output_name]
    return sinks, shapes, {n for n, v in values.items() if not v}


def _concat(module: Concat, parts, part_shapes, shapes, name: str):
    dim = module.dim - 1 if module.dim > 0 else module.dim + len(part_shapes[0])
    if dim != 0:
        raise UnsupportedLayer(f"Layer {name!r} (Concat) joins along per-sample dimension {dim}; "
                               f"only channel concatenation (dim=1) has synapse lists here.")
    sources = {s for p in parts for s in p}
    out = {}
    for s in sources:
        n_src = next(p[s].shape[1] for p in parts if s in p)
        blocks = [p[s] if s in p else sp.csr_matrix((_numel(sh), n_src))
                  for p, sh in zip(parts, part_shapes)]
        out[s] = sp.vstack(blocks, format="csr")
    return out


@torch.no_grad()
def static_values(net: SpikingNetwork, x: torch.Tensor | None, input_shape, batch: int,
                  sinks, layers=()) -> dict[str, torch.Tensor]:
    """Each sink's input when every spiking source is zero: biases and, for a direct-encoded
    input ``x`` (``None`` when the input is spikes), the current it drives, computed by the
    network's own modules exactly as the dense engine computes its static currents. Also the
    output of each of ``layers``."""
    shapes = net.shapes(input_shape)
    ref = next(iter(net.parameters()), None)
    dtype = ref.dtype if ref is not None else torch.float64
    vals = {INPUT: x if x is not None else torch.zeros((batch, *input_shape), dtype=dtype)}
    vals.update({n: torch.zeros((batch, *shapes[n]), dtype=dtype) for n in net.names
                 if net.kind(n) == "temporal"})
    for name in net.names:
        if net.kind(name) == "temporal":
            vals[name] = torch.zeros((batch, *shapes[name]), dtype=dtype)
        else:
            vals[name] = net.layer(name)(*[vals[i] for i in net.inputs_of(name)])
    out = {s: (vals[net.inputs_of(s)[0]] if net.kind(s) == "temporal" else vals[s]) for s in sinks}
    return out | {n: vals[n] for n in layers}
