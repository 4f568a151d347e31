"""Saving and loading spiking networks without pickled code: :func:`save_network`,
:func:`load_network`.

A saved network is one ``torch.save`` file holding only tensors, strings, numbers, lists and
dicts, so :func:`load_network` reads it with ``torch.load(weights_only=True)``: nothing in the
file is executed, and a file that holds anything else is refused. The payload::

    {"format": "snnedge.network", "version": 1,
     "input_shape": [1, 28, 28] or None,
     "nodes": [{"name": "features.0", "type": "torch.nn.Conv2d",
                "args": {"in_channels": 1, "out_channels": 16, ...}, "inputs": ["input"]}, ...],
     "state_dict": {"features.0.weight": tensor, ...},     # every parameter and buffer
     "training": False,                                    # nn.Module.training
     "conversion": {...} or None,                          # converters.ConversionInfo as data
     "metadata": {...}}                                     # the caller's plain data

Loading rebuilds each module from its type (one of :data:`MODULE_TYPES`, a fixed list: no
name in a file can make this module import or call anything else) and its constructor
arguments, then loads the state dict with ``assign=True``, so every tensor keeps its saved
dtype and values: the loaded network computes exactly what the saved one did.

Two module types belong to ``converters`` (the spiking max-pool and the calibrated IF
neuron); ``converters`` is imported only when a file contains them.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_path
from .network import Node, SpikingNetwork

__all__ = ["save_network", "load_network", "MODULE_TYPES", "NETWORK_FORMAT"]

NETWORK_FORMAT = "snnedge.network"
VERSION = 1


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively; anything that is not plain data is refused."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"not plain data: {type(value).__name__}")


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _shape(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None else list(t.shape)


def _attrs(*names: str) -> Callable[[nn.Module], dict]:
    return lambda m: {n: getattr(m, n) for n in names}


def _neuron_args(m) -> dict:
    return {"threshold_shape": _shape(m.threshold), "reset": m.reset, "v_init": m.v_init,
            "surrogate": m.surrogate.name, "alpha": m.surrogate.alpha,
            "learn_threshold": isinstance(m.threshold, nn.Parameter),
            "detach_reset": m.detach_reset}


def _build_neuron(cls, a: dict, **extra) -> nn.Module:
    # placeholder values of the right shapes; the state dict brings the real ones
    return cls(threshold=torch.ones(a["threshold_shape"]), reset=a["reset"], v_init=a["v_init"],
               surrogate=a["surrogate"], alpha=a["alpha"], learn_threshold=a["learn_threshold"],
               detach_reset=a["detach_reset"], **extra)


def _lif_args(m) -> dict:
    beta = m.beta_logit if m.learn_beta else m.beta
    return {**_neuron_args(m), "beta_shape": _shape(beta), "learn_beta": m.learn_beta}


def _build_lif(cls, a: dict) -> nn.Module:
    return _build_neuron(cls, a, beta=torch.full(a["beta_shape"], 0.5), learn_beta=a["learn_beta"])


def _build_scale(cls, a: dict) -> nn.Module:
    bias = None if a["bias_shape"] is None else torch.zeros(a["bias_shape"])
    return cls(torch.ones(a["scale_shape"]), bias)


def _calibrated_args(m) -> dict:
    return {"threshold_shape": _shape(m.threshold), "reset": m.reset, "v_init": m.v_init,
            "shape": _shape(m.v_init_map)}


def _build_calibrated(cls, a: dict) -> nn.Module:
    return cls(threshold=torch.ones(a["threshold_shape"]), reset=a["reset"], v_init=a["v_init"],
               shape=a["shape"])


def _call(cls, a: dict) -> nn.Module:
    return cls(**{k: _tuples(v) for k, v in a.items()})


@dataclasses.dataclass(frozen=True)
class _ModuleType:
    """How to write one module type as plain data and build it back."""

    where: str  # "package.module:Class", imported only from this fixed table
    args: Callable[[nn.Module], dict]
    build: Callable[[type, dict], nn.Module] = _call


_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
         "padding_mode")

#: Module types a saved network may contain: type name -> how it is written and rebuilt.
MODULE_TYPES: dict[str, _ModuleType] = {
    "torch.nn.Conv1d": _ModuleType("torch.nn:Conv1d", lambda m: {
        **_attrs(*_CONV)(m), "bias": m.bias is not None}),
    "torch.nn.Conv2d": _ModuleType("torch.nn:Conv2d", lambda m: {
        **_attrs(*_CONV)(m), "bias": m.bias is not None}),
    "torch.nn.Linear": _ModuleType("torch.nn:Linear", lambda m: {
        "in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}),
    "torch.nn.AvgPool1d": _ModuleType("torch.nn:AvgPool1d", _attrs(
        "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")),
    "torch.nn.AvgPool2d": _ModuleType("torch.nn:AvgPool2d", _attrs(
        "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")),
    "torch.nn.AdaptiveAvgPool2d": _ModuleType("torch.nn:AdaptiveAvgPool2d", _attrs("output_size")),
    "torch.nn.Flatten": _ModuleType("torch.nn:Flatten", _attrs("start_dim", "end_dim")),
    "torch.nn.Unflatten": _ModuleType("torch.nn:Unflatten", _attrs("dim", "unflattened_size")),
    "torch.nn.Identity": _ModuleType("torch.nn:Identity", lambda m: {}),
    "torch.nn.Dropout": _ModuleType("torch.nn:Dropout", _attrs("p")),
    "snnedge.SumPool2d": _ModuleType("snnedge.layers:SumPool2d", _attrs(
        "kernel_size", "stride", "padding")),
    "snnedge.Scale": _ModuleType("snnedge.layers:Scale", lambda m: {
        "scale_shape": _shape(m.scale), "bias_shape": _shape(m.bias)}, _build_scale),
    "snnedge.Add": _ModuleType("snnedge.layers:Add", lambda m: {}),
    "snnedge.Concat": _ModuleType("snnedge.layers:Concat", _attrs("dim")),
    "snnedge.IF": _ModuleType("snnedge.neurons:IF", _neuron_args, _build_neuron),
    "snnedge.LIF": _ModuleType("snnedge.neurons:LIF", _lif_args, _build_lif),
    "converters.SpikingMaxPool2d": _ModuleType("converters.maxpool:SpikingMaxPool2d", _attrs(
        "kernel_size", "stride", "padding", "dilation", "ceil_mode", "mode", "keep_shape")),
    "converters.CalibratedIF": _ModuleType("converters.membrane:CalibratedIF", _calibrated_args,
                                           _build_calibrated),
}
_BY_CLASS = {tuple(t.where.split(":")): name for name, t in MODULE_TYPES.items()}


def _type_name(module: nn.Module) -> str | None:
    cls = type(module)
    where = "torch.nn" if cls.__module__.startswith("torch.nn.") else cls.__module__
    return _BY_CLASS.get((where, cls.__qualname__))


def _class_of(type_name: str) -> type:
    module, cls = MODULE_TYPES[type_name].where.split(":")
    return getattr(importlib.import_module(module), cls)


# --------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------
def _conversion(net: SpikingNetwork):
    info = getattr(net, "conversion_", None)
    if info is None:
        return None
    return _plain(dataclasses.asdict(info) if dataclasses.is_dataclass(info) else dict(info))


def save_network(net: SpikingNetwork, path: str | os.PathLike, *,
                 metadata: dict | None = None) -> Path:
    """Write ``net`` to ``path`` as plain data and tensors (read back by :func:`load_network`).

    Parameters
    ----------
    net:
        A :class:`~snnedge.SpikingNetwork` whose modules are all in :data:`MODULE_TYPES`
        (what :func:`snnedge.sequential` and ``converters.convert`` build). A converted
        network's ``conversion_`` is kept.
    path:
        File to write; replaced in one step, so a reader never sees half a file.
    metadata:
        Extra plain data (strings, numbers, booleans, ``None``, lists and dicts of them) to
        store beside the network, returned by ``load_network(path, with_metadata=True)``.

    Example
    -------
    >>> import os, tempfile, torch.nn as nn, snnedge
    >>> net = snnedge.sequential(nn.Linear(4, 3), snnedge.IF(threshold=0.5), nn.Linear(3, 2))
    >>> path = os.path.join(tempfile.mkdtemp(), "net.pt")
    >>> _ = snnedge.save_network(net, path)
    >>> snnedge.load_network(path).layer("1")
    IF(threshold=0.5, reset='subtract', v_init=0, surrogate='atan')
    """
    if not isinstance(net, SpikingNetwork):
        raise TypeError(f"The 'net' parameter of save_network must be a snnedge.SpikingNetwork. "
                        f"Got {type(net).__name__} instead.")
    nodes = []
    for node in net.nodes:
        type_name = _type_name(node.module)
        if type_name is None:
            cls = type(node.module)
            raise TypeError(f"save_network cannot write layer {node.name!r}: its type "
                            f"{cls.__module__}.{cls.__qualname__} is not one of the module types "
                            f"it can rebuild without pickled code ({', '.join(MODULE_TYPES)}). "
                            f"Save its state dict with torch.save(net.state_dict(), path) and "
                            f"rebuild the network in code instead.")
        nodes.append({"name": node.name, "type": type_name,
                      "args": _plain(MODULE_TYPES[type_name].args(node.module)),
                      "inputs": list(node.inputs)})
    try:
        meta = _plain(metadata or {})
    except TypeError as e:
        raise TypeError(f"The 'metadata' parameter of save_network must hold only plain data "
                        f"(strings, numbers, booleans, None, lists and dicts): {e}.") from None
    payload = {"format": NETWORK_FORMAT, "version": VERSION,
               "input_shape": None if net.input_shape is None else list(net.input_shape),
               "nodes": nodes,
               "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
               "training": net.training, "conversion": _conversion(net), "metadata": meta}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_network(path: str | os.PathLike, *, map_location=None, with_metadata: bool = False):
    """Read a network written by :func:`save_network` (``torch.load(weights_only=True)``).

    Parameters
    ----------
    path:
        The file.
    map_location:
        Where to put the tensors (as in ``torch.load``; default: the CPU).
    with_metadata:
        Also return the ``metadata`` dict given to :func:`save_network`.

    Returns
    -------
    SpikingNetwork, or (SpikingNetwork, dict) with ``with_metadata``
        The rebuilt network, tensors with their saved dtypes and values; ``conversion_`` is a
        ``converters.ConversionInfo`` when the saved network was converted.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a saved snnedge network (the message says what it is instead).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {str(path)!r}.")
    try:
        payload = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path} is not a network saved by snnedge.save_network (torch.load with "
                         f"weights_only=True refused it: {first}). Convert the model again, or "
                         f"write the network with snnedge.save_network.") from None
    if not isinstance(payload, dict) or payload.get("format") != NETWORK_FORMAT:
        what = ("a state dict or checkpoint" if isinstance(payload, dict) else
                f"a {type(payload).__name__}")
        raise ValueError(f"{path} is {what}, not a network saved by snnedge.save_network (no "
                         f"'format': {NETWORK_FORMAT!r}). Write it with snnedge.save_network, or "
                         f"'snnedge convert' a model into it.")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} was written in format version {payload.get('version')!r}; this "
                         f"snnedge reads version {VERSION}. Upgrade snnedge or convert again.")
    nodes = []
    for spec in payload["nodes"]:
        type_name = spec["type"]
        if type_name not in MODULE_TYPES:
            raise ValueError(f"{path}: layer {spec['name']!r} has type {type_name!r}, which this "
                             f"snnedge cannot rebuild (known: {', '.join(MODULE_TYPES)}). Upgrade "
                             f"snnedge.")
        kind = MODULE_TYPES[type_name]
        module = kind.build(_class_of(type_name), spec["args"])
        nodes.append(Node(spec["name"], module, tuple(spec["inputs"])))
    net = SpikingNetwork(nodes, input_shape=payload["input_shape"])
    net.load_state_dict(payload["state_dict"], strict=True, assign=True)
    net.train(bool(payload.get("training", False)))
    if payload.get("conversion") is not None:
        net.conversion_ = _conversion_info(payload["conversion"])
    if with_metadata:
        return net, payload.get("metadata") or {}
    return net


def _conversion_info(data: dict):
    try:
        from converters import ConversionInfo
    except ImportError:  # pragma: no cover - converters ships with snnedge
        return data
    fields = {f.name for f in dataclasses.fields(ConversionInfo)}
    return ConversionInfo(**{k: v for k, v in data.items() if k in fields})
