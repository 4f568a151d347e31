"""The dense layers' fast paths for no-gradient runs on the CPU, which both engines, the
conversion sweep and the path calibration take (:func:`apply_synaptic`):

* Pooling layers that tile an NCHW input (window = stride, no padding) run in a compiled
  kernel (or as sums of strided slices where it is not built), several times faster than
  ``avg_pool2d`` on CPU, in the same order of additions; on channels-last inputs torch's
  own pooling is the faster one.
* 2-D convolutions run on channels-last inputs (:func:`conv_channels_last`), oneDNN's native
  layout on the CPU, about twice as fast here; training's convolutions take the same path
  (:class:`snnedge.training.folding.ChannelsLastConv`).

The event-driven paths of the same layers are in :mod:`snnedge.events`.
"""
from __future__ import annotations

import torch
from torch import nn

from .events import is_channels_last, native_kernel
from .kernel_threads import run_split
from .layers import SumPool2d

# Below this many input values per thread, one thread pools them all.
POOL_MIN_WORK = 400_000


def tiling_pool(module: nn.Module, shape) -> tuple[int, int] | None:
    """The window ``(kh, kw)`` of an average or sum pool whose windows tile an input of
    ``shape`` exactly (stride = window, no padding, sizes divisible), else None."""
    if isinstance(module, nn.AvgPool2d):
        if module.divisor_override is not None:
            return None
    elif not isinstance(module, SumPool2d):
        return None
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    kernel, stride, padding = pair(module.kernel_size), pair(module.stride), pair(module.padding)
    if len(shape) != 4 or stride != kernel or padding != (0, 0):
        return None
    if shape[-2] % kernel[0] or shape[-1] % kernel[1]:
        return None
    return kernel


def pool_tiles(module: nn.Module, x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Average (or sum) pooling over tiling windows, the window's values added in row-major
    order as ``avg_pool2d`` does: in the compiled kernel for contiguous float CPU maps, else
    as a sum of strided slices."""
    kh, kw = kernel
    divisor = 1.0 if isinstance(module, SumPool2d) else float(kh * kw)
    kernel_module = native_kernel()
    if (kernel_module is not None and x.device.type == "cpu" and x.is_contiguous()
            and x.dtype in (torch.float32, torch.float64) and x.dim() == 4 and x.numel() > 0):
        # the compiled kernel: one pass, same order of additions
        n, c, h, w = x.shape
        out = torch.empty(n, c, h // kh, w // kw, dtype=x.dtype)
        planes = n * c
        threads = int(min(torch.get_num_threads(), planes, x.numel() // POOL_MIN_WORK))
        cut = [planes * i // max(threads, 1) for i in range(max(threads, 1) + 1)]
        run_split(kernel_module.pool, [(x.data_ptr(), out.data_ptr(), x.dtype == torch.float64, a, b,
                                        h, w, kh, kw, divisor) for a, b in zip(cut[:-1], cut[1:])])
        return out
    out = x[..., 0::kh, 0::kw].clone(memory_format=torch.contiguous_format)
    for i in range(kh):
        for j in range(kw):
            if i or j:
                out.add_(x[..., i::kh, j::kw])
    return out if isinstance(module, SumPool2d) else out.div_(kh * kw)


def apply_synaptic(module: nn.Module, *xs: torch.Tensor) -> torch.Tensor:
    """``module(*xs)`` with the fast paths of no-gradient runs: tiling pools on NCHW inputs in
    :func:`pool_tiles` (on channels-last inputs torch's own pooling is faster), and 2-D
    convolutions on channels-last inputs (oneDNN's native layout on CPU, about twice
    as fast here; the output stays channels-last, and the neurons and pools after it keep
    that layout)."""
    if len(xs) != 1 or torch.is_grad_enabled():
        return module(*xs)
    (x,) = xs
    kernel = tiling_pool(module, x.shape)
    if kernel is not None and not is_channels_last(x):  # torch's channels-last pooling is faster
        return pool_tiles(module, x, kernel)
    if isinstance(module, nn.Conv2d) and x.dim() == 4 and x.device.type == "cpu":
        return conv_channels_last(module, x)
    return module(x)


def conv_channels_last(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` on ``x`` ``(N, C, H, W)`` made channels-last (a copy only where it is not),
    the output channels-last too. torch picks the output's layout from the input's strides,
    which one input channel leaves ambiguous (an image input; oneDNN may then answer in
    NCHW): the output is made channels-last, so that the layers after it keep that layout."""
    y = conv(x.contiguous(memory_format=torch.channels_last))
    return y.contiguous(memory_format=torch.channels_last)


__all__ = ["apply_synaptic", "conv_channels_last", "pool_tiles", "tiling_pool", "POOL_MIN_WORK"]
