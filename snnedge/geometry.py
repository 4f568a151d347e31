"""Windows of convolutions and pools, one axis at a time, by PyTorch's own rules.

The window computations of the synaptic-event counts (:mod:`snnedge.connectivity`), the
event-driven convolution (:mod:`snnedge.events`), the synapse lists of the brian2 engine
(:mod:`snnedge.interop.sparse_maps`) and the mappers' structural maps
(``neuromorphic_targets.graph``) all come from here. Pure functions over integers and numpy
arrays; modules are read by their attributes only (``kernel_size``, ``stride``, ``padding``,
``dilation``, ``ceil_mode``, ``output_size``), so any layer that carries them works.

Along one axis of size ``n`` with kernel ``k``, stride ``s``, dilation ``d`` and padding
``p_lo`` before / ``p_hi`` after the input, output ``o`` reads through tap ``j`` the input

    i(o, j) = o * s - p_lo + j * d,     j = 0 .. k - 1,

and the tap is *valid* when ``0 <= i < n`` (the others read padding). The output size is

    convolution:  n_out = floor((n + p_lo + p_hi - d (k - 1) - 1) / s) + 1
    pooling:      the same with ceil instead of floor when ``ceil_mode``, minus one when the
                  last window would then start at ``i >= n``, in the right padding (a window
                  must start inside the input or the left padding: ATen's
                  ``pooling_output_shape_pad_lr``).

``padding="same"`` pads ``d (k - 1)`` in all, ``floor`` of half of it before the input and
the rest after (an even kernel puts the extra one at the end, as ``torch.nn.Conv2d`` and
``F.conv2d`` do); it needs stride 1. ``"valid"`` is no padding. Pools pad both ends alike
and at most ``kernel // 2``.

Adaptive pools (``AdaptiveAvgPool*d``, ``AdaptiveMaxPool*d``) have a window per output,
``[floor(o n / n_out), ceil((o + 1) n / n_out))``; for ``n_out > n`` windows repeat inputs.

Examples
--------
>>> from torch import nn
>>> (ax,) = module_axes(nn.Conv1d(1, 1, 4, padding="same"), (6,))
>>> ax.size_out, ax.pad_lo, ax.pad_hi
(6, 1, 2)
>>> ax.fan_out().tolist()   # outputs reading each input: fewer at the borders, as padded
[2, 3, 4, 4, 4, 3]
>>> pool_output_size(5, 2, 2, padding=1, ceil_mode=True)   # windows at -1, 1, 3; not 5
3
>>> adaptive_axes((2,), 5)[0].starts().tolist()
[0, 0, 0, 1, 1]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

Padding = int | str | Sequence[int]


@dataclass(frozen=True)
class _Windows:
    """What every axis of windows answers, from its valid ``(output, tap, input)`` triples."""

    size_in: int
    size_out: int

    # subclasses define ``taps() -> (output, tap, input)`` arrays

    def matrix(self) -> np.ndarray:
        """``(size_out, size_in)`` int64: 1 where output ``o`` reads input ``i`` (through one
        tap: ``j`` follows from ``o`` and ``i``), else 0."""
        o, _, i = self.taps()
        m = np.zeros((self.size_out, self.size_in), dtype=np.int64)
        np.add.at(m, (o, i), 1)
        return m

    def fan_in(self) -> np.ndarray:
        """``(size_out,)``: valid taps of each output (its receptive field inside the input)."""
        return np.bincount(self.taps()[0], minlength=self.size_out).astype(np.int64)

    def fan_out(self) -> np.ndarray:
        """``(size_in,)``: the ``(output, tap)`` pairs that read each input."""
        return np.bincount(self.taps()[2], minlength=self.size_in).astype(np.int64)


@dataclass(frozen=True)
class Axis(_Windows):
    """Sliding windows along one axis (see the module docstring for the rules).

    Attributes: ``size_in``, ``size_out``, ``kernel``, ``stride``, ``pad_lo`` / ``pad_hi``
    (zeros before / after the input) and ``dilation``, all in elements.
    """

    kernel: int = 1
    stride: int = 1
    pad_lo: int = 0
    pad_hi: int = 0
    dilation: int = 1

    def inputs(self) -> np.ndarray:
        """``(size_out, kernel)``: the input index each tap reads, padding included
        (negative or ``>= size_in`` there)."""
        o = np.arange(self.size_out).reshape(-1, 1) * self.stride - self.pad_lo
        return o + np.arange(self.kernel).reshape(1, -1) * self.dilation

    def taps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The valid taps as three int64 arrays ``(output, tap, input)``, output-major."""
        i = self.inputs()
        oo, jj = np.nonzero((i >= 0) & (i < self.size_in))
        return oo.astype(np.int64), jj.astype(np.int64), i[oo, jj].astype(np.int64)

    def tap_matrices(self, padding_mode: str = "zeros") -> np.ndarray:
        """``(kernel, size_out, size_in)`` bool: ``[j, o, i]`` when output ``o`` reads input
        ``i`` through tap ``j``. With ``padding_mode`` ``"zeros"`` a tap in the padding reads
        nothing; ``"reflect"``, ``"replicate"`` and ``"circular"`` read the input element the
        padded one copies (:func:`fold_padding`), as ``torch.nn.functional.pad`` builds it."""
        i = self.inputs()
        valid = (i >= 0) & (i < self.size_in)
        if padding_mode != "zeros":
            i, valid = fold_padding(i, self.size_in, padding_mode), np.ones_like(valid)
        oo, jj = np.nonzero(valid)
        m = np.zeros((self.kernel, self.size_out, self.size_in), dtype=bool)
        m[jj, oo, i[oo, jj]] = True
        return m

    def reach(self) -> np.ndarray:
        """``(size_in, kernel)`` int64: the output that input ``i`` reaches through tap ``j``,
        or -1 where none does (each input and tap feed at most one output)."""
        r = np.full((self.size_in, self.kernel), -1, dtype=np.int64)
        o, j, i = self.taps()
        r[i, j] = o
        return r

    def padded_sizes(self) -> np.ndarray:
        """``(size_out,)``: each window's length counting padding but not what lies beyond
        it (a ceil-mode window may hang past the padding), ``AvgPool``'s divisor with
        ``count_include_pad=True``."""
        start = np.arange(self.size_out) * self.stride - self.pad_lo
        end = np.minimum(start + (self.kernel - 1) * self.dilation + 1, self.size_in + self.pad_hi)
        return (end - start).astype(np.int64)


@dataclass(frozen=True)
class AdaptiveAxis(_Windows):
    """Adaptive pooling windows along one axis: output ``o`` pools inputs
    ``[floor(o n / n_out), ceil((o + 1) n / n_out))``."""

    def starts(self) -> np.ndarray:
        return np.arange(self.size_out) * self.size_in // self.size_out

    def ends(self) -> np.ndarray:
        return -(-(np.arange(self.size_out) + 1) * self.size_in // self.size_out)

    def taps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Valid ``(output, tap, input)`` triples; tap ``j`` is the offset in the window."""
        start, length = self.starts(), self.ends() - self.starts()
        o = np.repeat(np.arange(self.size_out), length)
        j = np.arange(o.size) - np.repeat(np.cumsum(length) - length, length)
        return o.astype(np.int64), j.astype(np.int64), (start[o] + j).astype(np.int64)

    def padded_sizes(self) -> np.ndarray:
        """``(size_out,)``: each window's length (there is no padding)."""
        return (self.ends() - self.starts()).astype(np.int64)


Window = Axis | AdaptiveAxis


def same_padding(kernel: int, dilation: int = 1) -> tuple[int, int]:
    """``(before, after)`` of ``padding="same"``: ``d (k - 1)`` in all, the odd one after."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


def fold_padding(index: np.ndarray, size: int, mode: str) -> np.ndarray:
    """The input element each (possibly padded) ``index`` along an axis of ``size`` copies:
    ``"reflect"`` mirrors about the end elements (``-1 -> 1``, ``size -> size - 2``),
    ``"replicate"`` repeats them, ``"circular"`` wraps around (``torch.nn.functional.pad``'s
    modes; reflect needs padding < ``size``, as torch does).

    >>> fold_padding(np.array([-2, -1, 0, 4, 5]), 5, "reflect").tolist()
    [2, 1, 0, 4, 3]
    """
    index = np.asarray(index)
    if mode == "reflect":
        period = 2 * (size - 1) if size > 1 else 1
        r = np.mod(index, period)
        return np.where(r < size, r, period - r)
    if mode == "replicate":
        return np.clip(index, 0, size - 1)
    if mode == "circular":
        return np.mod(index, size)
    raise ValueError(f"Unknown padding_mode {mode!r}: expected 'zeros', 'reflect', 'replicate' "
                     f"or 'circular' (torch.nn.Conv's modes).")


def resolve_padding(padding: Padding, kernel: Sequence[int], dilation: Sequence[int] | int = 1,
                    stride: Sequence[int] | int = 1, where: str = "the convolution"
                    ) -> tuple[tuple[int, int], ...]:
    """``(before, after)`` zeros per axis for a convolution's ``padding``: an int, one int
    per axis, ``"valid"`` or ``"same"`` (stride 1 only, as in PyTorch)."""
    kernel = tuple(kernel)
    n = len(kernel)
    dilation, stride = _ints(dilation, n, "dilation", where), _ints(stride, n, "stride", where)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding != "same":
            raise ValueError(f"The 'padding' of {where} must be an int, a tuple of ints, 'valid' "
                             f"or 'same'. Got {padding!r} instead.")
        if any(s != 1 for s in stride):
            raise ValueError(f"{where} has padding='same' with stride {stride}; PyTorch defines "
                             f"'same' for stride 1 only. Give the padding as numbers instead.")
        return tuple(same_padding(k, d) for k, d in zip(kernel, dilation))
    pads = _ints(padding, n, "padding", where, low=0)
    return tuple((p, p) for p in pads)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int | tuple[int, int] = 0,
                     dilation: int = 1) -> int:
    """``floor((n + p_lo + p_hi - d (k - 1) - 1) / s) + 1`` (may be < 1: no valid output)."""
    lo, hi = (padding, padding) if isinstance(padding, int) else padding
    return (size + lo + hi - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int | None = None, padding: int = 0,
                     dilation: int = 1, ceil_mode: bool = False) -> int:
    """A pool's output size: the convolution's, rounded up when ``ceil_mode`` but with no
    window starting at or after ``size + padding`` (ATen's rule; may be < 1)."""
    stride = kernel if not stride else stride
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = -(-span // stride) + 1 if ceil_mode else span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def conv_axes(spatial: Sequence[int], kernel: Sequence[int] | int, stride: Sequence[int] | int = 1,
              padding: Padding = 0, dilation: Sequence[int] | int = 1,
              where: str = "the convolution") -> tuple[Axis, ...]:
    """One :class:`Axis` per spatial axis of a convolution on an input of ``spatial`` size."""
    n = len(spatial)
    kernel = _ints(kernel, n, "kernel_size", where, low=1)
    stride = _ints(stride, n, "stride", where, low=1)
    dilation = _ints(dilation, n, "dilation", where, low=1)
    pads = resolve_padding(padding, kernel, dilation, stride, where)
    axes = []
    for a, (size, k, s, (lo, hi), d) in enumerate(zip(spatial, kernel, stride, pads, dilation)):
        out = conv_output_size(size, k, s, (lo, hi), d)
        _check_window_fits(out, where, a, size, k, d, lo + hi, "a smaller kernel")
        axes.append(Axis(size, out, k, s, lo, hi, d))
    return tuple(axes)


def pool_axes(spatial: Sequence[int], kernel: Sequence[int] | int,
              stride: Sequence[int] | int | None = None, padding: Sequence[int] | int = 0,
              dilation: Sequence[int] | int = 1, ceil_mode: bool = False,
              where: str = "the pooling layer") -> tuple[Axis, ...]:
    """One :class:`Axis` per spatial axis of an average, sum or max pool (``stride`` None
    or empty: the kernel)."""
    n = len(spatial)
    kernel = _ints(kernel, n, "kernel_size", where, low=1)
    stride = kernel if stride is None or stride == [] or stride == () else \
        _ints(stride, n, "stride", where, low=1)
    padding = _ints(padding, n, "padding", where, low=0)
    dilation = _ints(dilation, n, "dilation", where, low=1)
    axes = []
    for a, (size, k, s, p, d) in enumerate(zip(spatial, kernel, stride, padding, dilation)):
        if p > k // 2:
            raise ValueError(f"{where} pads {p} on axis {a} with kernel {k}; PyTorch allows at "
                             f"most half the kernel ({k // 2}). Use padding <= {k // 2}.")
        out = pool_output_size(size, k, s, p, d, ceil_mode)
        _check_window_fits(out, where, a, size, k, d, 2 * p, "a smaller window")
        axes.append(Axis(size, out, k, s, p, p, d))
    return tuple(axes)


def _check_window_fits(out: int, where: str, axis: int, size: int, k: int, d: int, pad: int,
                       smaller: str) -> None:
    """A ``ValueError`` when a window (kernel ``k``, dilation ``d``) leaves no output on
    ``axis`` of an input of ``size`` with ``pad`` padding in all (``out < 1``)."""
    if out < 1:
        raise ValueError(f"{where}: its window (kernel {k}, dilation {d}) spans "
                         f"{d * (k - 1) + 1} but spatial axis {axis} of the input has {size} "
                         f"(+{pad} padding); use a larger input or {smaller}.")


def adaptive_axes(spatial: Sequence[int], output_size: Sequence[int | None] | int | None,
                  where: str = "the adaptive pooling layer") -> tuple[AdaptiveAxis, ...]:
    """One :class:`AdaptiveAxis` per spatial axis (``None`` in ``output_size`` keeps the
    input's size)."""
    n = len(spatial)
    sizes = (output_size,) * n if output_size is None or isinstance(output_size, int) else tuple(output_size)
    if len(sizes) != n:
        raise ValueError(f"The 'output_size' of {where} has {len(sizes)} entries for an input "
                         f"with {n} spatial axes ({tuple(spatial)}); give one per axis.")
    axes = []
    for size, out in zip(spatial, sizes):
        out = size if out is None else out
        if isinstance(out, bool) or not isinstance(out, int) or out < 1 or size < 1:
            raise ValueError(f"The 'output_size' of {where} must hold positive ints (or None) "
                             f"for an input of spatial size {tuple(spatial)}. Got "
                             f"{output_size!r} instead.")
        axes.append(AdaptiveAxis(size, out))
    return tuple(axes)


def module_axes(module: Any, spatial: Sequence[int], name: str = "") -> tuple[Window, ...]:
    """The windows of a convolution (it has ``weight``), a pool (``kernel_size``) or an
    adaptive pool (``output_size``) on an input of ``spatial`` size, read from its
    attributes; ``name`` (the layer's) goes into error messages."""
    where = f"layer {name!r} ({type(module).__name__})" if name else type(module).__name__
    spatial = tuple(int(s) for s in spatial)
    if hasattr(module, "output_size"):
        return adaptive_axes(spatial, module.output_size, where)
    if not hasattr(module, "kernel_size"):
        raise TypeError(f"{where} has no windows: expected a convolution or a pooling layer "
                        f"(an object with kernel_size or output_size).")
    if hasattr(module, "weight"):
        key = (conv_axes, spatial, module.kernel_size, module.stride, module.padding, module.dilation)
    else:
        key = (pool_axes, spatial, module.kernel_size, module.stride, module.padding,
               getattr(module, "dilation", 1), bool(getattr(module, "ceil_mode", False)))
    try:  # the engines ask once per layer and block; the windows follow from the key alone
        axes = _AXES.get(key)
    except TypeError:  # an unhashable attribute (a list): no caching
        return key[0](*key[1:], where)
    if axes is None:
        axes = key[0](*key[1:], where)  # (a bad attribute raises here; errors are not kept)
        if len(_AXES) >= 4096:
            _AXES.clear()
        _AXES[key] = axes
    return axes


_AXES: dict[tuple, tuple[Axis, ...]] = {}


def output_spatial(module: Any, spatial: Sequence[int]) -> tuple[int, ...]:
    """The spatial output size of ``module`` (see :func:`module_axes`) on ``spatial``."""
    return tuple(a.size_out for a in module_axes(module, spatial))


def torch_pad(axes: Sequence[Axis]) -> tuple[int, ...]:
    """The pads of ``axes`` in ``torch.nn.functional.pad``'s order (last axis first)."""
    return tuple(p for a in reversed(axes) for p in (a.pad_lo, a.pad_hi))


def _ints(value: Any, n: int, param: str, where: str, low: int | None = None) -> tuple[int, ...]:
    """``value`` as ``n`` ints (one int repeats); ``low`` is the smallest allowed."""
    vals = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(vals) == 1 and n > 1:
        vals = vals * n
    ok = len(vals) == n and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                for v in vals)
    if not ok or (low is not None and min(vals) < low):
        bound = "" if low is None else f" >= {low}"
        raise ValueError(f"The {param!r} of {where} must be an int{bound} or {n} such ints (one "
                         f"per spatial axis). Got {value!r} instead.")
    return tuple(int(v) for v in vals)


__all__ = ["Axis", "AdaptiveAxis", "Window", "adaptive_axes", "conv_axes", "conv_output_size",
           "fold_padding", "module_axes", "output_spatial", "pool_axes", "pool_output_size", "resolve_padding",
           "same_padding", "torch_pad"]
