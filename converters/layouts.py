"""Channel rearrangements in a conversion graph: channel shuffle, chunk and split.

ShuffleNet mixes the channels of its two branches with a *channel shuffle* written as
reshapes around a transpose (torchvision's ``channel_shuffle``)::

    x.view(n, g, c // g, h, w).transpose(1, 2).contiguous().view(n, c, h, w)

Each spike keeps its value and moves to another channel, so the whole chain is one fixed
permutation of channels, ``nn.ChannelShuffle(g)``: output channel ``i * g + j`` is input
channel ``j * (c / g) + i``. Graph capture keeps the transpose as a :class:`PermuteDims` op
between the reshapes, checks at once that the chain is such a permutation
(:func:`check_channel_permutation`), and :func:`collapse_shuffles` then replaces the chain by
one ``ChannelShuffle`` (or removes it when it is the identity). Any other transpose or
permute of an activation (a channels-last layout for LayerNorm, a token sequence) has no
spiking layer and is refused, naming it.

``chunk`` and ``split`` along a feature dimension become :class:`snnedge.layers.Narrow`
slices (:func:`part_bounds`).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from .errors import UnsupportedLayerError

PERMUTE_FIX = ("transpose or permute activations only in a channel shuffle (a view into "
               "(groups, C / groups, H, W), a transpose of the two group dimensions and a view "
               "back to (C, H, W), as ShuffleNet does); other layouts have no spiking "
               "equivalent: keep the activations as (C, H, W) or (features,)")


class PermuteDims(nn.Module):
    """``x.permute(0, *(d + 1 for d in dims))``: a permutation of the per-sample dimensions.
    Lives only in conversion graphs (:func:`collapse_shuffles` replaces it)."""

    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.dims = tuple(int(d) for d in dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, *(d + 1 for d in self.dims))

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


def per_sample_dims(dims: tuple[int, ...], ndim: int, name: str, source: str) -> tuple[int, ...]:
    """The per-sample permutation of a batch-first permutation ``dims`` of an ``ndim``-D
    tensor; an ``UnsupportedLayerError`` when it moves the batch dimension."""
    dims = tuple(d % ndim for d in dims)
    if sorted(dims) != list(range(ndim)) or dims[0] != 0:
        raise UnsupportedLayerError(name, source, "keep the batch dimension first",
                                    f"It permutes the dimensions {list(dims)}, moving the batch")
    return tuple(d - 1 for d in dims[1:])


def shuffle_groups(shape: tuple[int, ...], steps: list[tuple[str, tuple[int, ...]]]) -> int | None:
    """``g`` when the per-sample ``steps`` (``("reshape", shape)`` or ``("permute", dims)``)
    applied to a sample of ``shape`` equal ``nn.ChannelShuffle(g)`` (``g = 1``: the
    identity), else None (also when the shape changes)."""
    idx = torch.arange(math.prod(shape)).view(shape)
    out = idx
    for kind, arg in steps:
        out = out.reshape(arg) if kind == "reshape" else out.permute(*arg)
    if tuple(out.shape) != tuple(shape) or len(shape) < 2:
        return None
    c = shape[0]
    for g in (d for d in range(1, c + 1) if c % d == 0):
        if torch.equal(idx.view(g, c // g, *shape[1:]).transpose(0, 1).reshape(shape), out):
            return g
    return None


def check_channel_permutation(name: str, source: str, shape: tuple[int, ...],
                              steps: list[tuple[str, tuple[int, ...]]]) -> int:
    """:func:`shuffle_groups`, or an ``UnsupportedLayerError`` naming the transpose."""
    g = shuffle_groups(shape, steps)
    if g is None:
        raise UnsupportedLayerError(name, source, PERMUTE_FIX,
                                    "It rearranges an activation into another layout")
    return g


def _rewire(ops: list, output: str, old: str, new: str) -> tuple[list, str]:
    ops = [replace(o, inputs=tuple(new if i == old else i for i in o.inputs)) for o in ops]
    return ops, (new if output == old else output)


def collapse_shuffles(ops: list, output: str, input_shape: tuple[int, ...]) -> tuple[list, str]:
    """Replace each chain ``reshape* -> permute -> reshape*`` (every link used once) by one
    ``"shuffle"`` op (``nn.ChannelShuffle``), or drop it when it is the identity."""
    while True:
        perm = next((o for o in ops if o.kind == "permute"), None)
        if perm is None:
            return ops, output
        by_name = {o.name: o for o in ops}
        uses = {o.name: 0 for o in ops}
        for o in ops:
            for i in o.inputs:
                if i in uses:
                    uses[i] += 1
        chain = [perm]
        while chain[0].inputs[0] in by_name and by_name[chain[0].inputs[0]].kind == "reshape" \
                and uses[chain[0].inputs[0]] == 1:
            chain.insert(0, by_name[chain[0].inputs[0]])
        while chain[-1].name != output and uses[chain[-1].name] == 1:
            nxt = next(o for o in ops if chain[-1].name in o.inputs)
            if nxt.kind not in ("reshape", "permute"):
                break
            chain.append(nxt)
        src = chain[0].inputs[0]
        shape = tuple(input_shape) if src not in by_name else by_name[src].shape
        steps = [("permute", o.module.dims) if o.kind == "permute" else ("reshape", o.shape)
                 for o in chain]
        g = check_channel_permutation(perm.name, perm.source, shape, steps)
        drop = {o.name for o in chain}
        last = chain[-1].name
        at = next(k for k, o in enumerate(ops) if o.name == perm.name)
        rest = [o for o in ops if o.name not in drop]
        if g == 1:
            ops, output = _rewire(rest, output, last, src)
            continue
        new = replace(perm, kind="shuffle", inputs=(src,), module=nn.ChannelShuffle(g),
                      shape=tuple(shape), source="channel shuffle")
        at = sum(1 for o in ops[:at] if o.name not in drop)
        ops, output = _rewire(rest[:at] + [new] + rest[at:], output, last, new.name)


def part_bounds(sizes: list[int], index: int) -> tuple[int, int]:
    """``(start, length)`` of part ``index`` of a tensor split into parts of ``sizes``."""
    return sum(sizes[:index]), sizes[index]
