"""Node-level translation between snnedge layers and NIR primitives (see :mod:`.nir_io`).

``export_node`` writes one layer as one NIR node; ``import_node`` reads one NIR node as one
torch module. Graph-level work (edges, names, the readout, snnTorch's folding) is in
:mod:`snnedge.interop.nir_io`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..layers import Add, Concat, Narrow, Scale, SumPool2d
from ..neurons import IF, LIF, SpikingNeuron

#: snnTorch 1.0.0's importer reads every NIR LIF with this step (``dt = 1e-4`` in its code).
SNNTORCH_DT = 1e-4
#: ``tau`` written for a non-leaky neuron in the snnTorch flavor: ``1 - 1e-4 / 1e13`` rounds
#: to exactly 1.0 in float64 (and float32), so the imported ``Leaky`` has ``beta == 1``.
SNNTORCH_TAU = 1e13
GAIN_TOL = 1e-9  # r*dt (IF) or r*dt/tau (LIF) this close to 1 is read as exactly 1


def numpy_of(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def full_array(values, shape, dtype) -> np.ndarray:
    """Scalar or per-channel (dim 0 of a per-sample shape) values broadcast to ``shape``."""
    v = torch.as_tensor(values).detach().cpu()
    if v.dim() == 1 and len(shape) > 1:
        v = v.view(-1, *([1] * (len(shape) - 1)))
    return np.ascontiguousarray(torch.broadcast_to(v, tuple(shape)).numpy().astype(dtype))


def _ungrouped(w: np.ndarray, groups: int) -> np.ndarray:
    """The dense block-diagonal kernel of a grouped convolution (nir 1.0.8 infers a
    convolution's input channels from ``weight.shape[1]``, so grouped kernels fail its type
    check). The extra weights are zeros: the same sums, in another order."""
    if groups == 1:
        return w
    c_out, c_in_g = w.shape[:2]
    per = c_out // groups
    full = np.zeros((c_out, c_in_g * groups, *w.shape[2:]), w.dtype)
    for g in range(groups):
        full[g * per:(g + 1) * per, g * c_in_g:(g + 1) * c_in_g] = w[g * per:(g + 1) * per]
    return full


def export_node(nir, name, module, in_shape, out_shape, dt, flavor):
    """One snnedge layer as one NIR node (``ValueError`` naming the layer when NIR has none)."""
    where = f"Layer {name!r} ({type(module).__name__})"
    if isinstance(module, nn.Linear):
        if len(in_shape) != 1:
            raise ValueError(f"to_nir: {where} acts on per-sample shape {in_shape}; NIR's Affine "
                             f"takes vectors. Flatten before it.")
        w = numpy_of(module.weight)
        if module.bias is None:
            return nir.Linear(weight=w)
        return nir.Affine(weight=w, bias=numpy_of(module.bias))
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.padding_mode != "zeros":
            raise ValueError(f"to_nir: {where} uses padding_mode={module.padding_mode!r}; NIR "
                             f"convolutions pad with zeros.")
        w = _ungrouped(numpy_of(module.weight), module.groups)
        bias = numpy_of(module.bias) if module.bias is not None else np.zeros(w.shape[0], w.dtype)
        pad = module.padding if isinstance(module.padding, str) else tuple(module.padding)
        if isinstance(module, nn.Conv1d):
            return nir.Conv1d(input_shape=int(in_shape[1]), weight=w, stride=module.stride[0],
                              padding=pad if isinstance(pad, str) else pad[0],
                              dilation=module.dilation[0], groups=1, bias=bias)
        return nir.Conv2d(input_shape=tuple(int(s) for s in in_shape[1:]), weight=w,
                          stride=tuple(module.stride), padding=pad, dilation=tuple(module.dilation),
                          groups=1, bias=bias)
    if isinstance(module, (nn.AvgPool2d, SumPool2d, nn.AdaptiveAvgPool2d)):
        return _export_pool(nir, where, module, in_shape, out_shape, flavor)
    if isinstance(module, nn.Flatten):
        return _export_flatten(nir, module, in_shape, flavor)
    if isinstance(module, Scale):
        return _export_scale(nir, where, module, in_shape, flavor)
    if isinstance(module, Add):
        return nir.Scale(scale=np.ones(out_shape), metadata={"snnedge_module": "Add"})
    if isinstance(module, SpikingNeuron):
        return _export_neuron(nir, where, module, out_shape, dt, flavor)
    hint = {Concat: "NIR has no concatenation node",
            nn.Unflatten: "NIR has no reshape node besides Flatten",
            Narrow: "NIR has no slicing node (chunk, split)",
            nn.ChannelShuffle: "NIR has no channel permutation node"}.get(type(module))
    hint = hint or ("NIR has no max-pooling node (converters' spiking max pool keeps the ANN's "
                    "max over accumulated spike counts); convert an ANN with average pooling"
                    if "MaxPool" in type(module).__name__ else "NIR has no node for it")
    raise ValueError(f"to_nir: {where} cannot be written as NIR: {hint}. NIR export covers Linear, "
                     f"Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, Add, IF, LIF, CubaLIF, "
                     f"LI, Integrator, Threshold and Delay.")


def _export_pool(nir, where, module, in_shape, out_shape, flavor):
    if isinstance(module, nn.AdaptiveAvgPool2d):
        if any(i % o for i, o in zip(in_shape[1:], out_shape[1:])):
            raise ValueError(f"to_nir: {where} maps {tuple(in_shape[1:])} to {tuple(out_shape[1:])}, "
                             f"which no fixed AvgPool2d window does; NIR has no adaptive pooling.")
        k = tuple(i // o for i, o in zip(in_shape[1:], out_shape[1:]))
        return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(k), padding=np.array((0, 0)))
    k, s, p = (np.array(v if isinstance(v, (tuple, list)) else (v, v)) for v in
               (module.kernel_size, module.stride, module.padding))
    if isinstance(module, SumPool2d):
        if flavor == "snntorch" and p.any():
            raise ValueError(f"to_nir(flavor='snntorch'): {where} pads, and the LPPool2d that "
                             f"nirtorch builds for a NIR SumPool2d cannot.")
        return nir.SumPool2d(kernel_size=k, stride=s, padding=p)
    if module.ceil_mode or module.divisor_override or (p.any() and not module.count_include_pad):
        raise ValueError(f"to_nir: {where} uses ceil_mode, divisor_override or "
                         f"count_include_pad=False, which NIR's AvgPool2d cannot say.")
    return nir.AvgPool2d(kernel_size=k, stride=s, padding=p)


def _export_flatten(nir, module, in_shape, flavor):
    nd = len(in_shape)

    def per_sample(d: int) -> int:
        if d < 0:  # counted from the end: the same with or without the batch dimension
            return d
        return d - 1 - nd if flavor == "snntorch" else d - 1  # torch counts the batch dimension
    return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=per_sample(module.start_dim),
                       end_dim=per_sample(module.end_dim))


def _export_scale(nir, where, module, in_shape, flavor):
    if flavor == "snntorch":
        raise ValueError(f"to_nir(flavor='snntorch'): {where} could not be folded into a weighted "
                         f"layer before it, and snnTorch 1.0.0 cannot run a NIR Scale node.")
    scale = full_array(module.scale, in_shape, np.float64).astype(numpy_of(module.scale).dtype)
    if module.bias is None:
        return nir.Scale(scale=scale)
    c = in_shape[0]
    s_c = numpy_of(torch.broadcast_to(module.scale, (c,)) if module.scale.dim() == 0 else module.scale)
    b_c = numpy_of(torch.broadcast_to(module.bias, (c,)) if module.bias.dim() == 0 else module.bias)
    if len(in_shape) == 1:
        return nir.Affine(weight=np.diag(s_c), bias=b_c, metadata={"snnedge_module": "Scale"})
    if len(in_shape) == 3:  # a diagonal 1x1 convolution (nir 1.0.8 mistypes grouped ones)
        return nir.Conv2d(input_shape=tuple(int(v) for v in in_shape[1:]),
                          weight=np.diag(s_c).reshape(c, c, 1, 1), stride=1, padding=0, dilation=1,
                          groups=1, bias=b_c, metadata={"snnedge_module": "Scale"})
    raise ValueError(f"to_nir: {where} with a bias on per-sample shape {in_shape} has no NIR form "
                     f"(NIR's Scale has no bias).")


def exact_tau(beta: np.ndarray, dt: float) -> np.ndarray:
    """``tau = dt / (1 - beta)``, nudged by ulps so that ``1 - dt / tau == beta`` in float64."""
    tau = dt / (1.0 - beta)
    for _ in range(8):
        back = 1.0 - dt / tau
        if np.array_equal(back, beta):
            break
        # 1 - dt/tau grows with tau: move tau towards the side that fixes the difference.
        tau = np.where(back < beta, np.nextafter(tau, np.inf), np.where(back > beta, np.nextafter(tau, 0), tau))
    return tau


def _export_neuron(nir, where, module: SpikingNeuron, shape, dt, flavor):
    dtype = numpy_of(module.threshold).dtype
    theta = full_array(module.threshold, shape, dtype)
    v0 = initial_membrane(module, shape)
    meta = {"snnedge_reset": module.reset, "dt": dt,
            "snnedge_v_init": v0 if isinstance(v0, float) else v0.numpy()}
    beta = None
    if isinstance(module, LIF):
        beta = _beta_full(module, shape)
        if np.all(beta == 1.0):
            beta = None
        elif np.any(beta == 1.0):
            raise ValueError(f"to_nir: {where} mixes beta == 1 with beta < 1 across channels; NIR's "
                             f"LIF needs a finite tau for every neuron.")
    zeros = np.zeros(shape, dtype)
    if flavor == "snntorch":
        if beta is None:
            tau = np.full(shape, SNNTORCH_TAU)
        else:
            tau = exact_tau(beta, SNNTORCH_DT)
        return nir.LIF(tau=tau, r=tau / SNNTORCH_DT, v_leak=zeros, v_threshold=theta, v_reset=zeros,
                       metadata=meta)
    if beta is None:
        return nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=theta, v_reset=zeros, metadata=meta)
    tau = exact_tau(beta, dt)
    return nir.LIF(tau=tau, r=tau / dt, v_leak=zeros, v_threshold=theta, v_reset=zeros, metadata=meta)


def _beta_full(module: LIF, shape) -> np.ndarray:
    return full_array(module.decay.detach().to(torch.float64), shape, np.float64)


def _as_tensor(a) -> torch.Tensor:
    a = np.asarray(a)
    return torch.from_numpy(a.copy() if a.dtype.kind == "f" else a.astype(np.float32))


def _ints(v, n: int) -> tuple[int, ...]:
    a = np.asarray(v).reshape(-1)
    return tuple(int(x) for x in (a if a.size == n else np.repeat(a[:1], n)))


def per_channel_value(a: np.ndarray, key: str, node, what: str):
    """A scalar, or one value per channel (dim 0 of the neuron shape), from a full array."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        raise ValueError(f"from_nir: NIR node {key!r} ({type(node).__name__}) has an empty {what}.")
    flat = a.reshape(-1)
    if np.all(flat == flat[0]):
        return float(flat[0]) if a.dtype.kind == "f" else flat[0]
    per_c = a.reshape(a.shape[0], -1)
    if a.ndim >= 1 and np.all(per_c == per_c[:, :1]):
        return per_c[:, 0].copy()
    raise ValueError(f"from_nir: NIR node {key!r} ({type(node).__name__}) has a {what} that varies "
                     f"within a channel; snnedge takes one value per layer or per channel.")


def typed_tensor(value, like: np.ndarray) -> torch.Tensor:
    """Keep NIR's float type (float32 values stay float32, float64 stay float64)."""
    dtype = torch.float64 if np.asarray(like).dtype == np.float64 else torch.float32
    return torch.as_tensor(value, dtype=dtype)


def import_node(nir, key: str, node, reset: str, dt: float, v_init: float) -> nn.Module:
    """One NIR node as one torch module (``ValueError`` naming the node and its type when
    snnedge cannot run it)."""
    kind = type(node).__name__
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight)
        if w.ndim != 2:
            raise ValueError(f"from_nir: NIR node {key!r} ({kind}) has a weight of shape {w.shape}; "
                             f"snnedge takes 2-D (out, in) weights.")
        bias = np.asarray(node.bias) if isinstance(node, nir.Affine) else None
        m = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, dtype=_as_tensor(w).dtype)
        with torch.no_grad():
            m.weight.copy_(_as_tensor(w))
            if bias is not None:
                m.bias.copy_(_as_tensor(bias).to(m.weight.dtype))
        return m
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = np.asarray(node.weight)
        n = w.ndim - 2
        cls = nn.Conv1d if n == 1 else nn.Conv2d
        pad = node.padding if isinstance(node.padding, str) else _ints(node.padding, n)
        bias = np.asarray(node.bias) if node.bias is not None else None
        has_bias = bias is not None and np.any(bias != 0)
        groups = int(np.asarray(node.groups).reshape(-1)[0])
        m = cls(w.shape[1] * groups, w.shape[0], w.shape[2:], stride=_ints(node.stride, n),
                padding=pad, dilation=_ints(node.dilation, n), groups=groups, bias=has_bias,
                dtype=_as_tensor(w).dtype)
        with torch.no_grad():
            m.weight.copy_(_as_tensor(w))
            if has_bias:
                m.bias.copy_(_as_tensor(bias).to(m.weight.dtype))
        return m
    if isinstance(node, nir.Flatten):
        def torch_dim(d):
            d = int(d)
            return d + 1 if d >= 0 else d
        return nn.Flatten(torch_dim(node.start_dim), torch_dim(node.end_dim))
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        k, s, p = (_ints(v, 2) for v in (node.kernel_size, node.stride, node.padding))
        return nn.AvgPool2d(k, s, p) if isinstance(node, nir.AvgPool2d) else SumPool2d(k, s, p)
    if kind == "Identity":
        return nn.Identity()
    if isinstance(node, nir.Scale):
        scale = per_channel_value(node.scale, key, node, "scale")
        return Scale(typed_tensor(scale, node.scale))
    if isinstance(node, (nir.IF, nir.LIF)):
        return _import_neuron(nir, key, node, reset, dt, v_init)
    supported = ("Input, Output, Identity, Affine, Linear, Conv1d, Conv2d, Flatten, AvgPool2d, "
                 "SumPool2d, Scale, IF, LIF, CubaLIF, LI, I, Threshold, Delay and subgraphs (NIRGraph)")
    why = {"CubaLI": "a current-based leaky integrator, which snnedge has no layer for (a CubaLIF "
                     "that never fires is one: give it an unreachable threshold)",
           }.get(kind, "a node type snnedge does not know")
    raise ValueError(f"from_nir: NIR node {key!r} is a {kind}: {why}. snnedge imports {supported}.")


def _import_neuron(nir, key, node, reset, dt, v_init):
    kind = type(node).__name__
    theta = np.asarray(node.v_threshold, dtype=np.float64)
    r = np.asarray(node.r, dtype=np.float64)
    v_reset = np.asarray(node.v_reset if node.v_reset is not None else 0.0, dtype=np.float64)
    if reset == "zero" and np.any(v_reset != 0):
        raise ValueError(f"from_nir: NIR node {key!r} ({kind}) resets to v_reset = "
                         f"{np.unique(v_reset)[:4].tolist()}; snnedge resets to 0 (reset='zero') or "
                         f"subtracts the threshold (reset='subtract').")
    if isinstance(node, nir.LIF):
        tau = np.asarray(node.tau, dtype=np.float64)
        if np.any(np.asarray(node.v_leak) != 0):
            raise ValueError(f"from_nir: NIR node {key!r} (LIF) has v_leak != 0; snnedge's LIF "
                             f"leaks towards 0.")
        beta = 1.0 - dt / tau
        with np.errstate(invalid="ignore"):
            # tau = r = inf is how snnTorch writes beta = 1 (r = tau/dt): the gain's limit is 1.
            gain = np.where(np.isinf(tau) & np.isinf(r), 1.0, dt * r / tau)
        if np.any(beta <= 0) or np.any(beta > 1):
            raise ValueError(f"from_nir: NIR node {key!r} (LIF) gives beta = 1 - dt/tau = "
                             f"{float(np.min(beta)):g} with dt={dt:g} and tau={float(np.min(tau)):g}; beta "
                             f"must be in (0, 1]. Pass the step the graph was written with "
                             f"(snnTorch uses dt=1e-4).")
    else:
        beta = None
        gain = r * dt
    gain = np.where(np.abs(gain - 1.0) <= GAIN_TOL, 1.0, gain)
    if np.any(gain <= 0) or not np.all(np.isfinite(gain)):
        raise ValueError(f"from_nir: NIR node {key!r} ({kind}) has an input gain of "
                         f"{float(np.min(gain)):g} (r and tau with dt={dt:g}); it must be positive.")
    theta = np.broadcast_to(theta / gain if np.any(gain != 1.0) else theta, np.broadcast_shapes(
        theta.shape, gain.shape))
    theta_v = per_channel_value(theta, key, node, "threshold")
    like = node.v_threshold
    v_map = torch.as_tensor(v_init, dtype=torch.float64)
    preset = v_map.dim() > 0 or not 0.0 <= float(v_map) <= 1.0
    if preset and v_map.dim() > 0 and v_map.numel() != theta.size:
        raise ValueError(f"from_nir: the initial membrane given for NIR node {key!r} ({kind}) has "
                         f"{v_map.numel()} values for {theta.size} neurons of shape {theta.shape}.")
    if beta is None or np.all(beta == 1.0):
        module = PresetIF(v_map.reshape(theta.shape), reset=reset) if preset else IF(
            threshold=1.0, reset=reset, v_init=float(v_map))
    else:
        module = PresetLIF(v_map.reshape(theta.shape), reset=reset) if preset else LIF(
            beta=0.5, threshold=1.0, reset=reset, v_init=float(v_map))
        module.beta = typed_tensor(per_channel_value(np.broadcast_to(beta, theta.shape), key, node, "beta"), like)
    module.threshold = typed_tensor(theta_v, like)
    return module


class _PresetMembrane:
    """Per-neuron initial membrane ``v_init_map`` (fractions of the threshold, any sign),
    for networks whose neurons start unevenly (e.g. converters' membrane calibration)."""

    def _set_map(self, v_init_map: torch.Tensor) -> None:
        self.register_buffer("v_init_map", torch.as_tensor(v_init_map).detach().clone())

    def initial_state(self, template: torch.Tensor) -> torch.Tensor:
        theta = self.threshold_for(template)
        return (self.v_init_map.to(template) * theta).expand_as(template).clone()


class PresetIF(_PresetMembrane, IF):
    """:class:`snnedge.IF` starting from a per-neuron membrane ``v_init_map * theta``."""

    def __init__(self, v_init_map, threshold=1.0, reset: str = "subtract"):
        IF.__init__(self, threshold=threshold, reset=reset)
        self._set_map(v_init_map)


class PresetLIF(_PresetMembrane, LIF):
    """:class:`snnedge.LIF` starting from a per-neuron membrane ``v_init_map * theta``."""

    def __init__(self, v_init_map, beta=0.9, threshold=1.0, reset: str = "subtract"):
        LIF.__init__(self, beta=beta, threshold=threshold, reset=reset)
        self._set_map(v_init_map)


@torch.no_grad()
def initial_membrane(module: SpikingNeuron, shape) -> float | torch.Tensor:
    """A neuron layer's initial membrane in units of its threshold: one number when every
    neuron starts alike, else a tensor of the layer's per-sample ``shape``."""
    if type(module).initial_state is SpikingNeuron.initial_state:
        return float(module.v_init)
    if isinstance(getattr(module, "v_init_map", None), torch.Tensor):
        v = module.v_init_map.detach().to(torch.float64)
    else:  # any other start: read it off the module
        template = torch.zeros((1, *shape), dtype=torch.float64)
        theta = module.threshold_for(template).detach()
        v = (module.initial_state(template) / theta)[0]
    v = torch.broadcast_to(v, tuple(shape))
    flat = v.reshape(-1)
    return float(flat[0]) if bool((flat == flat[0]).all()) else v.clone()
