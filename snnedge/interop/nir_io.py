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
* the initial membrane (``v_init``, a fraction of the threshold, per layer or per neuron;
  :func:`initial_membranes` reads it off a network).

NIR spikes when ``v > v_threshold``; snnedge when ``v >= theta``. The two differ only when a
membrane equals its threshold exactly.

CubaLIF, LI, Integrator (NIR's ``I``), Threshold and Delay are read and written by
:mod:`snnedge.interop.nir_models` (their discrete reading is there). Recurrent networks
(inputs read one step late, ``snnedge.previous``) are written as plain NIR edges, which make
cycles; :func:`from_nir` reads cycles and nested subgraphs (:mod:`snnedge.interop.nir_graph`):
the fed-back spikes arrive one step later.

Layers map one to one: Linear -> ``Affine``/``Linear``, Conv1d/Conv2d -> ``Conv1d``/``Conv2d``,
AvgPool2d -> ``AvgPool2d``, SumPool2d -> ``SumPool2d``, Flatten -> ``Flatten``,
Scale -> ``Scale`` (with a bias: a diagonal 1x1 ``Conv2d`` or a diagonal ``Affine``),
Add -> a unit ``Scale`` whose several incoming edges NIR sums (in the snnTorch flavor, just
the edges into the next node); Identity and Dropout are dropped. The readout (the layers after the last neuron) is exported as plain synaptic nodes
before ``Output``; :func:`from_nir` makes them the readout again. nir is imported only when
these functions run (it is in the ``peers`` extra).

``flavor="snntorch"`` writes what snnTorch 1.0.0's ``import_from_nir`` runs faithfully (read
in its ``import_nir.py``): it builds a leaky ``Leaky(beta=0.9)`` from a NIR ``IF``, so a
non-leaky neuron is written as a NIR ``LIF`` with ``tau`` so long (:data:`SNNTORCH_TAU`) that
the importer's ``beta = 1 - 1e-4 / tau`` is exactly 1.0; it needs one threshold per layer,
so thresholds are folded into the incoming weights and every threshold is 1; its ``LIF``
always resets to zero from a zero membrane, so the network must use ``reset="zero"`` and
a zero initial membrane (``strict=False`` exports anyway, with a warning);
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
from ..layers import Add, Scale, SumPool2d
from ..layers import DROPOUTS, INPUT
from ..network import Node, SpikingNetwork, previous, split_delayed
from ..neurons import SpikingNeuron
from .nir_graph import NEURON_TYPES, delayed_edges, input_and_output, splice_subgraphs, topological
from .nir_models import export_model, import_model
from .nir_nodes import (SNNTORCH_DT, SNNTORCH_TAU, PresetIF, PresetLIF, export_node, import_node,
                        initial_membrane)

__all__ = ["to_nir", "from_nir", "initial_membranes", "PresetIF", "PresetLIF", "FLAVORS",
           "SNNTORCH_DT", "SNNTORCH_TAU"]

FLAVORS = ("nir", "snntorch")
RESETS = ("subtract", "zero")
_POOLS = (nn.AvgPool2d, SumPool2d, nn.AdaptiveAvgPool2d, nn.Identity, *DROPOUTS)


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
        ``dt``, the flavor, the network's ``readout_exponent`` (how its readout weights the
        steps, :mod:`snnedge.readout`; NIR has no node for it) and, per neuron node, the
        reset and ``v_init`` (informative only).

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
        net = _fold_for_snntorch(net, shape, strict)
    shapes = net.shapes(shape)
    shapes[INPUT] = shape
    nodes, bypass = {}, {}
    out_name = "output" if "output" not in net.names else "output_"
    for name in net.names:
        module = net.layer(name)
        ins = net.inputs_of(name)
        in_shape = shapes[ins[0]]
        if isinstance(module, (nn.Identity, *DROPOUTS)) or (isinstance(module, Add) and flavor == "snntorch"):
            bypass[name] = ins  # NIR sums edges into a node: an Add needs no node of its own
            continue
        where = f"Layer {name!r} ({type(module).__name__})"
        nodes[name] = (export_model(nir, where, module, shapes[name], dt, flavor)
                       or export_node(nir, name, module, in_shape, shapes[name], dt, flavor))
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
    if flavor == "snntorch" and len(sources(net.output_name)) > 1:
        raise ValueError(f"to_nir(flavor='snntorch'): the output layer {net.output_name!r} is an Add; "
                         f"nirtorch would return its inputs separately. End with a synaptic layer.")
    if len(set(edges)) != len(edges):
        raise ValueError("to_nir: a junction adds the same layer twice (an Add of one input with "
                         "itself); NIR edges cannot say that. Use a Scale of 2 instead.")
    meta = {"snnedge_version": _version(), "snnedge_flavor": flavor, "dt": dt,
            "readout_exponent": float(net.readout_exponent),
            "note": "reset, dt, v_init and readout_exponent are options of snnedge.from_nir; "
                    "metadata is informative"}
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


def _fold_for_snntorch(net: SpikingNetwork, input_shape, strict: bool) -> SpikingNetwork:
    """``net`` (a copy) with Scale layers and thresholds folded into the weighted layer
    before them, every threshold 1."""
    folded = {}
    for name in net.names:
        module = net.layer(name)
        if isinstance(module, Scale):
            w_name = net.inputs_of(name)[0]
            if w_name == INPUT or net.kind(w_name) != "weighted" or len(net.consumers_of(w_name)) != 1:
                continue  # left for the exporter's error
            _scale_out_channels(net.layer(w_name), module.scale, module.bias)
            folded[name] = nn.Identity()
    if folded:
        net = SpikingNetwork([Node(n.name, folded.get(n.name, n.module), n.inputs) for n in net.nodes],
                             input_shape=net.input_shape, readout_exponent=net.readout_exponent)
    for name in net.neuron_layers:
        module = net.layer(name)
        if not isinstance(module, SpikingNeuron):
            continue  # the exporter names it
        problems = []
        if module.reset != "zero":
            problems.append(f"reset={module.reset!r} (snnTorch's imported Leaky resets to zero)")
        v0 = initial_membrane(module, net.shapes(input_shape)[name])
        if not isinstance(v0, float) or v0 != 0:
            v0 = (f"{v0:g}" if isinstance(v0, float) else
                  f"per neuron in [{float(v0.min()):.2f}, {float(v0.max()):.2f}]")
            problems.append(f"v_init={v0} (snnTorch's membranes start at 0)")
        if problems:
            msg = (f"to_nir(flavor='snntorch'): layer {name!r} has {' and '.join(problems)}, so "
                   f"snnTorch 1.0.0 would run a different network. Convert with reset='zero', "
                   f"v_init=0.0 (and no membrane calibration), or pass strict=False to export "
                   f"anyway.")
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


def initial_membranes(snn: SpikingNetwork, input_shape=None) -> dict[str, float | torch.Tensor]:
    """Each neuron layer's initial membrane in units of its threshold: a number, or a tensor
    of the layer's per-sample shape when neurons start unevenly (converters' membrane
    calibration). NIR cannot store it; pass it back as ``from_nir(..., v_init=...)``.

    Example
    -------
    >>> import torch.nn as nn, snnedge
    >>> net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(v_init=0.5), nn.Linear(3, 2))
    >>> snnedge.interop.initial_membranes(net, input_shape=(4,))
    {'1': 0.5}
    """
    shape = input_shape if input_shape is not None else snn.input_shape
    if shape is None:
        raise ValueError("initial_membranes needs the shape of one input sample: pass input_shape=...")
    shapes = snn.shapes(tuple(int(s) for s in shape))
    return {n: initial_membrane(snn.layer(n), shapes[n]) for n in snn.neuron_layers
            if isinstance(snn.layer(n), SpikingNeuron)}


# --------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------
def from_nir(graph_or_path, *, reset: str | None = None, dt: float = 1.0,
             v_init: float | Mapping[str, float | torch.Tensor] = 0.0,
             readout_exponent: float = 0.0) -> SpikingNetwork:
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
        (layers not listed start at 0), where a value is a number or one per neuron (an
        array of the layer's per-sample shape, as :func:`initial_membranes` gives; such
        layers become :class:`PresetIF` / :class:`PresetLIF`).
    readout_exponent:
        The network's weighting of the readout's steps (:mod:`snnedge.readout`; 0, the plain
        sum, by default). NIR has no field for it: :func:`to_nir` writes a converted
        network's into the graph's metadata (``"readout_exponent"``), to be given here.

    The nodes after the last neuron become the readout. Node names become layer names
    (a subgraph's nodes ``"<subgraph>.<node>"``). Cycles are recurrent connections: the
    spikes fed back arrive one step later (:mod:`snnedge.interop.nir_graph`); a cycle must
    pass a neuron. Metadata in the graph is never read. Raises ``ValueError`` naming the node
    and its type for nodes snnedge cannot run.

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
    graph_nodes, graph_edges = splice_subgraphs(nir, graph)
    source, sink = input_and_output(nir, graph_nodes, "from_nir")
    preds: dict[str, list[str]] = {k: [] for k in graph_nodes}
    for a, b in graph_edges:
        if a not in graph_nodes or b not in graph_nodes:
            raise ValueError(f"from_nir: edge ({a!r}, {b!r}) names a node the graph does not have.")
        preds[b].append(a)
    delayed = delayed_edges(graph_nodes, graph_edges, source,
                            lambda k: type(graph_nodes[k]).__name__ in NEURON_TYPES)
    order = topological(graph_nodes, [e for e in graph_edges if e not in delayed], source)
    input_shape = tuple(int(s) for s in np.asarray(graph_nodes[source].input_type["input"]).reshape(-1))
    names = _layer_names([k for k in order if k not in (source, sink)])
    names[source] = INPUT
    v0 = (lambda k: v_init.get(k, 0.0)) if isinstance(v_init, Mapping) else (lambda k: float(v_init))
    nodes: list[Node] = []
    for key in order:
        node = graph_nodes[key]
        if key in (source, sink):
            continue
        ins = tuple(previous(names[p]) if (p, key) in delayed else names[p] for p in preds[key])
        if not ins:
            raise ValueError(f"from_nir: NIR node {key!r} ({type(node).__name__}) has no incoming edge.")
        if len(ins) > 1 and not (isinstance(node, nir.Scale) and np.all(np.asarray(node.scale) == 1)):
            nodes.append(Node(f"{names[key]}_sum", Add(), ins))
            ins = (f"{names[key]}_sum",)
        if len(ins) > 1:
            module = Add()
        else:
            module = (import_model(nir, key, node, reset, dt, v0(names[key]))
                      or import_node(nir, key, node, reset, dt, v0(names[key])))
        nodes.append(Node(names[key], module, ins))
    out_ins = [names[p] for p in preds[sink]]
    if len(out_ins) > 1:
        nodes.append(Node(f"{sink}_sum", Add(), tuple(out_ins)))
        out_ins = [f"{sink}_sum"]
    if not out_ins or out_ins[0] == INPUT:
        raise ValueError(f"from_nir: the Output node {sink!r} must follow at least one layer.")
    keep = _ancestors(nodes, out_ins[0])  # branches that never reach the output are dropped
    net = SpikingNetwork([n for n in nodes if n.name in keep], input_shape=input_shape,
                         readout_exponent=readout_exponent)
    if isinstance(v_init, Mapping) and set(v_init) - set(net.neuron_layers):
        raise ValueError(f"The 'v_init' parameter of from_nir names {sorted(set(v_init) - set(net.neuron_layers))}, "
                         f"which are not neuron layers of the graph; its neuron layers are "
                         f"{list(net.neuron_layers)}.")
    return net


def _ancestors(nodes: list[Node], name: str) -> set[str]:
    by_name = {n.name: n for n in nodes}
    seen, stack = set(), [name]
    while stack:
        n = stack.pop()
        if n in seen or n not in by_name:
            continue
        seen.add(n)
        stack.extend(split_delayed(i)[0] for i in by_name[n].inputs)
    return seen


def _layer_names(keys: list[str]) -> dict[str, str]:
    """NIR node names as layer names; dotted names are kept unless one nests in another."""
    names = {k: (k if k != INPUT else "input_") for k in keys}
    taken = set(names.values())
    for k, n in names.items():
        if "." in n and any(".".join(n.split(".")[:i]) in taken for i in range(1, n.count(".") + 1)):
            names = {kk: v.replace(".", "_") for kk, v in names.items()}
            break
    return names
