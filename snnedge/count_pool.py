r"""Max pooling of accumulated spike counts in the compiled kernel.

A spiking max pool that keeps the ANN's max (``converters.maxpool``, mode ``"count"``)
emits ``o[t] = max_k c_k[t] - max_k c_k[t-1]``, where ``c_k[t] = sum_{s<=t} x_k[s]`` is
what input ``k`` of the window has accumulated. As tensor code that is a running sum, a
``max_pool2d`` and a ``diff`` over every tick of a block: four passes over the block, each
allocating. :func:`native_count_max_pool` does it in one pass of the compiled kernel
(``count_max`` in ``_event_kernels.c``), with the same additions, maxima and differences,
so the values are equal bit for bit. It reads NCHW and channels-last maps (the engines keep
convolution outputs channels-last) and runs samples or channels on the kernel threads.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .events import NEURON_MIN_WORK, native_kernel
from .kernel_threads import run_split
from .geometry import Axis


def native_count_max_pool(current: torch.Tensor, acc: torch.Tensor, prev: torch.Tensor,
                          axes: Sequence[object], *, in_place: bool = False,
                          out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """One block of count max pooling: ``current`` ``(T, B, C, H, W)``, the running counts
    ``acc`` ``(B, C, H, W)`` and the last maxima ``prev`` ``(B, C, OH, OW)`` before it, and
    the windows ``axes`` (two :class:`snnedge.geometry.Axis`, rows then columns). Returns
    ``(out, acc, prev)``: the pooled output ``(T, B, C, OH, OW)`` (laid out as ``current``)
    and the new state: new tensors, or with ``in_place`` the given ones updated where their
    layout is ``current``'s. ``out``, when given with the output's shape, dtype and layout,
    is overwritten instead of allocating one. Returns None where the kernel does not apply:
    not built, gradients needed, not float32/float64 on the CPU, adaptive windows, or a
    layout other than NCHW or channels-last per tick."""
    kernel = native_kernel()
    if kernel is None or current.dim() != 5 or current.device.type != "cpu":
        return None
    if current.dtype not in (torch.float32, torch.float64) or acc.dtype != current.dtype \
            or prev.dtype != current.dtype:
        return None
    if torch.is_grad_enabled() and (current.requires_grad or acc.requires_grad or prev.requires_grad):
        return None
    if len(axes) != 2 or not all(type(a) is Axis for a in axes):
        return None
    ay, ax = axes
    steps, batch, channels, h, w = current.shape
    if (ay.size_in, ax.size_in) != (h, w) or acc.shape != current.shape[1:] \
            or prev.shape != (batch, channels, ay.size_out, ax.size_out) or current.numel() == 0:
        return None
    tick = current[0]
    # channels-last first: where both layouts hold (1 x 1 maps, one channel) the loops then
    # run over whole vectors of channels, not one channel at a time (GoogLeNet's 3 x 3 pools
    # on 832 channels of 1 x 1 at 32 px: 850 us per block of 32 ticks, one value per window)
    if tick.is_contiguous(memory_format=torch.channels_last):
        layout, samples, c = torch.channels_last, batch, channels
    elif tick.is_contiguous():
        layout, samples, c = torch.contiguous_format, batch * channels, 1
    else:
        return None
    x_step = current.stride(0) if steps > 1 else tick.numel()  # (one tick reads no stride)
    if x_step < tick.numel():
        return None
    if not (in_place and acc.is_contiguous(memory_format=layout) and acc.stride() == tick.stride()):
        acc = acc.clone(memory_format=layout)
    if not (in_place and prev.is_contiguous(memory_format=layout)):
        prev = prev.clone(memory_format=layout)
    shape = (steps, *prev.shape)
    strides = (prev.numel(), *prev.stride())
    if out is None or out.shape != shape or out.stride() != strides or out.dtype != current.dtype \
            or out.device.type != "cpu":
        out = torch.empty(shape, dtype=current.dtype).as_strided(shape, strides)
    geometry = (steps, x_step, out.stride(0), h, w, c, ay.size_out, ax.size_out,
                ay.kernel, ax.kernel, ay.stride, ax.stride, ay.pad_lo, ax.pad_lo,
                ay.dilation, ax.dilation)
    head = (current.data_ptr(), acc.data_ptr(), prev.data_ptr(), out.data_ptr(),
            current.dtype == torch.float64)
    threads = int(min(torch.get_num_threads(), current.numel() // NEURON_MIN_WORK))
    if threads < 2:
        parts = [(0, samples, 0, c)]
    elif samples >= threads:
        cut = [samples * i // threads for i in range(threads + 1)]
        parts = [(a, b, 0, c) for a, b in zip(cut[:-1], cut[1:])]
    else:  # one channels-last sample: channels in whole 64-byte lines per thread
        lane = 64 // current.element_size()
        cut = [min(c, (c * i // threads + lane - 1) // lane * lane) for i in range(threads)] + [c]
        parts = [(0, samples, a, b) for a, b in zip(cut[:-1], cut[1:]) if b > a]
    run_split(kernel.count_max, [(*head, *part, *geometry) for part in parts])
    return out, acc, prev


__all__ = ["native_count_max_pool"]
