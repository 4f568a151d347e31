r"""NIR export and import: :func:`to_nir`, :func:`from_nir`.

NIR, the Neuromorphic Intermediate Representation (Pedersen et al., Nat. Commun. 15:8122,
2024, doi:10.1038/s41467-024-52259-9), describes a network as a graph of continuous-time
primitives. snnedge's discrete-time neurons are written with the forward-Euler reading that
NIR's reference simulators and snnTorch use, one snnedge step being ``dt``::

    NIR IF :  dv/dt = r I                       ->  v[t] = v[t-1] + (r dt) I[t]
    NIR LIF:  tau dv/dt = (v_leak - v) + r I    ->  v[t] = (1 - dt/tau) v[t-1] + (dt r / tau) I[t]

so snnedge's ``IF`` is written as ``IF(r = 1/dt)`` and ``LIF(beta)`` as
``LIF(tau = dt / (1 - beta), r = tau / dt, v_leak = 0)`` (``tau`` nudged by a few ulps when
needed so that ``1 - dt/tau`` gives ``beta`` back exactly). NIR cannot say three things, so
they are explicit options of :func:`from_nir` (and only written as metadata by
:func:`to_nir`, never read back from it):

* the reset: NIR neurons reset to ``v_reset``; reset by subtraction (converted networks,
  snnTorch's ``Leaky``) does not exist in NIR;
* ``dt``: the step that turns the equations above into snnedge's per-step updates;
* the initial membrane (``v_init``, a fraction of the threshold).

NIR spikes when ``v > v_threshold``; snnedge when ``v >= theta``. The two differ only when a
membrane equals its threshold exactly.

Layers map one to one: Linear -> ``Affine``/``Linear``, Conv1d/Conv2d -> ``Conv1d``/``Conv2d``,
AvgPool2d -> ``AvgPool2d``, SumPool2d -> ``SumPool2d``, Flatten -> ``Flatten``,
Scale -> ``Scale`` (with a bias: a diagonal 1x1 ``Conv2d`` or a diagonal ``Affine``),
Add -> a unit ``Scale`` whose several incoming edges NIR sums; Identity and Dropout are
dropped. The readout (the layers after the last neuron) is exported as plain synaptic nodes
before ``Output``; :func:`from_nir` makes them the readout again. nir is imported only when
these functions run (it is in the ``peers`` extra).

``flavor="snntorch"`` writes what snnTorch 1.0.0's ``import_from_nir`` runs faithfully (read
in its ``import_nir.py``): it builds a leaky ``Leaky(beta=0.9)`` from a NIR ``IF``, so a
non-leaky neuron is written as a NIR ``LIF`` with ``tau`` so long (:data:`SNNTORCH_TAU`) that
the importer's ``beta = 1 - 1e-4 / tau`` is exactly 1.0; it needs one threshold per layer,
so thresholds are folded into the incoming weights and every threshold is 1; its ``LIF``
always resets to zero from a zero membrane, so the network must use ``reset="zero"`` and
``v_init=0`` (``strict=False`` exports anyway and says what snnTorch will run instead);
its ``Flatten`` passes NIR's per-sample ``start_dim`` to ``torch.nn.Flatten`` unchanged, so
the flavor writes a negative ``start_dim``, which reads the same with or without the batch.
"""
from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ..errors import check_choice, check_real
from ..layers import Add, Concat, Scale, SumPool2d
from ..network import INPUT, Node, SpikingNetwork
from ..neurons import IF, LIF, SpikingNeuron

FLAVORS = ("nir", "snntorch")
RESETS = ("subtract", "zero")
#: snnTorch 1.0.0's importer reads every NIR LIF with this step (``dt = 1e-4`` in its code).
SNNTORCH_DT = 1e-4
#: ``tau`` written for a non-leaky neuron in the snnTorch flavor: ``1 - 1e-4 / 1e13`` rounds
#: to exactly 1.0 in float64 (and float32), so the imported ``Leaky`` has ``beta == 1``.
SNNTORCH_TAU = 1e13
_GAIN_TOL = 1e-9  # r*dt (IF) or r*dt/tau (LIF) this close to 1 is read as exactly 1
_POOLS = (nn.AvgPool2d, SumPool2d, nn.AdaptiveAvgPool2d, nn.Identity, nn.Dropout)


def _nir():
    try:
        import nir
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("NIR export/import needs the 'nir' package: pip install 'snnedge[peers]' "
                          "(or pip install nir).") from e
    return nir


# --------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------
def to_nir(snn: SpikingNetwork, path: str | os.PathLike | None = None, *, dt: float | None = None,
           input_shape=None, flavor: str = "nir", strict: bool = True):
    """Export ``snn`` as a ``nir.NIRGraph`` (and write it to ``path`` when given).

    Parameters
    ----------
    snn:
        The network. It is not modified.
    path:
        File to write (NIR's HDF5 format, read back with ``nir.read`` or :func:`from_nir`).
    dt:
        Seconds (or any unit) per snnedge step; default 1.0, and :data:`SNNTORCH_DT` for the
        snnTorch flavor (the only step its importer uses).
    input_shape:
        Shape of one sample, when the network does not carry it (``snn.input_shape``).
    flavor:
        ``"nir"``: the plain NIR reading (module docstring). ``"snntorch"``: what snnTorch
        1.0.0's ``import_from_nir`` runs faithfully (thresholds folded into weights, non-leaky
        neurons as ``LIF`` with beta exactly 1, negative ``Flatten.start_dim``).
    strict:
        For the snnTorch flavor: refuse networks snnTorch would run differently (reset by
        subtraction, a non-zero initial membrane). ``strict=False`` exports them with a
        warning; snnTorch then resets to zero from a zero membrane.

    Returns
    -------
    nir.NIRGraph
        Nodes named after the layers, plus ``input`` and ``output``; graph metadata records
        ``dt``, the flavor and, per neuron node, the reset and ``v_init`` (informative only).

    Example
    -------
    >>> import torch.nn as nn, snnedge
    >>> net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(), nn.Linear(3, 2))
    >>> g = snnedge.interop.to_nir(net, input_shape=(4,))
    >>> sorted(g.nodes), type(g.nodes["1"]).__name__
    (['0', '1', '2', 'input', 'output'], 'IF')
    """
    nir = _nir()
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"to_nir expects a snnedge.SpikingNetwork. Got {type(snn).__name__}.")
    check_choice(flavor, FLAVORS, param="flavor", where="to_nir")
    if dt is None:
        dt = SNNTORCH_DT if flavor == "snntorch" else 1.0
    dt = check_real(dt, param="dt", where="to_nir", low=0.0, low_open=True)
    if flavor == "snntorch" and dt != SNNTORCH_DT:
        raise ValueError(f"The 'dt' parameter of to_nir must be {SNNTORCH_DT} with flavor='snntorch' "
                         f"(snnTorch 1.0.0's importer fixes dt = 1e-4). Got {dt!r}; leave it out.")
    shape = input_shape if input_shape is not None else snn.input_shape
    if shape is None:
        raise ValueError("to_nir needs the shape of one input sample: pass input_shape=(1, 28, 28) "
                         "(or build the network with input_shape=...).")
    shape = tuple(int(s) for s in shape)
    net = copy.deepcopy(snn).cpu()
    if flavor == "snntorch":
        net = _fold_for_snntorch(net, strict)
    shapes = net.shapes(shape)
    shapes[INPUT] = shape
    nodes, bypass = {}, {}
    out_name = "output" if "output" not in net._names else "output_"
    for name in net._names:
        module = net.layer(name)
        ins = net.inputs_of(name)
        in_shape = shapes[ins[0]]
        if isinstance(module, (nn.Identity, nn.Dropout)) or (isinstance(module, Add) and flavor == "snntorch"):
            bypass[name] = ins  # NIR sums edges into a node: an Add needs no node of its own
            continue
        nodes[name] = _export_node(nir, name, module, in_shape, shapes[name], dt, flavor)
    nodes = {"input": nir.Input(input_type=np.array(shape)), **nodes}
    nodes[out_name] = nir.Output(output_type=np.array(shapes[net.output_name]))

    def sources(i: str) -> list[str]:
        if i == INPUT:
            return ["input"]
        if i in bypass:
            return [s for j in bypass[i] for s in sources(j)]
        return [i]

    edges = []
    for name in nodes:
        if name in ("input", out_name):
            continue
        edges += [(s, name) for i in net.inputs_of(name) for s in sources(i)]
    edges += [(s, out_name) for s in sources(net.output_name)]
    if len(set(edges)) != len(edges):
        raise ValueError("to_nir: a junction adds the same layer twice (an Add of one input with "
                         "itself); NIR edges cannot say that. Use a Scale of 2 instead.")
    meta = {"snnedge_version": _version(), "snnedge_flavor": flavor, "dt": dt,
            "note": "reset, dt and v_init are options of snnedge.from_nir; metadata is informative"}
    return _finish(nir, nodes, edges, meta, path)


def _finish(nir, nodes, edges, meta, path):
    try:
        graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    except (ValueError, AssertionError) as e:
        raise ValueError(f"to_nir: NIR's type check refused the exported graph: {e}") from e
    if path is not None:
        nir.write(path, graph)
    return graph


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("snnedge")
    except PackageNotFoundError:
        return "0.0.0+local"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _full(values, shape, dtype) -> np.ndarray:
    """Scalar or per-channel (dim 0 of a per-sample shape) values broadcast to ``shape``."""
    v = torch.as_tensor(values).detach().cpu()
    if v.dim() == 1 and len(shape) > 1:
        v = v.view(-1, *([1] * (len(shape) - 1)))
    return np.ascontiguousarray(torch.broadcast_to(v, tuple(shape)).numpy().astype(dtype))


def _export_node(nir, name, module, in_shape, out_shape, dt, flavor):
    where = f"Layer {name!r} ({type(module).__name__})"
    if isinstance(module, nn.Linear):
        if len(in_shape) != 1:
            raise ValueError(f"to_nir: {where} acts on per-sample shape {in_shape}; NIR's Affine "
                             f"takes vectors. Flatten before it.")
        w = _np(module.weight)
        if module.bias is None:
            return nir.Linear(weight=w)
        return nir.Affine(weight=w, bias=_np(module.bias))
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.padding_mode != "zeros":
            raise ValueError(f"to_nir: {where} uses padding_mode={module.padding_mode!r}; NIR "
                             f"convolutions pad with zeros.")
        w = _np(module.weight)
        bias = _np(module.bias) if module.bias is not None else np.zeros(w.shape[0], w.dtype)
        if isinstance(module, nn.Conv1d):
            return nir.Conv1d(input_shape=int(in_shape[1]), weight=w, stride=module.stride[0],
                              padding=module.padding if isinstance(module.padding, str) else module.padding[0],
                              dilation=module.dilation[0], groups=module.groups, bias=bias)
        return nir.Conv2d(input_shape=tuple(int(s) for s in in_shape[1:]), weight=w,
                          stride=tuple(module.stride), padding=module.padding if isinstance(
                              module.padding, str) else tuple(module.padding),
                          dilation=tuple(module.dilation), groups=module.groups, bias=bias)
    if isinstance(module, (nn.AvgPool2d, SumPool2d, nn.AdaptiveAvgPool2d)):
        return _export_pool(nir, where, module, in_shape, out_shape)
    if isinstance(module, nn.Flatten):
        return _export_flatten(nir, module, in_shape, flavor)
    if isinstance(module, Scale):
        return _export_scale(nir, where, module, in_shape, flavor)
    if isinstance(module, Add):
        return nir.Scale(scale=np.ones(out_shape), metadata={"snnedge_module": "Add"})
    if isinstance(module, SpikingNeuron):
        return _export_neuron(nir, where, module, out_shape, dt, flavor)
    hint = {Concat: "NIR has no concatenation node",
            nn.Unflatten: "NIR has no reshape node besides Flatten"}.get(type(module))
    hint = hint or ("converters' spiking max pool has no NIR node; convert an ANN with average "
                    "pooling" if "MaxPool" in type(module).__name__ else
                    "NIR has no node for it")
    raise ValueError(f"to_nir: {where} cannot be written as NIR: {hint}. NIR export covers Linear, "
                     f"Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, Add, IF and LIF.")


def _export_pool(nir, where, module, in_shape, out_shape):
    if isinstance(module, nn.AdaptiveAvgPool2d):
        if any(i % o for i, o in zip(in_shape[1:], out_shape[1:])):
            raise ValueError(f"to_nir: {where} maps {tuple(in_shape[1:])} to {tuple(out_shape[1:])}, "
                             f"which no fixed AvgPool2d window does; NIR has no adaptive pooling.")
        k = tuple(i // o for i, o in zip(in_shape[1:], out_shape[1:]))
        return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(k), padding=np.array((0, 0)))
    k, s, p = (np.array(v if isinstance(v, (tuple, list)) else (v, v)) for v in
               (module.kernel_size, module.stride, module.padding))
    if isinstance(module, SumPool2d):
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
    scale = _full(module.scale, in_shape, np.float64).astype(_np(module.scale).dtype)
    if module.bias is None:
        return nir.Scale(scale=scale)
    c = in_shape[0]
    s_c = _np(torch.broadcast_to(module.scale, (c,)) if module.scale.dim() == 0 else module.scale)
    b_c = _np(torch.broadcast_to(module.bias, (c,)) if module.bias.dim() == 0 else module.bias)
    if len(in_shape) == 1:
        return nir.Affine(weight=np.diag(s_c), bias=b_c, metadata={"snnedge_module": "Scale"})
    if len(in_shape) == 3:  # a diagonal 1x1 convolution (nir 1.0.8 mistypes grouped ones)
        return nir.Conv2d(input_shape=tuple(int(v) for v in in_shape[1:]),
                          weight=np.diag(s_c).reshape(c, c, 1, 1), stride=1, padding=0, dilation=1,
                          groups=1, bias=b_c, metadata={"snnedge_module": "Scale"})
    raise ValueError(f"to_nir: {where} with a bias on per-sample shape {in_shape} has no NIR form "
                     f"(NIR's Scale has no bias).")


def _exact_tau(beta: np.ndarray, dt: float) -> np.ndarray:
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
    dtype = _np(module.threshold).dtype
    theta = _full(module.threshold, shape, dtype)
    meta = {"snnedge_reset": module.reset, "snnedge_v_init": float(module.v_init), "dt": dt}
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
            tau = _exact_tau(beta, SNNTORCH_DT)
        return nir.LIF(tau=tau, r=tau / SNNTORCH_DT, v_leak=zeros, v_threshold=theta, v_reset=zeros,
                       metadata=meta)
    if beta is None:
        return nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=theta, v_reset=zeros, metadata=meta)
    tau = _exact_tau(beta, dt)
    return nir.LIF(tau=tau, r=tau / dt, v_leak=zeros, v_threshold=theta, v_reset=zeros, metadata=meta)


def _beta_full(module: LIF, shape) -> np.ndarray:
    b = torch.sigmoid(module.beta_logit) if module.learn_beta else module.beta
    return _full(b.detach().to(torch.float64), shape, np.float64)


def _fold_for_snntorch(net: SpikingNetwork, strict: bool) -> SpikingNetwork:
    """A copy with Scale layers and thresholds folded into the weighted layer before them."""
    for name in net._names:
        module = net.layer(name)
        if isinstance(module, Scale):
            w_name = net.inputs_of(name)[0]
            if w_name == INPUT or net.kind(w_name) != "weighted" or len(net.consumers_of(w_name)) != 1:
                continue  # left for the exporter's error
            _scale_out_channels(net.layer(w_name), module.scale, module.bias)
            _replace(net, name, nn.Identity())
    for name in net.neuron_layers:
        module = net.layer(name)
        if isinstance(module, SpikingNeuron):
            problems = []
            if module.reset != "zero":
                problems.append(f"reset={module.reset!r} (snnTorch's imported Leaky resets to zero)")
            if module.v_init != 0:
                problems.append(f"v_init={module.v_init:g} (snnTorch's membranes start at 0)")
            if problems:
                msg = (f"to_nir(flavor='snntorch'): layer {name!r} has {' and '.join(problems)}, so "
                       f"snnTorch 1.0.0 would run a different network. Convert with "
                       f"reset='zero', v_init=0.0, or pass strict=False to export anyway.")
                if strict:
                    raise ValueError(msg)
                warnings.warn(msg.replace(", or pass strict=False to export anyway", ""), stacklevel=3)
        theta = module.threshold.detach()
        if torch.all(theta == 1):
            continue
        w_name = name
        while True:
            w_name = net.inputs_of(w_name)[0]
            if w_name == INPUT or not (net.kind(w_name) == "weighted" or isinstance(net.layer(w_name), _POOLS)):
                raise ValueError(f"to_nir(flavor='snntorch'): layer {name!r} has threshold(s) "
                                 f"{theta.tolist()} and snnTorch needs 1; they fold into the weighted "
                                 f"layer before it, but {w_name!r} is in the way.")
            if len(net.consumers_of(w_name)) != 1:
                raise ValueError(f"to_nir(flavor='snntorch'): cannot fold the thresholds of {name!r} "
                                 f"into {w_name!r}, which also feeds {list(net.consumers_of(w_name))}.")
            if net.kind(w_name) == "weighted":
                break
        _scale_out_channels(net.layer(w_name), 1.0 / theta, None)
        module.threshold.data = torch.ones_like(theta)
    return net


def _scale_out_channels(layer: nn.Module, scale, bias) -> None:
    with torch.no_grad():
        s = torch.as_tensor(scale, dtype=layer.weight.dtype)
        s_w = s if s.dim() == 0 else s.view(-1, *([1] * (layer.weight.dim() - 1)))
        layer.weight.mul_(s_w)
        if layer.bias is not None:
            layer.bias.mul_(s)
        if bias is not None:
            b = torch.broadcast_to(torch.as_tensor(bias, dtype=layer.weight.dtype), (layer.weight.shape[0],))
            if layer.bias is None:
                layer.bias = nn.Parameter(b.clone())
            else:
                layer.bias.add_(b)


def _replace(net: SpikingNetwork, name: str, module: nn.Module) -> None:
    *parents, leaf = name.split(".")
    owner = net
    for p in parents:
        owner = owner._modules[p]
    owner._modules[leaf] = module
    net._kinds[name] = "weight_free"
    net.__dict__.pop("_shapes_cache", None)


# --------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------
def from_nir(graph_or_path, *, reset: str | None = None, dt: float = 1.0,
             v_init: float | Mapping[str, float] = 0.0) -> SpikingNetwork:
    """Build a :class:`~snnedge.SpikingNetwork` from a NIR graph or file.

    Parameters
    ----------
    graph_or_path:
        A ``nir.NIRGraph`` or the path of a NIR file.
    reset:
        ``"subtract"`` or ``"zero"`` (required). NIR's IF and LIF reset to ``v_reset``;
        ``"zero"`` reads them that way (``v_reset`` must be 0). ``"subtract"`` is what
        converted networks and snnTorch's ``Leaky`` do, which NIR cannot express.
    dt:
        The step: ``IF`` integrates ``(r dt) I`` per step; ``LIF`` has
        ``beta = 1 - dt / tau`` and input gain ``dt r / tau`` (graphs from snnTorch use
        ``dt = 1e-4``). A gain other than 1 is folded into the threshold.
    v_init:
        Initial membrane as a fraction of the threshold: one value, or ``{layer: value}``
        (layers not listed start at 0).

    The nodes after the last neuron become the readout. Node names become layer names.
    Metadata in the graph is never read. Raises ``ValueError`` naming the node and its type
    for nodes snnedge cannot run.

    Example
    -------
    >>> import torch.nn as nn, snnedge
    >>> net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(), nn.Linear(3, 2))
    >>> back = snnedge.interop.from_nir(snnedge.interop.to_nir(net, input_shape=(4,)), reset="subtract")
    >>> [type(n.module).__name__ for n in back.nodes], back.input_shape
    (['Linear', 'IF', 'Linear'], (4,))
    """
    nir = _nir()
    if reset is None:
        raise ValueError("from_nir needs the reset mode: reset='subtract' or reset='zero'. NIR's IF and "
                         "LIF reset to v_reset (reset='zero' when v_reset is 0); networks converted "
                         "from ANNs and snnTorch's Leaky reset by subtraction, which NIR cannot say.")
    check_choice(reset, RESETS, param="reset", where="from_nir")
    dt = check_real(dt, param="dt", where="from_nir", low=0.0, low_open=True)
    if isinstance(graph_or_path, (str, os.PathLike)):
        graph = nir.read(graph_or_path)
    elif isinstance(graph_or_path, nir.NIRGraph):
        graph = graph_or_path
    else:
        raise TypeError(f"from_nir expects a nir.NIRGraph or a file path. Got {type(graph_or_path).__name__}.")
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"from_nir needs one Input and one Output node. Got inputs {inputs}, "
                         f"outputs {outputs}.")
    preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        if a not in graph.nodes or b not in graph.nodes:
            raise ValueError(f"from_nir: edge ({a!r}, {b!r}) names a node the graph does not have.")
        preds[b].append(a)
    order = _topological(graph, inputs[0])
    input_shape = tuple(int(s) for s in np.asarray(graph.nodes[inputs[0]].input_type["input"]).reshape(-1))
    names = _layer_names([k for k in order if k not in (inputs[0], outputs[0])])
    names[inputs[0]] = INPUT
    v0 = (lambda k: float(v_init.get(k, 0.0))) if isinstance(v_init, Mapping) else (lambda k: float(v_init))
    nodes: list[Node] = []
    for key in order:
        node = graph.nodes[key]
        if key in (inputs[0], outputs[0]):
            continue
        ins = tuple(names[p] for p in preds[key])
        if not ins:
            raise ValueError(f"from_nir: NIR node {key!r} ({type(node).__name__}) has no incoming edge.")
        if len(ins) > 1 and not (isinstance(node, nir.Scale) and np.all(np.asarray(node.scale) == 1)):
            nodes.append(Node(f"{names[key]}_sum", Add(), ins))
            ins = (f"{names[key]}_sum",)
        if len(ins) > 1:
            module = Add()
        else:
            module = _import_node(nir, key, node, reset, dt, v0(names[key]))
        nodes.append(Node(names[key], module, ins))
    out_ins = [names[p] for p in preds[outputs[0]]]
    if len(out_ins) > 1:
        nodes.append(Node(f"{outputs[0]}_sum", Add(), tuple(out_ins)))
        out_ins = [f"{outputs[0]}_sum"]
    if not out_ins or out_ins[0] == INPUT:
        raise ValueError(f"from_nir: the Output node {outputs[0]!r} must follow at least one layer.")
    keep = _ancestors(nodes, out_ins[0])  # branches that never reach the output are dropped
    return SpikingNetwork([n for n in nodes if n.name in keep], input_shape=input_shape)


def _ancestors(nodes: list[Node], name: str) -> set[str]:
    by_name = {n.name: n for n in nodes}
    seen, stack = set(), [name]
    while stack:
        n = stack.pop()
        if n in seen or n not in by_name:
            continue
        seen.add(n)
        stack.extend(by_name[n].inputs)
    return seen


def _topological(graph, start: str) -> list[str]:
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    indeg = {k: 0 for k in graph.nodes}
    for a, b in graph.edges:
        succ[a].append(b)
        indeg[b] += 1
    order, ready = [], [start]
    position = {k: i for i, k in enumerate(graph.nodes)}
    while ready:
        k = ready.pop(0)
        order.append(k)
        for b in sorted(succ[k], key=position.get):
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
    cyclic = [k for k, d in indeg.items() if d > 0]
    if cyclic:
        raise ValueError(f"from_nir: nodes {cyclic} form a cycle (recurrent connections); snnedge "
                         f"runs feed-forward networks only.")
    return order


def _layer_names(keys: list[str]) -> dict[str, str]:
    """NIR node names as layer names; dotted names are kept unless one nests in another."""
    names = {k: (k if k != INPUT else "input_") for k in keys}
    taken = set(names.values())
    for k, n in names.items():
        if "." in n and any(".".join(n.split(".")[:i]) in taken for i in range(1, n.count(".") + 1)):
            names = {kk: v.replace(".", "_") for kk, v in names.items()}
            break
    return names


def _as_tensor(a) -> torch.Tensor:
    a = np.asarray(a)
    return torch.from_numpy(a.copy() if a.dtype.kind == "f" else a.astype(np.float32))


def _ints(v, n: int) -> tuple[int, ...]:
    a = np.asarray(v).reshape(-1)
    return tuple(int(x) for x in (a if a.size == n else np.repeat(a[:1], n)))


def _per_channel(a: np.ndarray, key: str, node, what: str):
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


def _typed(value, like: np.ndarray) -> torch.Tensor:
    """Keep NIR's float type (float32 values stay float32, float64 stay float64)."""
    dtype = torch.float64 if np.asarray(like).dtype == np.float64 else torch.float32
    return torch.as_tensor(value, dtype=dtype)


def _import_node(nir, key: str, node, reset: str, dt: float, v_init: float) -> nn.Module:
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
    if isinstance(node, nir.Scale):
        scale = _per_channel(node.scale, key, node, "scale")
        return Scale(_typed(scale, node.scale))
    if isinstance(node, (nir.IF, nir.LIF)):
        return _import_neuron(nir, key, node, reset, dt, v_init)
    supported = "Input, Output, Affine, Linear, Conv1d, Conv2d, Flatten, AvgPool2d, SumPool2d, Scale, IF, LIF"
    why = {"NIRGraph": "a subgraph (snnTorch writes recurrent layers this way); snnedge runs "
                       "feed-forward networks only",
           "CubaLIF": "a current-based LIF with a synaptic state, which snnedge has no neuron for",
           "CubaLI": "a current-based leaky integrator, which snnedge has no neuron for",
           "LI": "a leaky integrator (non-spiking), which snnedge has no layer for",
           "I": "an integrator (non-spiking), which snnedge has no layer for",
           "Delay": "a delay, which snnedge's engines do not model",
           "Threshold": "a stateless threshold, which snnedge has no layer for"}.get(
        kind, "a node type snnedge does not know")
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
    gain = np.where(np.abs(gain - 1.0) <= _GAIN_TOL, 1.0, gain)
    if np.any(gain <= 0) or not np.all(np.isfinite(gain)):
        raise ValueError(f"from_nir: NIR node {key!r} ({kind}) has an input gain of "
                         f"{float(np.min(gain)):g} (r and tau with dt={dt:g}); it must be positive.")
    theta = np.broadcast_to(theta / gain if np.any(gain != 1.0) else theta, np.broadcast_shapes(
        theta.shape, gain.shape))
    theta_v = _per_channel(theta, key, node, "threshold")
    like = node.v_threshold
    if beta is None or np.all(beta == 1.0):
        module = IF(threshold=1.0, reset=reset, v_init=v_init)
    else:
        module = LIF(beta=0.5, threshold=1.0, reset=reset, v_init=v_init)
        module.beta = _typed(_per_channel(np.broadcast_to(beta, theta.shape), key, node, "beta"), like)
    module.threshold = _typed(theta_v, like)
    return module
