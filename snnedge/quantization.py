r"""Applying a chip's :class:`~snnedge.formats.NumberFormat` to a network's float values.

Shared by :func:`snnedge.fit`'s ``hardware=`` option (straight-through fake quantization) and
``neuromorphic_targets.to_hardware`` (the integer network), so both compute the same integers.

Groups
------
A chip scales the weights *into* one neuron layer together with that layer's threshold,
bias and membrane. :func:`format_groups` finds, for each neuron layer (and for the readout),
the weighted layers that feed it through weight-free modules, and each one's *gain*: the
product of ``1 / window`` of the average pools on its path. Chips sum pools (DYNAP-CNN's sum
pooling, a spike reaching a pooled neuron once), so an average pool becomes a sum pool and
its ``1 / window`` moves into the weights: the effective weight is ``w * gain``.

Rules (one per ``NumberFormat.scale_rule``; rounding is ``torch.round``, half to even, as in
sinabs' ``discretize_tensor`` and lava-dl's ``quantize``):

``"layer"`` (sinabs ``determine_discretization_scale``)::

    scale(x, b) = (2^(b-1) - 1) / max(x)    if |min(x)| <= max(x) * 2^(b-1) / (2^(b-1) - 1)
                  2^(b-1) / |min(x)|        otherwise
    s = min(scale(W, weight_bits), scale(bias, bias_bits), scale(theta, state_bits),
            scale(v0, state_bits));  W_int = round(W * s), ...

``"power-of-two"`` (lava-dl ``quantize_8bit``: ``round(w / step) * step`` with step
``2 / 2^k``, clamped to ``[-256, 254] / 2^k``)::

    k = min over the limits of floor(log2(limit / max|x|)):  254 for weights, the
        threshold mantissa (2^17 - 1), the bias (mantissa << exponent), the membrane
    W_mant = clamp(2 * round(W * 2^k / 2), -256, 254);  W = W_mant << 6   (state units)
    theta = clamp(round(theta * 2^k), 1, 2^17 - 1) << 6
    bias  = round(b * 2^(k+6) / 2^e) << e   with the smallest exponent e in 0..7 that fits

``"neuron"`` (TrueNorth's axon types): per neuron (output channel) the non-zero weights are
replaced by ``weight_levels`` k-means levels (:func:`row_levels`), and per neuron
``s_j = min(255 / max|L_j|, threshold_max / theta_j, leak_max / |b_j|, state_max / |v0_j|)``.

Every rule returns :class:`GroupIntegers`: the integers and ``factor``, chip units per float
unit in the float network that computes the same spikes (``theta / theta_int`` for neurons,
``1 / s`` for the readout), which training multiplies back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .formats import NumberFormat
from .layers import DROPOUTS, INPUT, Add, Concat, Scale, SumPool2d
from .neurons import LIF, SpikingNeuron

PASS_THROUGH = (nn.Identity, *DROPOUTS, SumPool2d, Add)
RESHAPING = (nn.Flatten, nn.Unflatten, Concat)


class FormatError(ValueError):
    """A network (or profile) that a chip's number format cannot represent; the message names
    the layer and the fix."""


@dataclass(frozen=True)
class FormatGroup:
    """The weighted layers that feed one neuron layer (or the readout), scaled together.

    Attributes
    ----------
    neuron:
        The neuron layer (``None`` for the readout).
    target:
        The node whose output is the group's current (the neuron's input, or the output layer).
    layers:
        Weighted layers, in topological order.
    gains:
        Per weighted layer, the product of ``1 / window`` of the average pools on its path.
    pools:
        The average pools inside the group (sum pools on the chip).
    per_row:
        Whether every layer's rows (output channels) are the neuron's channels, so that a
        scale per neuron (``"neuron"`` rule) applies.
    analog_input:
        Whether the network input reaches the group (direct encoding: analog currents).
    nodes:
        Every synaptic node between the sources and ``target``, in topological order.
    sources:
        The spiking layers (or ``"input"``) whose events reach the group.
    """

    neuron: str | None
    target: str
    layers: tuple[str, ...]
    gains: dict[str, float] = field(default_factory=dict)
    pools: tuple[str, ...] = ()
    per_row: bool = True
    analog_input: bool = False
    nodes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


def check_group_neuron(net, group: FormatGroup, fmt: NumberFormat, where: str = "",
                       error: type[FormatError] = FormatError, check_reset: bool = True) -> None:
    """An ``error`` (prefixed ``where`` when given) unless ``group``'s neuron (if any) is an IF or LIF
    layer that ``fmt``'s neurons can compute: a LIF needs a format with a decay, and with
    ``check_reset`` its reset must be one of the format's."""
    if group.neuron is None:
        return
    module = net.layer(group.neuron)
    layer = f"{where}: layer {group.neuron!r}" if where else f"Layer {group.neuron!r}"
    if not isinstance(module, SpikingNeuron):
        raise error(f"{layer} is a {type(module).__name__}; chips' "
                    f"formats apply to snnedge.IF and snnedge.LIF layers.")
    if isinstance(module, LIF) and fmt.decay_bits is None:
        raise error(f"{layer} is a LIF neuron (decay beta), but "
                    f"{fmt.name!r} neurons have no multiplicative leak. Use snnedge.IF layers "
                    f"for this chip (train or convert with IF neurons).")
    if check_reset and module.reset not in fmt.resets:
        raise error(f"{layer} resets by {module.reset!r}, which "
                    f"{fmt.name!r} lacks (it has {', '.join(fmt.resets)}). Build or convert the "
                    f"network with reset={fmt.resets[0]!r} to train it for this chip.")


def pool_gain(name: str, module: nn.Module, in_shape=None) -> float:
    """``1 / window`` of an average pool that becomes a sum pool, or a ``FormatError``."""
    if isinstance(module, nn.AvgPool2d):
        pads = module.padding if isinstance(module.padding, tuple) else (module.padding,)
        if module.ceil_mode or (any(pads) and not module.count_include_pad):
            raise FormatError(f"Layer {name!r} (AvgPool2d) divides border windows by fewer "
                              f"inputs (ceil_mode or count_include_pad=False), so it is no sum "
                              f"pool times a constant; use ceil_mode=False and count_include_pad=True.")
        k = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
        return 1.0 / (module.divisor_override or k[0] * k[1])
    if isinstance(module, nn.AvgPool1d):
        k = module.kernel_size[0] if isinstance(module.kernel_size, tuple) else module.kernel_size
        return 1.0 / k
    if isinstance(module, nn.AdaptiveAvgPool2d):
        window = adaptive_window(name, module, in_shape)
        return 1.0 / (window[0] * window[1])
    raise FormatError(f"Layer {name!r} is not an average pool.")


def adaptive_window(name: str, module: nn.AdaptiveAvgPool2d, in_shape) -> tuple[int, int]:
    """The fixed window of an adaptive average pool whose output tiles its input exactly."""
    if in_shape is None:
        raise FormatError(f"Layer {name!r} (AdaptiveAvgPool2d) has a window that depends on the "
                          f"input size: give the input shape (input_shape=(1, 28, 28), for example).")
    out = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,) * 2
    h, w = in_shape[-2:]
    out = tuple(h if o is None else o for o in out[:1]) + tuple(w if o is None else o for o in out[1:])
    if h % out[0] or w % out[1]:
        raise FormatError(f"Layer {name!r} (AdaptiveAvgPool2d to {out}) pools a {h}x{w} input into "
                          f"windows of different sizes; chips sum fixed windows. Use an input whose "
                          f"size the output divides, or an AvgPool2d.")
    return h // out[0], w // out[1]


def format_groups(net, input_shape=None) -> list[FormatGroup]:
    """The :class:`FormatGroup` of every neuron layer of ``net`` (a SpikingNetwork) and of its
    readout, in network order. ``input_shape`` is needed only for adaptive pools.

    Raises a :class:`FormatError` naming the layer for what a chip cannot scale: two weighted
    layers with no neuron between them, a source reaching neurons with no weighted layer on
    the way (an identity shortcut), a layer reached along paths of different pool gains, a
    ``Scale``."""
    shapes = None
    if input_shape is not None:
        shapes = dict(net.shapes(input_shape))
        shapes[INPUT] = tuple(int(d) for d in input_shape)
    groups = []
    for name in net.names:
        module = net.layer(name)
        if net.kind(name) == "temporal" and getattr(module, "emits_spikes", False):
            groups.append(_group(net, name, net.inputs_of(name)[0], shapes))
    if net.output_name in net.readout_names:
        groups.append(_group(net, None, net.output_name, shapes))
    return groups


def _is_source(net, name: str) -> bool:
    return name == INPUT or net.kind(name) == "temporal"


def _walk(net, start: str, shapes, pools: list[str], seen: set[str]):
    """Yield ``(node, gain, reshaped)`` for every weighted layer or source reached upwards
    from ``start`` through weight-free modules, with the product of the average pools' ``1 /
    window`` on the path and whether a Flatten, Unflatten or Concat lies on it. The
    weight-free nodes passed go into ``seen``."""
    stack = [(start, 1.0, False)]
    while stack:
        node, gain, reshaped = stack.pop()
        if _is_source(net, node) or net.kind(node) == "weighted":
            yield node, gain, reshaped
            continue
        seen.add(node)
        module = net.layer(node)
        ins = net.inputs_of(node)
        if isinstance(module, (nn.AvgPool2d, nn.AvgPool1d, nn.AdaptiveAvgPool2d)):
            gain *= pool_gain(node, module, None if shapes is None else shapes[ins[0]])
            if node not in pools:
                pools.append(node)
        elif isinstance(module, Scale):
            raise FormatError(f"Layer {node!r} is a Scale (a per-channel affine map) that no chip "
                              f"represents; fold it into the weighted layer next to it (as "
                              f"BatchNorm is folded) before mapping.")
        elif isinstance(module, RESHAPING):
            reshaped = True
        elif not isinstance(module, PASS_THROUGH):
            raise FormatError(f"Layer {node!r} ({type(module).__name__}) has no equivalent in a "
                              f"chip's number format.")
        stack += [(i, gain, reshaped) for i in ins]


def _group(net, neuron: str | None, target: str, shapes) -> FormatGroup:
    who = f"neurons {neuron!r}" if neuron else f"the readout {target!r}"
    pools: list[str] = []
    seen: set[str] = set()
    sources: set[str] = set()
    post: dict[str, float] = {}
    per_row = True
    for node, gain, reshaped in _walk(net, target, shapes, pools, seen):
        if _is_source(net, node):
            raise FormatError(
                f"Spikes of {node!r} reach {who} with no weighted layer between them (an "
                f"identity shortcut); a chip delivers spikes through synapses only. Put a 1x1 "
                f"convolution on that path.")
        _set_gain(post, node, gain, who)
        per_row &= not reshaped
    gains, analog = {}, False
    for layer, g_post in post.items():
        pre: dict[str, float] = {}
        for node, gain, _ in (hit for i in net.inputs_of(layer)
                                for hit in _walk(net, i, shapes, pools, seen)):
            if not _is_source(net, node):
                raise FormatError(f"Weighted layers {node!r} and {layer!r} follow each other with "
                                  f"no neuron between them; a chip scales each layer into its "
                                  f"neurons. Merge the two linear maps into one layer.")
            analog |= node == INPUT
            sources.add(node)
            _set_gain(pre, layer, gain, who)
        gains[layer] = g_post * pre.get(layer, 1.0)
    order = tuple(n for n in net.names if n in gains)
    nodes = tuple(n for n in net.names if n in gains or n in seen)
    return FormatGroup(neuron, target, order, {n: gains[n] for n in order},
                       tuple(n for n in net.names if n in pools), per_row and bool(order), analog,
                       nodes, tuple(n for n in (INPUT, *net.names) if n in sources))


def _set_gain(gains: dict, layer: str, gain: float, who: str) -> None:
    old = gains.get(layer)
    if old is not None and not math.isclose(old, gain, rel_tol=1e-12):
        raise FormatError(f"Layer {layer!r} reaches {who} along paths with different pooling "
                          f"(gains {old:g} and {gain:g}); a chip has one weight per synapse.")
    gains[layer] = gain


# --------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------
@dataclass
class GroupValues:
    """A group's float values with the pools folded in: what a rule scales.

    ``weights``: each layer's weight times its gain; ``bias``: the bias reaching the neurons
    (a map that broadcasts against one sample, or the readout's bias), ``threshold``: theta
    (a scalar or one per channel), ``state``: the initial membranes (a map); each ``None``
    where the group has none. With ``per_row`` rules, dimension 0 of ``bias`` and ``state``
    and the rows of every weight are the neurons' channels."""

    weights: dict[str, torch.Tensor]
    bias: torch.Tensor | None = None
    threshold: torch.Tensor | None = None
    state: torch.Tensor | None = None


@dataclass
class GroupIntegers:
    """A group in the chip's units (integers in float64 tensors, shapes as in
    :class:`GroupValues`).

    ``threshold`` is compared as the chip does (``>=``, or ``>`` for a strict format);
    ``scale`` is chip units per float unit (a scalar, or one per channel); ``factor`` is
    float units per chip unit in the float network that fires the same spikes (``theta /
    theta_int``, ``1 / scale`` for the readout); ``exponent`` the power-of-two rule's ``k``."""

    weights: dict[str, torch.Tensor]
    bias: torch.Tensor | None
    threshold: torch.Tensor | None
    state: torch.Tensor | None
    scale: torch.Tensor
    factor: torch.Tensor
    exponent: int | None = None


def sinabs_scale(x: torch.Tensor | None, bits: int) -> float:
    """sinabs' ``determine_discretization_scale``: the largest factor that fits ``x`` into a
    signed ``bits``-bit range ``[-2^(b-1), 2^(b-1) - 1]``, judged by its extremes (``inf`` for
    an empty or all-zero ``x``)."""
    if x is None or x.numel() == 0:
        return math.inf
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    mn, mx = float(x.min()), float(x.max())
    if abs(mn) <= abs(mx) * abs(lo / hi):
        return math.inf if mx == 0 else abs(hi / mx)
    return abs(lo / mn)


def row_levels(rows: torch.Tensor, levels: int, iters: int = 60) -> torch.Tensor:
    """Each row's non-zero entries replaced by the nearest of ``levels`` 1-D k-means centres
    of that row's non-zero entries (Lloyd's algorithm from the quantiles, so deterministic);
    zeros stay zeros (absent synapses), rows with at most ``levels`` distinct values stay."""
    rows = rows.detach().to(torch.float64)
    mask = rows != 0
    srt = torch.where(mask, rows, torch.full_like(rows, math.inf)).sort(dim=1).values
    distinct = ((srt[:, 1:] != srt[:, :-1]) & torch.isfinite(srt[:, 1:])).sum(1) + mask.any(1).long()
    todo = distinct > levels
    if not todo.any():
        return rows.clone()
    out = rows.clone()
    out[todo] = lloyd_rows(rows[todo], mask[todo], levels, iters)
    return out


def lloyd_rows(v: torch.Tensor, mask: torch.Tensor, k: int, iters: int = 60) -> torch.Tensor:
    """Float64 rows ``v`` with each ``mask`` ed entry replaced by the nearest of ``k`` 1-D
    k-means centres of its row's masked entries: Lloyd's algorithm started from the
    quantiles ``(i + 1/2) / k`` of the masked entries (deterministic), at most ``iters``
    rounds; entries outside ``mask`` unchanged. Every row needs a masked entry."""
    srt = torch.where(mask, v, torch.full_like(v, math.inf)).sort(dim=1).values
    count = mask.sum(1, keepdim=True)
    pos = ((torch.arange(k, dtype=torch.float64) + 0.5) / k * count).long()
    centres = srt.gather(1, pos.clamp(max=v.shape[1] - 1))
    assign = None
    for _ in range(iters):
        new = (v[:, :, None] - centres[:, None, :]).abs().argmin(-1)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        onehot = nn.functional.one_hot(assign, k).double() * mask[:, :, None]
        n = onehot.sum(1)
        centres = torch.where(n > 0, (onehot * v[:, :, None]).sum(1) / n.clamp(min=1), centres)
    return torch.where(mask, centres.gather(1, assign), v)


def _limit_scale(limit: float, x: torch.Tensor | None, rows: int | None) -> torch.Tensor:
    """``limit / max|x|`` (``inf`` where ``x`` is zero), per row of ``x`` when ``rows``."""
    if x is None:
        return torch.tensor(math.inf, dtype=torch.float64)
    x = x.detach().to(torch.float64)
    if rows is None:
        top = x.abs().max() if x.numel() else torch.tensor(0.0, dtype=torch.float64)
    elif x.dim() == 0 or x.numel() == 1:
        top = x.abs().reshape(()).expand(rows)
    else:
        top = x.reshape(rows, -1).abs().amax(1)
    return torch.where(top > 0, limit / top, torch.full_like(top, math.inf))


def _per_row(t: torch.Tensor | None, s: torch.Tensor) -> torch.Tensor | None:
    """``s`` shaped to scale ``t`` (dimension 0 its rows) when ``s`` is one value per row."""
    if t is None or s.dim() == 0 or t.dim() == 0:
        return s
    return s.view(-1, *([1] * (t.dim() - 1)))


def _clamped(x: torch.Tensor | None, s: torch.Tensor, lo: float, hi: float) -> torch.Tensor | None:
    return None if x is None else torch.round(x.detach().to(torch.float64) * _per_row(x, s)).clamp(lo, hi)


def quantize_bias(fmt: NumberFormat, b: torch.Tensor | None, s: torch.Tensor) -> torch.Tensor | None:
    """A bias in state units: ``round(b * s)`` in ``bias_bits``, or with an exponent, the
    smallest ``e`` in ``0 .. 2^bias_exponent_bits - 1`` whose ``round(b * s / 2^e)`` fits, times
    ``2^e`` (Loihi's ``bias_mant << bias_exp``)."""
    if b is None:
        return None
    top = 2 ** (fmt.bias_bits - 1) - 1
    x = b.detach().to(torch.float64) * _per_row(b, s)
    if fmt.bias_exponent_bits == 0:
        return torch.round(x).clamp(-top - 1, top)
    out = torch.full_like(x, math.nan)
    for e in range(2 ** fmt.bias_exponent_bits):
        mant = torch.round(x / 2 ** e)
        out = torch.where(torch.isnan(out) & (mant.abs() <= top), mant * 2 ** e, out)
    big = 2 ** (2 ** fmt.bias_exponent_bits - 1)
    return torch.where(torch.isnan(out), torch.round(x / big).clamp(-top - 1, top) * big, out)


def quantize_group(fmt: NumberFormat, values: GroupValues, per_row: bool = False) -> GroupIntegers:
    """``values`` in ``fmt``'s integers by its scale rule (see the module docstring).

    ``per_row`` (``"neuron"`` rule only): one scale per neuron channel instead of one per group;
    never for the readout (no threshold), whose accumulated outputs are compared with each other.
    """
    if fmt.bias_bits == 0 and values.bias is not None and bool((values.bias != 0).any()):
        raise FormatError(f"The {fmt.name!r} format has no bias; the network's weighted layers "
                          f"have non-zero biases. Train or convert without biases.")
    rule = {"layer": _layer_rule, "power-of-two": _power_rule, "neuron": _neuron_rule}[fmt.scale_rule]
    per_row = per_row and fmt.scale_rule == "neuron" and values.threshold is not None
    out = rule(fmt, values, per_row)
    if values.threshold is None:
        out.factor = 1.0 / out.scale
    else:
        theta = values.threshold.detach().to(torch.float64)
        out.factor = theta / (out.threshold + (1.0 if fmt.strict_threshold else 0.0))
    return out


def _finish(fmt: NumberFormat, values: GroupValues, weights: dict, s: torch.Tensor,
            shift: int = 0, exponent: int | None = None) -> GroupIntegers:
    lo, hi = fmt.state_range
    unit = float(2 ** shift)
    theta = _clamped(values.threshold, s / unit if shift else s, 1, fmt.threshold_max)
    return GroupIntegers(
        weights=weights, bias=quantize_bias(fmt, values.bias, s),
        threshold=None if theta is None else theta * unit,
        state=_clamped(values.state, s, lo, hi), scale=s, factor=torch.ones(()), exponent=exponent)


def _all_weights(values: GroupValues) -> torch.Tensor:
    return torch.cat([w.detach().reshape(-1).to(torch.float64) for w in values.weights.values()])


def _layer_rule(fmt: NumberFormat, values: GroupValues, per_row: bool) -> GroupIntegers:
    s = min(sinabs_scale(_all_weights(values), fmt.weight_bits),
            sinabs_scale(values.bias, fmt.bias_bits) if fmt.bias_bits else math.inf,
            sinabs_scale(values.threshold, fmt.state_bits),
            sinabs_scale(values.state, fmt.state_bits))
    s = torch.tensor(1.0 if math.isinf(s) else s, dtype=torch.float64)
    weights = {k: torch.round(w.detach().to(torch.float64) * s).clamp(fmt.weight_min, fmt.weight_max)
               for k, w in values.weights.items()}
    return _finish(fmt, values, weights, s)


def _log2_floor(limit: torch.Tensor) -> float:
    return math.inf if math.isinf(float(limit)) else math.floor(math.log2(float(limit)))


def _power_rule(fmt: NumberFormat, values: GroupValues, per_row: bool) -> GroupIntegers:
    unit = 2 ** fmt.state_shift
    hi = fmt.state_range[1]
    k = min(_log2_floor(_limit_scale(fmt.weight_max, _all_weights(values), None)),
            _log2_floor(_limit_scale(fmt.threshold_max, values.threshold, None)),
            _log2_floor(_limit_scale(fmt.bias_max / unit, values.bias, None)),
            _log2_floor(_limit_scale(hi / unit, values.state, None)))
    k = 0 if math.isinf(k) else int(k)
    step = 2.0 if fmt.weight_even else 1.0
    weights = {}
    for name, w in values.weights.items():
        mant = torch.round(w.detach().to(torch.float64) * 2.0 ** k / step) * step
        weights[name] = mant.clamp(fmt.weight_min, fmt.weight_max) * unit
    s = torch.tensor(2.0 ** (k + fmt.state_shift), dtype=torch.float64)
    return _finish(fmt, values, weights, s, fmt.state_shift, k)


def _neuron_rule(fmt: NumberFormat, values: GroupValues, per_row: bool) -> GroupIntegers:
    names = list(values.weights)
    rows = next(iter(values.weights.values())).shape[0]
    if per_row and any(w.shape[0] != rows for w in values.weights.values()):
        per_row = False
    flat = [values.weights[n].detach().to(torch.float64).reshape(values.weights[n].shape[0], -1)
            for n in names]
    if per_row:
        levels = row_levels(torch.cat(flat, 1), fmt.weight_levels or flat[0].shape[1])
        parts = levels.split([f.shape[1] for f in flat], 1)
    else:
        parts = [row_levels(f, fmt.weight_levels or f.shape[1]) for f in flat]
    n_rows = rows if per_row else None
    lim = torch.stack(torch.broadcast_tensors(
        _limit_scale(fmt.weight_max, torch.cat(parts, 1) if per_row else torch.cat(
            [p.reshape(-1) for p in parts]), n_rows),
        _limit_scale(fmt.threshold_max, values.threshold, n_rows),
        _limit_scale(fmt.bias_max, values.bias, n_rows),
        _limit_scale(fmt.state_range[1], values.state, n_rows)))
    s = lim.amin(0)
    s = torch.where(torch.isinf(s), torch.ones_like(s), s)
    weights = {n: torch.round(p * _per_row(p, s)).clamp(fmt.weight_min, fmt.weight_max)
                  .reshape(values.weights[n].shape) for n, p in zip(names, parts)}
    return _finish(fmt, values, weights, s)


# --------------------------------------------------------------------------------------
# a group's values read from a float network
# --------------------------------------------------------------------------------------
@torch.no_grad()
def group_values(net, group: FormatGroup, input_shape=None) -> GroupValues:
    """The float values of ``group`` in ``net``: weights times their gains, the neurons'
    threshold and, with ``input_shape``, their initial membranes and the exact bias map that
    reaches them (the group's layers run on zero input, borders included). Without
    ``input_shape`` the bias is the sum of the layers' bias vectors (what training scales)."""
    weights = {n: net.layer(n).weight.detach().to(torch.float64) * group.gains[n]
               for n in group.layers}
    neuron = None if group.neuron is None else net.layer(group.neuron)
    theta = None if neuron is None else neuron.threshold.detach().to(torch.float64)
    biases = [net.layer(n).bias for n in group.layers if net.layer(n).bias is not None]
    state = bias = None
    if input_shape is not None and group.neuron is not None:
        shapes = dict(net.shapes(input_shape))
        shapes[INPUT] = tuple(int(d) for d in input_shape)
        template = torch.zeros((1, *shapes[group.target]), dtype=torch.float64)
        state = neuron.initial_state(template.to(neuron.threshold.dtype)).to(torch.float64)[0]
        if biases:
            bias = _bias_map(net, group, shapes)
    elif biases:
        bias = biases[0].detach().to(torch.float64)
        for b in biases[1:]:
            bias = bias + b.detach().to(torch.float64) if b.shape == bias.shape else torch.cat(
                [bias, b.detach().to(torch.float64)])
    return GroupValues(weights, bias, theta, state)


def _bias_map(net, group: FormatGroup, shapes: dict) -> torch.Tensor:
    vals = {s: torch.zeros((1, *shapes[s]), dtype=torch.float64) for s in group.sources}
    for n in group.nodes:
        module = net.layer(n)
        xs = [vals[i].to(_dtype(module)) for i in net.inputs_of(n)]
        vals[n] = module(*xs).to(torch.float64)
    return vals[group.target][0]


def _dtype(module: nn.Module) -> torch.dtype:
    p = next((t for t in module.parameters() if t.is_floating_point()), None)
    return torch.float64 if p is None else p.dtype


def decay_factor(fmt: NumberFormat, beta: torch.Tensor) -> torch.Tensor:
    """The fixed-point decay ``2^decay_bits - dv`` with ``dv = round((1 - beta) * 2^decay_bits)``
    in ``[0, 2^decay_bits - 1]`` (lava's 12-bit ``dv``; the decay of one step is then
    ``(2^12 - dv) / 2^12``)."""
    if fmt.decay_bits is None:
        raise FormatError(f"The {fmt.name!r} format has no multiplicative leak: its neurons are "
                          f"integrate-and-fire. Use snnedge.IF layers (beta = 1).")
    full = 2 ** fmt.decay_bits
    dv = torch.round((1 - beta.detach().to(torch.float64)) * full).clamp(0, full - 1)
    return full - dv
