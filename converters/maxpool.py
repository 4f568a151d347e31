r"""Spiking max pooling that keeps the ANN's ``MaxPool2d`` (Rueckauer et al. 2017).

Max pooling of rates cannot be done by summing spikes; swapping it for average pooling
changes the network. :class:`SpikingMaxPool2d` keeps the max by looking at what each
input has accumulated so far, ``c_k[t] = sum_{s<=t} x_k[s]``:

``mode="count"`` (default)
    the output's accumulated count follows the largest accumulated input of its window,
    ``o[t] = max_k c_k[t] - max_k c_k[t-1]``. Each ``c_k`` grows by at most one per step
    when the inputs are spikes, so ``o[t]`` is a spike (0 or 1) and the output count equals
    the max input count at every step: the pooled rate is exactly the max of the rates.
``mode="gate"``
    Rueckauer et al.'s gate (Front. Neurosci. 11:682, 2017, doi:10.3389/fnins.2017.00682):
    pass the spike of the input with the largest accumulated count, ``o[t] = x_{k*}[t]``
    with ``k* = argmax_k c_k[t]``; a change of winner loses or repeats spikes.

Both modes also accept analog inputs (a max pool before the ReLU): for a constant input,
``count`` gives the exact max at every step.

The pooled output is a layer of its own: :meth:`SpikingMaxPool2d.output_shape` gives the
core its shape, so windows may overlap, pad and use ``ceil_mode`` exactly as in
``nn.MaxPool2d`` (torchvision's AlexNet ``MaxPool2d(3, 2)``, ResNet's ``MaxPool2d(3, 2, 1)``,
GoogLeNet's ``ceil_mode`` pools); padding never wins (it is ``-inf``, as in
``F.max_pool2d``). :class:`SpikingAdaptiveMaxPool2d` does the same over
``nn.AdaptiveMaxPool2d``'s windows. The windows are those of :mod:`snnedge.geometry`, which
also gives the routing model that event counting and hardware mapping read
(:meth:`SpikingMaxPool2d.structural`: an event may leave through every window holding it).

With ``keep_shape=True`` (networks saved by earlier versions) the module emits at its
input's resolution: each window's output goes to one position of the window (``count``:
its first position; ``gate``: the current winner) and every other position stays 0;
followed by a :class:`snnedge.SumPool2d` with the same non-overlapping windows it is the
same max pool.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from snnedge.connectivity import window_sum
from snnedge.count_pool import native_count_max_pool
from snnedge.errors import check_choice
from snnedge.events import is_channels_last
from snnedge.geometry import module_axes, output_spatial
from snnedge.layers import TemporalModule

MAXPOOL_MODES = ("count", "gate")


class SpikingMaxPool2d(TemporalModule):
    """Max pooling of spike trains by accumulated counts (see the module docstring).

    Parameters as ``nn.MaxPool2d`` (``kernel_size``, ``stride``, ``padding``, ``dilation``,
    ``ceil_mode``), plus ``mode``: ``"count"`` or ``"gate"``, and ``keep_shape`` (emit at
    the input's resolution, one position per window).

    Example
    -------
    >>> import torch
    >>> pool = SpikingMaxPool2d(2)
    >>> x = torch.zeros(4, 1, 1, 2, 2); x[:, 0, 0, 0, 0] = torch.tensor([1., 0, 1, 0]); x[:, 0, 0, 1, 1] = 1
    >>> pool(x).flatten().tolist()   # the input with rate 1 wins
    [1.0, 1.0, 1.0, 1.0]
    """

    emits_spikes = False  # routes its inputs' spikes; owns no neurons
    emits_events = True

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
                 mode: str = "count", keep_shape: bool = False):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = self.kernel_size if stride is None or stride == [] else _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.ceil_mode = bool(ceil_mode)
        self.mode = check_choice(mode, MAXPOOL_MODES, param="mode", where="SpikingMaxPool2d")
        self.keep_shape = bool(keep_shape)

    def _tiles(self, shape) -> bool:
        """Whether the windows tile the input exactly (then reshapes beat max_pool2d on CPU)."""
        return (self.stride == self.kernel_size and self.padding == (0, 0) and self.dilation == (1, 1)
                and shape[-2] % self.kernel_size[0] == 0 and shape[-1] % self.kernel_size[1] == 0)

    def _pool(self, x: torch.Tensor, indices: bool = False):
        if not indices and self._tiles(x.shape):
            # max over strided slices: several times faster than max_pool2d on CPU
            (kh, kw) = self.kernel_size
            rows = x[..., 0::kh, :]
            for i in range(1, kh):
                rows = torch.maximum(rows, x[..., i::kh, :])
            out = rows[..., 0::kw]
            for j in range(1, kw):
                out = torch.maximum(out, rows[..., j::kw])
            return out
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, return_indices=indices)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(C, H_out, W_out)`` by the pool's windows (:mod:`snnedge.geometry`); the input's
        shape with ``keep_shape``."""
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} pools (C, H, W) samples; got a sample of "
                             f"shape {tuple(input_shape)}.")
        if self.keep_shape:
            return tuple(input_shape)
        axes = module_axes(self, input_shape[1:])
        for a, axis in enumerate(axes):
            if (axis.fan_in() == 0).any():  # torch's max of no value is -inf
                raise ValueError(f"{type(self).__name__}: a window on spatial axis {a} of an input "
                                 f"of shape {tuple(input_shape)} holds only padding; use less "
                                 f"padding or dilation.")
        return (input_shape[0], *(a.size_out for a in axes))

    def structural(self, x: torch.Tensor) -> torch.Tensor:
        """Events per output position when ``x`` ``(B, C, H, W)`` arrive: each window's sum
        (a spike may leave through every window that holds it; the identity with
        ``keep_shape``, whose sum pool comes after it)."""
        if self.keep_shape:
            return x
        return window_sum(x, module_axes(self, x.shape[2:]))

    def initial_state(self, template: torch.Tensor):
        acc = torch.zeros_like(template)
        # the pooled shape from the windows, not from pooling the zeros (a max_pool2d per call)
        prev = acc.new_zeros((*acc.shape[:-2], *output_spatial(self, acc.shape[-2:])))
        if is_channels_last(acc):
            prev = prev.contiguous(memory_format=torch.channels_last)  # as max_pool2d lays it out
        return acc, prev

    def forward_block(self, current: torch.Tensor, state, steps: int, static: bool = False):
        acc, prev_max = state
        if self.mode == "count" and not static:
            # one pass of the compiled kernel where it applies (same values, bit for bit)
            done = native_count_max_pool(current, acc, prev_max, module_axes(self, current.shape[-2:]))
            if done is not None:
                out, acc, prev_max = done
                if self.keep_shape:
                    out = self._at_window_starts(out, current.shape)
                return out, (acc, prev_max)
        if static:
            t = torch.arange(1, steps + 1, dtype=current.dtype, device=current.device)
            cum = acc.unsqueeze(0) + t.view(-1, *([1] * current.dim())) * current.unsqueeze(0)
            current = current.unsqueeze(0).expand(steps, *current.shape)
        else:
            # a running sum in place: several times faster than torch.cumsum over dim 0 on CPU
            cum = current.clone()
            cum[0].add_(acc)
            for t in range(1, steps):
                cum[t].add_(cum[t - 1])
        batch = cum.shape[1]
        if self.mode == "count":
            pooled = self._pool(cum.flatten(0, 1))
            pooled = pooled.view(steps, batch, *pooled.shape[1:])
            out = torch.diff(pooled, dim=0, prepend=prev_max.unsqueeze(0))
            if self.keep_shape:
                out = self._at_window_starts(out, cum.shape)
        else:
            pooled, idx = self._pool(cum.flatten(0, 1), indices=True)
            flat = current.reshape(steps * batch, *current.shape[2:]).flatten(2)
            out = flat.gather(2, idx.flatten(2))
            if self.keep_shape:
                full = torch.zeros(steps * batch, cum.shape[2], cum.shape[3] * cum.shape[4],
                                   dtype=out.dtype, device=out.device)
                out = full.scatter_(2, idx.flatten(2), out)
            pooled = pooled.view(steps, batch, *pooled.shape[1:])
            out = out.view(cum.shape if self.keep_shape else pooled.shape)
        return out, (cum[-1], pooled[-1])

    def forward_block_into(self, current: torch.Tensor, state, steps: int, static: bool = False,
                           out: torch.Tensor | None = None):
        """:meth:`forward_block` of an engine's no-gradient run: in mode ``"count"`` the
        compiled kernel updates the engine's state in place and overwrites ``out`` (the
        previous block's output) where it can."""
        if self.mode == "count" and not static and not self.keep_shape:
            done = native_count_max_pool(current, *state, module_axes(self, current.shape[-2:]),
                                         in_place=True, out=out)
            if done is not None:
                return done[0], done[1:]
        return self.forward_block(current, state, steps, static)

    def _at_window_starts(self, out: torch.Tensor, shape) -> torch.Tensor:
        """``out`` (pooled) written at the first input position of each (disjoint) window."""
        if self._tiles(shape):
            (kh, kw), (h, w) = self.kernel_size, shape[-2:]
            full = out.new_zeros(shape)
            full.view(*shape[:-2], h // kh, kh, w // kw, kw)[..., :, 0, :, 0] = out
            return full
        rows = (torch.arange(out.shape[-2], device=out.device) * self.stride[0] - self.padding[0]).clamp(min=0)
        cols = (torch.arange(out.shape[-1], device=out.device) * self.stride[1] - self.padding[1]).clamp(min=0)
        full = out.new_zeros(shape)
        full[..., rows.view(-1, 1), cols.view(1, -1)] = out
        return full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-step call on a time-first input ``(T, B, C, H, W)`` from the initial state."""
        if x.dim() != 5:
            raise ValueError(f"SpikingMaxPool2d expects a time-first input (T, B, C, H, W). "
                             f"Got shape {tuple(x.shape)}.")
        out, _ = self.forward_block(x, self.initial_state(x[0]), x.shape[0])
        return out

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}, mode={self.mode!r}"
                + (", keep_shape=True" if self.keep_shape else ""))


class SpikingAdaptiveMaxPool2d(SpikingMaxPool2d):
    """:class:`SpikingMaxPool2d` over the windows of ``nn.AdaptiveMaxPool2d(output_size)``
    (output ``o`` of an axis of ``n`` inputs pools ``[floor(o n / n_out), ceil((o + 1) n /
    n_out))``; an output larger than the input repeats inputs). ``mode`` as there.

    Example
    -------
    >>> import torch
    >>> x = torch.zeros(3, 1, 1, 2, 2); x[:, 0, 0, 1, 1] = 1.0
    >>> SpikingAdaptiveMaxPool2d(1)(x).flatten().tolist()   # global max pool
    [1.0, 1.0, 1.0]
    """

    def __init__(self, output_size, mode: str = "count"):
        super().__init__(1, mode=mode)
        self.output_size = tuple(output_size) if isinstance(output_size, (tuple, list)) \
            else (output_size, output_size)

    def _tiles(self, shape) -> bool:
        return False

    def _pool(self, x: torch.Tensor, indices: bool = False):
        size = tuple(x.shape[-2 + i] if s is None else s for i, s in enumerate(self.output_size))
        return F.adaptive_max_pool2d(x, size, return_indices=indices)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(C, *output_size)`` (``None`` keeps that axis of the input)."""
        if len(input_shape) != 3:
            raise ValueError(f"SpikingAdaptiveMaxPool2d pools (C, H, W) samples; got a sample of "
                             f"shape {tuple(input_shape)}.")
        return (input_shape[0], *(a.size_out for a in module_axes(self, input_shape[1:])))

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, mode={self.mode!r}"
