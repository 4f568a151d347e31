"""Exact fan-out of every neuron, for counting synaptic events.

A synaptic event is one spike delivered along one synapse (a non-zero weight). For a
weighted layer ``L`` the fan-out of each input element is the number of non-zero weights
leaving it; for a convolution this is a transposed convolution of ones with the weight mask,
which is exact at the image borders (as in sinabs' synaptic-operation counting).

Between a spiking layer ``S`` and ``L`` there may be weight-free linear modules (pooling,
flatten, residual junctions, concatenation). They are folded into the connectivity the way
hardware folds them: a spike entering a pooling window is forwarded once to the pooled
position. With ``P`` that structural (counting) map, the events ``S`` sends into ``L`` are
``<P(counts_S), f_L> = <counts_S, P^T f_L>``, so ``g = P^T f_L`` (one number per neuron of
``S``) is computed once by autograd and the engines only need each source's spike totals.

A neuron may also send each spike across synapses of its own (Loihi's two-compartment reset
by subtraction: the soma's synapse back to its dendrite); the module gives their number per
neuron (:meth:`snnedge.TemporalModule.own_synapses`) and they count as synaptic events of
the neuron's own layer: a link from the layer to itself.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import module_axes
from .layers import DROPOUTS, INPUT, Add, Concat, Narrow, Scale, SumPool2d, TemporalModule
from .network import SpikingNetwork


def fanout(module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> torch.Tensor:
    """Non-zero weights leaving each input element of a weighted layer (per-sample shape).

    For a convolution the count factorizes over the spatial axes: input ``(c, y, x)`` reaches
    output ``(o, oy, ox)`` through tap ``(ky, kx)`` iff ``oy * stride - pad_lo + ky * dil == y``
    (same for x) and the weight is non-zero, so
    ``f[c, y, x] = sum_{ky, kx} C[c, ky, kx] * Vy[y, ky] * Vx[x, kx]`` with ``C`` the number
    of non-zero weights of input channel ``c`` at each tap and ``V`` the 0/1 tap validity
    (:meth:`snnedge.geometry.Axis.reach`; any padding, ``"same"`` included). This equals a
    transposed convolution of ones with the weight mask, without running one.
    """
    if isinstance(module, nn.Linear):
        # Summed in chunks of rows: a sum over VGG-16's fc6 at once makes an 822 MB int64 copy.
        w = module.weight.detach()
        rows = max(1, 2**22 // max(1, w.shape[1]))
        f = torch.zeros(w.shape[1], dtype=torch.float64)
        for i in range(0, w.shape[0], rows):
            f += (w[i:i + rows] != 0).sum(0).cpu()
        return f.expand(in_shape).clone() if len(in_shape) > 1 else f
    mask = (module.weight.detach() != 0).cpu()
    groups = module.groups
    c_out, c_in_g, *kernel = mask.shape
    per_tap = mask.view(groups, c_out // groups, c_in_g, *kernel).sum(1, dtype=torch.float64) \
        .reshape(groups * c_in_g, *kernel)
    axes = [torch.from_numpy(a.reach() >= 0).to(torch.float64)
            for a in module_axes(module, in_shape[1:])]
    if len(axes) == 1:
        return torch.einsum("ck,yk->cy", per_tap, axes[0])
    return torch.einsum("ckl,yk,xl->cyx", per_tap, axes[0], axes[1])


def structural(module: nn.Module, xs: list[torch.Tensor], name: str = "") -> torch.Tensor:
    """The counting version of a weight-free module: how many copies of an event go where.

    Pooling becomes sum pooling, a per-channel scale becomes its non-zero mask, junctions,
    shape changes and channel rearrangements stay as they are, and a temporal routing module
    (a spiking max pool) gives its own model (:meth:`snnedge.TemporalModule.structural`).
    Raises ``ValueError`` naming the layer for a module with no such model.
    """
    x = xs[0]
    if isinstance(module, nn.AvgPool2d):
        return F.avg_pool2d(x, module.kernel_size, module.stride, module.padding,
                            module.ceil_mode, module.count_include_pad, divisor_override=1)
    if isinstance(module, (nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        return window_sum(x, module_axes(module, x.shape[2:], name))
    if isinstance(module, (*DROPOUTS, nn.Identity)):
        return x
    if isinstance(module, Scale):
        s = (module.scale != 0).to(x)
        return x * (s if s.dim() == 0 else s.view(-1, *([1] * (x.dim() - 2))))
    if isinstance(module, (SumPool2d, nn.Flatten, nn.Unflatten, Add, Concat, Narrow,
                           nn.ChannelShuffle)):
        return module(*xs)
    if isinstance(module, TemporalModule):  # an event-routing module, such as a max pool
        try:
            return module.structural(x)
        except ValueError as err:
            raise ValueError(f"Layer {name!r}: {err}") from None
    raise ValueError(f"Layer {name!r} ({type(module).__name__}) has no structural (event-counting) "
                     f"model, so its connectivity is unknown; use the supported weight-free modules "
                     f"(pooling, Flatten, Scale, Add, Concat, Narrow, ChannelShuffle).")


def window_sum(x: torch.Tensor, axes) -> torch.Tensor:
    """Each window's sum over the trailing ``len(axes)`` axes of ``x``: one 0/1 matrix per
    axis from :mod:`snnedge.geometry` (exact in float64, any padding, ``ceil_mode`` or
    adaptive window, output larger than the input included)."""
    first = x.dim() - len(axes)
    for k, axis in enumerate(axes):
        m = torch.from_numpy(axis.matrix()).to(x)
        x = torch.tensordot(x, m, dims=([first + k], [1])).movedim(-1, first + k)
    return x


@dataclass(frozen=True)
class SourceLink:
    """Events from ``source`` into weighted layer ``target``: ``<counts_source, weight>``."""

    source: str
    target: str
    weight: torch.Tensor  # per-sample shape of the source's output, float64 (may be a broadcast)


def event_sources(net: SpikingNetwork) -> tuple[str, ...]:
    """Layers whose outputs are counted: the input, temporal modules, and weighted layers
    whose (analog) output reaches another weighted layer without a neuron in between.

    Kept on the network, as its shapes are (:meth:`SpikingNetwork.shapes`): it follows from
    the graph alone, which does not change after construction (one walk per ``simulate``
    call was 1% of a one-sample run of ResNet-18)."""
    kept = net.__dict__.get("_event_sources")
    if kept is None:
        sources = [INPUT] + [n for n in net.names if net.kind(n) == "temporal"]
        for n in net.names:
            if net.kind(n) == "weighted" and _reaches_weighted(net, n):
                sources.append(n)
        kept = net.__dict__["_event_sources"] = tuple(sources)
    return kept


def _reaches_weighted(net: SpikingNetwork, name: str) -> bool:
    stack = list(net.consumers_of(name))
    while stack:
        c = stack.pop()
        if net.kind(c) == "weighted":
            return True
        if net.kind(c) == "weight_free":
            stack.extend(net.consumers_of(c))
    return False


def source_links(net: SpikingNetwork, input_shape: tuple[int, ...]) -> list[SourceLink]:
    """For every (source, weighted layer) pair joined by weight-free modules, ``P^T f``.

    Cached on the network, keyed by the input shape and by each weight tensor's identity and
    version counter (in-place updates such as optimizer steps bump it)."""
    key = (tuple(input_shape), tuple(
        (id(w), w._version, w.data_ptr()) for w in (net.layer(n).weight for n in net.names
                                                     if net.kind(n) == "weighted")))
    cache = net.__dict__.setdefault("_links_cache", {})
    if key not in cache:
        cache.clear()
        cache[key] = _source_links(net, tuple(input_shape))
        for link in cache[key]:  # the same objects on every call: link_totals groups them once
            _keep_link(link)
    return cache[key] + own_links(net, tuple(input_shape))


def own_links(net: SpikingNetwork, input_shape: tuple[int, ...]) -> list[SourceLink]:
    """A link from each temporal layer to itself for the synapses of its own that its events
    cross (:meth:`snnedge.TemporalModule.own_synapses`; none for most modules). Not cached
    with the others: it reads the modules' buffers, which no weight's version tracks."""
    shapes, links = net.shapes(input_shape), []
    for s in event_sources(net):
        if s == INPUT or net.kind(s) != "temporal":
            continue
        own = net.layer(s).own_synapses(shapes[s])
        if own is not None:
            # a broadcast view: one value per channel or layer stands for every neuron
            links.append(SourceLink(s, s, torch.broadcast_to(
                torch.as_tensor(own, dtype=torch.float64).cpu(), shapes[s])))
    return links


@torch.enable_grad()
def _source_links(net: SpikingNetwork, input_shape: tuple[int, ...]) -> list[SourceLink]:
    shapes = dict(net.shapes(input_shape))
    shapes[INPUT] = tuple(input_shape)
    weighted = [n for n in net.names if net.kind(n) == "weighted"]
    fan = {}
    for n in weighted:
        (src,) = net.inputs_of(n)
        fan[n] = fanout(net.layer(n), shapes[src], shapes[n])
    links = []
    for s in event_sources(net):
        x = torch.ones((1, *shapes[s]), dtype=torch.float64, requires_grad=True)
        vals = {s: x}
        reached = {}
        for n in net.names:
            ins = net.inputs_of(n)
            if not any(i in vals for i in ins):
                continue
            if net.kind(n) == "weighted":
                reached[n] = vals[ins[0]]
            elif net.kind(n) == "weight_free":
                xs = [vals[i] if i in vals else torch.zeros((1, *shapes[i]), dtype=torch.float64)
                      for i in ins]
                vals[n] = structural(net.layer(n), xs, n)
        for target, inp in reached.items():
            (g,) = torch.autograd.grad((inp * fan[target]).sum(), x, retain_graph=True)
            links.append(SourceLink(s, target, _compact(g[0].detach())))
    return links


def _compact(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` as a broadcast of its first channel when every channel equals it (the
    usual case: a dense convolution sends each input channel's event to as many synapses),
    else itself. Same values, a view that does not write; on VGG-16 at 224 px it keeps
    about 2 MiB of these weights instead of about 70 MiB for the whole of a simulation."""
    if weight.dim() < 2 or weight.shape[0] == 1:
        return weight
    first = weight[:1]
    if not torch.equal(weight, first.expand_as(weight)):
        return weight
    return first.clone().expand_as(weight)


# source_links' cached links (id -> weak reference), which come back as the same objects on
# every call: link_totals groups them by source once per list (at most _GROUPED_MAX lists
# kept, each holding its links alive so that their ids stay theirs). Other links (own_links',
# made on every call) take a dot product each.
_kept_links: dict[int, weakref.ref] = {}
_GROUPED_MAX = 8
_grouped: dict[tuple[int, ...], tuple[tuple[SourceLink, ...], list[tuple[str, tuple, tuple]]]] = {}


def _keep_link(link: SourceLink) -> None:
    def forget(ref, key=id(link)):
        if _kept_links.get(key) is ref:
            del _kept_links[key]
    _kept_links[id(link)] = weakref.ref(link, forget)


def _group(links: list[SourceLink], shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, tuple, tuple]]:
    """Per source: ``(source, (targets, rows) over the source's values, (targets, rows) over
    its values summed over channels)``. A weight that is one channel broadcast over the
    channels (``_compact``'s view, stride 0 along them) goes to the second matrix as that
    channel; the second matrix (or the first, for a source without channels) ends in a row
    of ones: the source's total."""
    by_source: dict[str, tuple[list, list]] = {}
    for link in links:
        full, compact = by_source.setdefault(link.source, ([], []))
        w = torch.broadcast_to(link.weight, shapes[link.source])  # (as the counts' product did)
        if w.dim() >= 2 and w.stride(0) == 0:
            compact.append((link.target, w[0].reshape(-1)))
        else:
            full.append((link.target, w.reshape(-1)))
    groups = []
    for source, (full, compact) in by_source.items():
        shape = shapes[source]
        ones = torch.ones(math.prod(shape[1:]) if len(shape) >= 2 else math.prod(shape), dtype=torch.float64)
        if len(shape) >= 2:
            compact = compact + [(None, ones)]
        else:
            full = full + [(None, ones)]
        groups.append((source, *(
            (tuple(t for t, _ in part), torch.stack([r.to(torch.float64) for _, r in part]) if part else None)
            for part in (full, compact))))
    return groups


def link_totals(links: list[SourceLink], counts: dict[str, torch.Tensor]) -> tuple[
        dict[tuple[str, str], float], dict[str, float]]:
    """``(carried, totals)``: each link's ``<counts[source], weight>`` keyed ``(source,
    target)``, and each source's sum of counts, from one matrix-vector product per source and
    part (weights of the source's shape; weights broadcast over its channels, against the
    counts summed over channels) instead of a dot product per link and a sum per layer.
    Counts and weights are whole numbers (spikes, non-zero values, synapses), so the float64
    sums are exact in any order: the same values as the products one by one. Sources without
    a link still get their total."""
    kept = [l for l in links if (r := _kept_links.get(id(l))) is not None and r() is l]
    key = tuple(map(id, kept))
    entry = _grouped.get(key)
    if entry is None:
        if len(_grouped) >= _GROUPED_MAX:
            _grouped.clear()
        shapes = {s: tuple(c.shape) for s, c in counts.items()}
        entry = _grouped[key] = (tuple(kept), _group(kept, shapes))
    carried: dict[tuple[str, str], float] = {}
    totals: dict[str, float] = {}
    for source, (f_targets, f_rows), (c_targets, c_rows) in entry[1]:
        c = counts[source].to(device="cpu", dtype=torch.float64)
        for targets, rows, values in ((f_targets, f_rows, c),
                                      (c_targets, c_rows, c.sum(0) if c_rows is not None else None)):
            if rows is None:
                continue
            for target, v in zip(targets, torch.mv(rows, values.reshape(-1)).tolist()):
                if target is None:
                    totals[source] = v
                else:
                    carried[(source, target)] = carried.get((source, target), 0.0) + v
    if len(kept) < len(links):
        kept_ids = set(key)
        for link in links:
            if id(link) not in kept_ids:
                c = counts[link.source].to(device="cpu", dtype=torch.float64)
                v = float((c * link.weight.to(torch.float64)).sum())
                carried[(link.source, link.target)] = carried.get((link.source, link.target), 0.0) + v
    for s, c in counts.items():
        if s not in totals:
            totals[s] = float(c.sum())
    return carried, totals
