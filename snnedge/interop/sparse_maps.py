"""Exact sparse matrices of snnedge's synaptic modules, for simulators that want synapse lists.

Every synaptic and weight-free module of a :class:`~snnedge.SpikingNetwork` is affine on one
sample. :func:`module_matrix` gives its linear part as a ``scipy.sparse`` matrix
``(out elements x in elements)`` over C-order flattened per-sample tensors; biases stay with
torch (see :func:`affine_maps`). Convolutions keep their padding, stride, dilation and groups;
pooling uses PyTorch's own window and divisor rules, so a pooling layer folded into the next
layer's synapses gives the same numbers as running it.

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

from ..layers import Add, Concat, Scale, SumPool2d
from ..layers import INPUT
from ..network import SpikingNetwork

IDENTITY_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)


class UnsupportedLayer(ValueError):
    """A layer that an exporter or simulator cannot express (the message names it)."""


def _numel(shape) -> int:
    return int(math.prod(shape))


def _pair(v, n: int = 2) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _conv_axis(n_in: int, n_out: int, k: int, stride: int, pad: int, dil: int):
    """Valid ``(out index, tap, in index)`` triples along one axis of a convolution."""
    o = np.arange(n_out).reshape(-1, 1)
    j = np.arange(k).reshape(1, -1)
    i = o * stride - pad + j * dil
    ok = (i >= 0) & (i < n_in)
    oo, jj = np.nonzero(ok)
    return oo, jj, i[oo, jj]


def _conv_matrix(module, in_shape, out_shape, name: str) -> sp.csr_matrix:
    if module.padding_mode != "zeros":
        raise UnsupportedLayer(f"Layer {name!r} ({type(module).__name__}) uses padding_mode="
                               f"{module.padding_mode!r}; only zero padding has synapse lists. "
                               f"Pad the input explicitly or use padding_mode='zeros'.")
    w = module.weight.detach().to("cpu", torch.float64).numpy()
    c_out, c_in_g, *kernel = w.shape
    dims = len(kernel)
    pads = module.padding
    if isinstance(pads, str):  # 'valid' or 'same' (torch puts an odd extra pad at the end)
        pads = tuple(0 if pads == "valid" else d * (k - 1) // 2
                     for k, d in zip(kernel, module.dilation))
    axes = [_conv_axis(n_i, n_o, k, s, p, d) for n_i, n_o, k, s, p, d in zip(
        in_shape[1:], out_shape[1:], kernel, module.stride, pads, module.dilation)]
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


def _pool_axis(n_in: int, n_out: int, k: int, s: int, p: int):
    """PyTorch's average-pool windows along one axis: ``(out, in)`` pairs, the window size
    counting padding (clipped to the padded input) and the window size without padding."""
    o = np.arange(n_out)
    start = o * s - p
    end = np.minimum(start + k, n_in + p)
    padded = end - start
    lo, hi = np.maximum(start, 0), np.minimum(end, n_in)
    pairs = [(a, b) for a in range(n_out) for b in range(lo[a], hi[a])]
    oo, ii = (np.array(v, dtype=np.int64) for v in zip(*pairs)) if pairs else (np.zeros(0, int),) * 2
    return oo, ii, padded, hi - lo


def _avgpool_matrix(kernel, stride, padding, in_shape, out_shape, count_include_pad=True,
                    divisor_override=None) -> sp.csr_matrix:
    """Average pooling over the trailing axes, per channel (``divisor_override=1``: sum)."""
    spatial_in, spatial_out = in_shape[1:], out_shape[1:]
    per_axis = []
    for n_i, n_o, k, s, p in zip(spatial_in, spatial_out, kernel, stride, padding):
        oo, ii, padded, valid = _pool_axis(n_i, n_o, k, s, p)
        per_axis.append((oo, ii, padded, valid))
    mat = None
    for (oo, ii, padded, valid), n_i, n_o in zip(per_axis, spatial_in, spatial_out):
        if divisor_override:
            vals = np.ones(len(oo))
        else:
            vals = 1.0 / (padded if count_include_pad else valid)[oo]
        m = sp.csr_matrix((vals, (oo, ii)), shape=(n_o, n_i))
        mat = m if mat is None else sp.kron(mat, m, format="csr")
    if divisor_override:
        mat = mat / float(divisor_override)
    return sp.kron(sp.identity(in_shape[0], format="csr"), mat, format="csr")


def _adaptive_matrix(output_size, in_shape, out_shape) -> sp.csr_matrix:
    mat = None
    for n_i, n_o in zip(in_shape[1:], out_shape[1:]):
        pairs, vals = [], []
        for a in range(n_o):
            lo, hi = (a * n_i) // n_o, math.ceil((a + 1) * n_i / n_o)
            pairs += [(a, b) for b in range(lo, hi)]
            vals += [1.0 / (hi - lo)] * (hi - lo)
        oo, ii = zip(*pairs)
        m = sp.csr_matrix((vals, (oo, ii)), shape=(n_o, n_i))
        mat = m if mat is None else sp.kron(mat, m, format="csr")
    return sp.kron(sp.identity(in_shape[0], format="csr"), mat, format="csr")


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
        return _avgpool_matrix(_pair(module.kernel_size), _pair(module.stride), _pair(module.padding),
                               in_shape, out_shape, divisor_override=1)
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)):
        n = 1 if isinstance(module, nn.AvgPool1d) else 2
        if module.ceil_mode:
            # PyTorch drops a ceil-mode window that would start in the right padding; the
            # window rules above follow the floor mode only.
            raise UnsupportedLayer(f"Layer {name!r} ({type(module).__name__}) uses ceil_mode=True, "
                                   f"which has no synapse list here; use ceil_mode=False.")
        return _avgpool_matrix(_pair(module.kernel_size, n), _pair(module.stride, n),
                               _pair(module.padding, n), in_shape, out_shape,
                               module.count_include_pad, getattr(module, "divisor_override", None))
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return _adaptive_matrix(module.output_size, in_shape, out_shape)
    raise UnsupportedLayer(f"Layer {name!r} is a {type(module).__name__}, which has no synapse "
                           f"list; supported: Linear, Conv1d, Conv2d, pooling, Flatten, Scale, "
                           f"Add, Concat, Identity, Dropout.")


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
    for name in net.names:
        if net.kind(name) == "temporal":
            vals[name] = torch.zeros((batch, *shapes[name]), dtype=dtype)
        else:
            vals[name] = net.layer(name)(*[vals[i] for i in net.inputs_of(name)])
    out = {s: (vals[net.inputs_of(s)[0]] if net.kind(s) == "temporal" else vals[s]) for s in sinks}
    return out | {n: vals[n] for n in layers}
