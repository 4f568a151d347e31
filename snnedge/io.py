"""Saving and loading spiking networks without pickled code: :func:`save_network`,
:func:`load_network`, and the registry of the types they write (from :mod:`snnedge.io_registry`).

A saved network is one ``torch.save`` file holding only tensors, strings, numbers, lists and
dicts, so :func:`load_network` reads it with ``torch.load(weights_only=True)``: nothing in the
file is executed, and a file that holds anything else is refused. The payload::

    {"format": "snnedge.network", "version": 2,
     "input_shape": [1, 28, 28] or None,
     "readout_exponent": 0.0,                              # absent in older files: 0
     "nodes": [{"name": "features.0", "type": "torch.nn.Conv2d",
                "args": {"in_channels": 1, "out_channels": 16, ...}, "inputs": ["input"]}, ...],
     "state_dict": {"features.0.weight": tensor, ...},     # every parameter and buffer
     "training": False,                                    # nn.Module.training
     "attributes": {"conversion_": {"type": "converters.ConversionInfo", "data": {...}}},
     "metadata": {...}}                                     # the caller's plain data

(Version 1 files, which kept a converted network's record under ``"conversion"``, still load.)

Loading rebuilds each module from its type, a name in the registry :data:`MODULE_TYPES`
(no name in a file can make this module import or call anything else; one that no package
registers is refused, naming the layer), and its constructor arguments, then loads the
state dict with ``assign=True``, so every tensor keeps its saved dtype and values: the
loaded network computes exactly what the saved one did. The network's learned attributes
(public names ending in ``_``) are written and read through :data:`ATTRIBUTE_TYPES`.

A new layer type registers with :func:`register_layer_type`: a core type in
``snnedge/io_registry.py``, another package's from a function named in the entry-point
group ``snnedge.layer_types`` of its ``pyproject.toml`` (``converters/io_types.py`` is the
example), which :func:`load_network` calls when a file names a type it does not know yet.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path
from .io_registry import (ATTRIBUTE_TYPES, ENTRY_POINT_GROUP, MODULE_TYPES, AttributeType,
                          LayerType, find_type, register_attribute_type, register_layer_type)
from .network import Node, SpikingNetwork

__all__ = ["save_network", "load_network", "MODULE_TYPES", "NETWORK_FORMAT", "LayerType",
           "register_layer_type", "ATTRIBUTE_TYPES", "AttributeType", "register_attribute_type",
           "ENTRY_POINT_GROUP"]

NETWORK_FORMAT = "snnedge.network"
VERSION = 2


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively; anything that is not plain data is refused."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"not plain data: {type(value).__name__}")


# --------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]*_")
# Version 1 files kept converters.convert's record under one fixed key.
_VERSION_1_ATTRIBUTES = {"conversion": ("conversion_", "converters.ConversionInfo")}


def _encoded(table: dict, obj, what: str, fix: str) -> tuple[str, Any]:
    """``(registered type name, plain data)`` of ``obj`` (a layer module or a network
    attribute) through its entry in ``table`` (:data:`MODULE_TYPES`: ``to_args``,
    :data:`ATTRIBUTE_TYPES`: ``to_data``); a ``TypeError`` naming ``what`` and ``fix`` when
    its type is not registered or its encoder gives data that is not plain."""
    cls = type(obj)
    kind, note = find_type(table, cls=cls)
    kinds = "module" if table is MODULE_TYPES else "attribute"
    if kind is None:
        raise TypeError(f"save_network cannot write {what}: its type {cls.__module__}."
                        f"{cls.__qualname__} is not one of the registered {kinds} types, which "
                        f"it can rebuild without pickled code ({', '.join(table) or 'none'})."
                        f"{note} {fix}")
    encode = "to_args" if table is MODULE_TYPES else "to_data"
    try:
        return kind.name, _plain(getattr(kind, encode)(obj))
    except TypeError as e:
        raise TypeError(f"save_network: {what} ({kind.name}) gave data that is not plain ({e}); "
                        f"fix the {encode} of its registered type.") from None


def _layer_spec(node: Node) -> dict:
    kind, args = _encoded(MODULE_TYPES, node.module, f"layer {node.name!r}",
                          "Register it with snnedge.io.register_layer_type, or save its state "
                          "dict with torch.save(net.state_dict(), path) and rebuild the network "
                          "in code.")
    return {"name": node.name, "type": kind, "args": args, "inputs": list(node.inputs)}


def _attributes(net: SpikingNetwork) -> dict:
    """The network's learned attributes (public names ending in ``_``) as typed plain data."""
    out = {}
    for attr, value in vars(net).items():
        if not _ATTRIBUTE_NAME.fullmatch(attr) or value is None:
            continue
        kind, data = _encoded(ATTRIBUTE_TYPES, value, f"the network's attribute {attr!r}",
                              "Register it with snnedge.io.register_attribute_type, or delete "
                              "the attribute first.")
        out[attr] = {"type": kind, "data": data}
    return out


def save_network(net: SpikingNetwork, path: str | os.PathLike, *,
                 metadata: dict | None = None) -> Path:
    """Write ``net`` to ``path`` as plain data and tensors (read back by :func:`load_network`).

    Parameters
    ----------
    net:
        A :class:`~snnedge.SpikingNetwork` whose modules are all of types registered in
        :data:`MODULE_TYPES` (what :func:`snnedge.sequential` and ``converters.convert``
        build). Its learned attributes of registered types are kept (a converted
        network's ``conversion_``).
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
    nodes = [_layer_spec(node) for node in net.nodes]
    try:
        meta = _plain(metadata or {})
    except TypeError as e:
        raise TypeError(f"The 'metadata' parameter of save_network must hold only plain data "
                        f"(strings, numbers, booleans, None, lists and dicts): {e}.") from None
    payload = {"format": NETWORK_FORMAT, "version": VERSION,
               "input_shape": None if net.input_shape is None else list(net.input_shape),
               "readout_exponent": float(net.readout_exponent), "nodes": nodes,
               "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
               "training": net.training, "attributes": _attributes(net), "metadata": meta}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _build_layer(path: Path, spec: Any) -> Node:
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a layer is stored as {type(spec).__name__}, not as a dict; the "
                         f"file is damaged or not written by snnedge.save_network.")
    name = spec.get("name")
    module = _rebuild(path, MODULE_TYPES, spec.get("type"), lambda kind: kind.from_args(spec["args"]),
                      f"layer {name!r}", "Install the package that registers it, or upgrade snnedge.")
    return Node(name, module, tuple(spec["inputs"]))


def _rebuild(path: Path, table: dict, type_name: Any, build, what: str, fix: str,
             verb: str = "rebuild"):
    """``build(kind)`` for the registered type ``type_name`` of ``what``; a type that no
    package registers, or saved data it cannot rebuild from, is a ``ValueError`` naming both."""
    kind, note = find_type(table, name=type_name)
    if kind is None:
        raise ValueError(f"{path}: {what} has type {type_name!r}, which this snnedge cannot "
                         f"{verb} (known: {', '.join(table) or 'none'}).{note} {fix}")
    try:
        return build(kind)
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: {what} of type {type_name!r} could not be rebuilt from its "
                         f"saved data ({type(e).__name__}: {e}). The file is damaged or was "
                         f"written by another version of the package that registers "
                         f"{type_name!r}.") from None


def _set_attribute(path: Path, net: SpikingNetwork, attr: str, spec: dict) -> None:
    if not isinstance(attr, str) or not _ATTRIBUTE_NAME.fullmatch(attr) or hasattr(net, attr):
        raise ValueError(f"{path}: attribute {attr!r} is not a learned attribute name (lowercase, "
                         f"ending in '_', not one the network already has); the file is damaged "
                         f"or not written by snnedge.save_network.")
    type_name = spec.get("type") if isinstance(spec, dict) else None
    value = _rebuild(path, ATTRIBUTE_TYPES, type_name, lambda kind: kind.from_data(spec["data"]),
                     f"the network's attribute {attr!r}", "Install the package that registers it.",
                     verb="read")
    setattr(net, attr, value)


def load_network(path: str | os.PathLike, *, map_location=None, with_metadata: bool = False):
    """Read a network written by :func:`save_network` (``torch.load(weights_only=True)``).

    Layer types that the core does not define (``converters``' spiking max-pool) are found
    through the packages' registration functions (:data:`ENTRY_POINT_GROUP`): the caller
    need not import those packages first.

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
        If the file is not a saved snnedge network (the message says what it is instead), or
        names a layer type or attribute type that no installed package registers.
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
    version = payload.get("version")
    if version not in (1, VERSION):
        raise ValueError(f"{path} was written in format version {version!r}; this snnedge reads "
                         f"versions 1 to {VERSION}. Upgrade snnedge or convert again.")
    attributes = dict(payload.get("attributes") or {})
    if version == 1:
        for key, (attr, type_name) in _VERSION_1_ATTRIBUTES.items():
            if payload.get(key) is not None:
                attributes[attr] = {"type": type_name, "data": payload[key]}
    nodes = [_build_layer(path, spec) for spec in payload["nodes"]]
    net = SpikingNetwork(nodes, input_shape=payload["input_shape"],
                         readout_exponent=payload.get("readout_exponent", 0.0))
    net.load_state_dict(payload["state_dict"], strict=True, assign=True)
    net.train(bool(payload.get("training", False)))
    for attr, spec in attributes.items():
        _set_attribute(path, net, attr, spec)
    if with_metadata:
        return net, payload.get("metadata") or {}
    return net
