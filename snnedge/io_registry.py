"""The registry of types that :func:`snnedge.save_network` writes and
:func:`snnedge.load_network` builds back (re-exported by :mod:`snnedge.io`).

A saved network names each layer's type (``"snnedge.IF"``, ``"torch.nn.Conv2d"``,
``"converters.SpikingMaxPool2d"``). :data:`MODULE_TYPES` maps those names to
:class:`LayerType` records: the class, how a module is written as plain data
(``to_args``) and how it is built back (``from_args``). A name read from a file only selects
an entry of this table: no file can make snnedge import or call anything else. Objects a
package stores on a network as a learned attribute (a public name ending in ``_``, such as
``converters.convert``'s ``conversion_``) go through :data:`ATTRIBUTE_TYPES`
(:class:`AttributeType`) the same way, so the core never knows their fields.

Where a new type registers
--------------------------
* A module of the core (``snnedge/``): in :func:`_register_core_types` at the end of this
  file, beside ``snnedge.IF`` and ``torch.nn.Conv2d``.
* A module of another package (``converters``, or your own): a function of that package
  calls :func:`register_layer_type` (and :func:`register_attribute_type` for its
  attributes), and the package names that function in the entry-point group
  :data:`ENTRY_POINT_GROUP` of its ``pyproject.toml``::

      [project.entry-points."snnedge.layer_types"]
      converters = "converters.io_types:register"

  The first time a name (or, when saving, a class) is not in the table, :func:`find_type`
  calls every function of the group (``importlib.metadata.entry_points``), so a saved
  converted network loads without ``import converters``. ``converters/io_types.py`` is the
  example to copy. Entry points are installed package metadata: after adding one, install
  the package again (``pip install -e .``).
"""
from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from .chip_neuron import ChipNeuron
from .delay import Delay
from .layers import DROPOUTS, Add, Concat, Narrow, Scale, SumPool2d
from .neuron_models import CubaLIF, Integrator, LI, Threshold
from .neurons import IF, LIF
from .plugins import call_entry_points

__all__ = ["LayerType", "AttributeType", "MODULE_TYPES", "ATTRIBUTE_TYPES", "ENTRY_POINT_GROUP",
           "register_layer_type", "register_attribute_type", "find_type"]

#: Entry-point group of the functions that register other packages' types.
ENTRY_POINT_GROUP = "snnedge.layer_types"


@dataclasses.dataclass(frozen=True)
class LayerType:
    """How one module class is written to a saved network and built back.

    ``name`` is what the file stores (``"snnedge.IF"``, ``"converters.SpikingMaxPool2d"``);
    ``to_args(module)`` returns constructor arguments as plain data (tuples become lists in
    the file); ``from_args(args)`` builds a module of ``cls`` whose parameters and buffers
    have the saved shapes (their values come from the state dict afterwards).
    """

    name: str
    cls: type
    to_args: Callable[[nn.Module], dict]
    from_args: Callable[[dict], nn.Module]


@dataclasses.dataclass(frozen=True)
class AttributeType:
    """How one class of network attribute (``net.conversion_``) is written and read back:
    ``to_data(value)`` returns plain data, ``from_data(data)`` rebuilds the value."""

    name: str
    cls: type
    to_data: Callable[[Any], Any]
    from_data: Callable[[Any], Any]


#: Layer types a saved network may contain: type name -> :class:`LayerType`. The core's own
#: are here from the start; other packages' arrive through :func:`register_layer_type`.
MODULE_TYPES: dict[str, LayerType] = {}
#: Network attribute types: type name -> :class:`AttributeType`.
ATTRIBUTE_TYPES: dict[str, AttributeType] = {}
_called_entry_points: set[str] = set()  # "name = module:function" of those that succeeded

Entry = TypeVar("Entry", LayerType, AttributeType)


def _check_entry(table: dict, what: str, name: Any, cls: Any, base: type, funcs: dict) -> None:
    where = f"register_{what}_type"
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"The 'name' parameter of {where} must be a non-empty string such as "
                        f"'mypackage.MyLayer'. Got {name!r} instead.")
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise TypeError(f"The 'cls' parameter of {where} must be a subclass of "
                        f"{base.__module__}.{base.__qualname__}. Got {cls!r} instead.")
    for param, f in funcs.items():
        if not callable(f):
            raise TypeError(f"The {param!r} parameter of {where} must be callable. Got "
                            f"{type(f).__name__} instead.")
    taken = table.get(name)
    if taken is not None and taken.cls is not cls:
        raise ValueError(f"{where}: the name {name!r} already stands for "
                         f"{taken.cls.__module__}.{taken.cls.__qualname__}; register "
                         f"{cls.__module__}.{cls.__qualname__} under another name.")
    other = next((t.name for t in table.values() if t.cls is cls and t.name != name), None)
    if other is not None:
        raise ValueError(f"{where}: {cls.__module__}.{cls.__qualname__} is already registered "
                         f"as {other!r}; one class has one name in saved files.")


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _call(cls: type, args: dict) -> nn.Module:
    return cls(**{k: _tuples(v) for k, v in args.items()})


def register_layer_type(name: str, cls: type, to_args: Callable[[nn.Module], dict],
                        from_args: Callable[[dict], nn.Module] | None = None) -> LayerType:
    """Let :func:`snnedge.save_network` write modules of class ``cls`` (exactly that class,
    not its subclasses) under ``name``, and :func:`snnedge.load_network` build them back.

    Parameters
    ----------
    name:
        The type name stored in files; prefix it with your package (``"mypackage.Gain"``).
    cls:
        The module class. A :class:`~snnedge.SpikingNetwork` must accept it: a
        :class:`~snnedge.TemporalModule`, or a subclass of a synaptic module it runs.
    to_args:
        ``module -> dict`` of plain data (strings, numbers, booleans, ``None``, lists, tuples
        and dicts of them) from which ``from_args`` rebuilds the module.
    from_args:
        ``dict -> module``; the default calls ``cls(**args)`` with lists turned back into
        tuples. Parameters and buffers need only the right shapes: the state dict brings
        their values.

    Registering the same class under the same name again replaces the entry (a package's
    registration function may run twice); another class under a taken name, or a second
    name for one class, is a ``ValueError``.

    Example
    -------
    >>> import torch.nn as nn
    >>> class Gain(nn.Identity):
    ...     def __init__(self, k=2.0):
    ...         super().__init__()
    ...         self.k = k
    >>> kind = register_layer_type("mydocs.Gain", Gain, lambda m: {"k": m.k})
    >>> kind.from_args(kind.to_args(Gain(3.0))).k
    3.0
    >>> del MODULE_TYPES["mydocs.Gain"]
    """
    _check_entry(MODULE_TYPES, "layer", name, cls, nn.Module,
                 {"to_args": to_args, "from_args": from_args or _call})
    record = LayerType(name, cls, to_args, from_args or functools.partial(_call, cls))
    MODULE_TYPES[name] = record
    return record


def register_attribute_type(name: str, cls: type, to_data: Callable[[Any], Any],
                            from_data: Callable[[Any], Any]) -> AttributeType:
    """Let :func:`snnedge.save_network` write a network attribute whose value is a ``cls``
    (such as ``net.conversion_``, a ``converters.ConversionInfo``) and
    :func:`snnedge.load_network` read it back with ``from_data``. ``to_data`` returns plain
    data; names and re-registration as in :func:`register_layer_type`."""
    _check_entry(ATTRIBUTE_TYPES, "attribute", name, cls, object,
                 {"to_data": to_data, "from_data": from_data})
    record = AttributeType(name, cls, to_data, from_data)
    ATTRIBUTE_TYPES[name] = record
    return record


def _call_entry_points() -> list[str]:
    return call_entry_points(ENTRY_POINT_GROUP, _called_entry_points)


def find_type(table: dict[str, Entry], *, name: Any = None,
              cls: type | None = None) -> tuple[Entry | None, str]:
    """The entry of ``table`` (:data:`MODULE_TYPES` or :data:`ATTRIBUTE_TYPES`) with this
    ``name``, or for exactly this ``cls``.

    When there is none, the registration functions of :data:`ENTRY_POINT_GROUP` are called
    and the table is searched again. Returns ``(entry or None, note)``: the note is ``""``,
    or a sentence naming the registration functions that failed (when the entry was found
    anyway, the note is also issued as a ``RuntimeWarning``).
    """
    def search():
        if cls is not None:
            return next((t for t in table.values() if t.cls is cls), None)
        return table.get(name) if isinstance(name, str) else None

    found = search()
    if found is not None:
        return found, ""
    failed = _call_entry_points()
    found = search()
    note = (" A registration function failed (it may be the one that registers this type): "
            + "; ".join(failed) + ".") if failed else ""
    if found is not None and failed:
        warnings.warn(note.strip(), RuntimeWarning, stacklevel=3)
    return found, note


# --------------------------------------------------------------------------------------
# the core's own layer types
# --------------------------------------------------------------------------------------
def _shape(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None else list(t.shape)


def _attrs(*names: str) -> Callable[[nn.Module], dict]:
    return lambda m: {n: getattr(m, n) for n in names}


def _with_bias(*names: str) -> Callable[[nn.Module], dict]:
    return lambda m: {**_attrs(*names)(m), "bias": m.bias is not None}


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


def _build_lif(a: dict) -> nn.Module:
    return _build_neuron(LIF, a, beta=torch.full(a["beta_shape"], 0.5), learn_beta=a["learn_beta"])


def _build_scale(a: dict) -> nn.Module:
    bias = None if a["bias_shape"] is None else torch.zeros(a["bias_shape"])
    return Scale(torch.ones(a["scale_shape"]), bias)


def _cuba_args(m: CubaLIF) -> dict:
    return {**_lif_args(m.membrane), "beta_syn_shape": _shape(m.beta_syn)}


def _build_cuba(a: dict) -> nn.Module:
    return CubaLIF(beta=torch.full(a["beta_shape"], 0.5), beta_syn=torch.full(a["beta_syn_shape"], 0.5),
                   threshold=torch.ones(a["threshold_shape"]), reset=a["reset"], v_init=a["v_init"],
                   surrogate=a["surrogate"], alpha=a["alpha"], detach_reset=a["detach_reset"])


def _li_args(m: LI) -> dict:
    beta = None if isinstance(m, Integrator) else _shape(m.beta)
    return {"beta_shape": beta, "gain_shape": _shape(m.gain), "v_init": m.v_init}


def _build_li(cls, a: dict) -> nn.Module:
    gain = torch.ones(a["gain_shape"])
    if cls is Integrator:
        return Integrator(gain=gain, v_init=a["v_init"])
    return LI(beta=torch.full(a["beta_shape"], 0.5), gain=gain, v_init=a["v_init"])


_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
         "padding_mode")


def _register_core_types() -> None:
    """The torch and snnedge modules a SpikingNetwork runs. A new core type goes here; a type
    of another package registers from that package (see the module docstring)."""
    register_layer_type("torch.nn.Conv1d", nn.Conv1d, _with_bias(*_CONV))
    register_layer_type("torch.nn.Conv2d", nn.Conv2d, _with_bias(*_CONV))
    register_layer_type("torch.nn.Linear", nn.Linear, _with_bias("in_features", "out_features"))
    register_layer_type("torch.nn.AvgPool1d", nn.AvgPool1d, _attrs(
        "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"))
    register_layer_type("torch.nn.AvgPool2d", nn.AvgPool2d, _attrs(
        "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"))
    register_layer_type("torch.nn.AdaptiveAvgPool1d", nn.AdaptiveAvgPool1d, _attrs("output_size"))
    register_layer_type("torch.nn.AdaptiveAvgPool2d", nn.AdaptiveAvgPool2d, _attrs("output_size"))
    register_layer_type("torch.nn.ChannelShuffle", nn.ChannelShuffle, _attrs("groups"))
    register_layer_type("torch.nn.Flatten", nn.Flatten, _attrs("start_dim", "end_dim"))
    register_layer_type("torch.nn.Unflatten", nn.Unflatten, _attrs("dim", "unflattened_size"))
    register_layer_type("torch.nn.Identity", nn.Identity, _attrs())
    for dropout in DROPOUTS:
        register_layer_type(f"torch.nn.{dropout.__name__}", dropout, _attrs("p", "inplace"))
    register_layer_type("snnedge.SumPool2d", SumPool2d, _attrs("kernel_size", "stride", "padding"))
    register_layer_type("snnedge.Scale", Scale, lambda m: {
        "scale_shape": _shape(m.scale), "bias_shape": _shape(m.bias)}, _build_scale)
    register_layer_type("snnedge.Add", Add, _attrs())
    register_layer_type("snnedge.Concat", Concat, _attrs("dim"))
    register_layer_type("snnedge.Narrow", Narrow, _attrs("dim", "start", "length"))
    register_layer_type("snnedge.IF", IF, _neuron_args, functools.partial(_build_neuron, IF))
    register_layer_type("snnedge.LIF", LIF, _lif_args, _build_lif)
    register_layer_type("snnedge.CubaLIF", CubaLIF, _cuba_args, _build_cuba)
    register_layer_type("snnedge.LI", LI, _li_args, functools.partial(_build_li, LI))
    register_layer_type("snnedge.Integrator", Integrator, _li_args,
                        functools.partial(_build_li, Integrator))
    register_layer_type("snnedge.Threshold", Threshold, lambda m: {
        "threshold_shape": _shape(m.threshold), "surrogate": m.surrogate.name,
        "alpha": m.surrogate.alpha}, lambda a: Threshold(torch.zeros(a["threshold_shape"]),
                                                         a["surrogate"], a["alpha"]))
    register_layer_type("snnedge.Delay", Delay, lambda m: {"delay_shape": _shape(m.delay)},
                        lambda a: Delay(torch.zeros(a["delay_shape"], dtype=torch.int64)))
    register_layer_type("snnedge.ChipNeuron", ChipNeuron, _chip_args, _build_chip)


_CHIP_BUFFERS = ("threshold", "bias", "v_init", "beta", "decay")


def _chip_args(m: ChipNeuron) -> dict:
    return {**{f"{k}_shape": _shape(getattr(m, k)) for k in _CHIP_BUFFERS},
            **_attrs("reset", "decay_shift", "v_min", "v_max", "current_bits", "strict",
                     "integer")(m)}


def _build_chip(a: dict) -> ChipNeuron:
    # placeholders of the saved shapes (a positive threshold); the state dict brings the values
    shaped = {k: None if a[f"{k}_shape"] is None else torch.ones(a[f"{k}_shape"])
              for k in _CHIP_BUFFERS}
    return ChipNeuron(shaped["threshold"], shaped["bias"], shaped["v_init"], a["reset"],
                      beta=shaped["beta"], decay=shaped["decay"], decay_shift=a["decay_shift"],
                      v_min=a["v_min"], v_max=a["v_max"], current_bits=a["current_bits"],
                      strict=a["strict"], integer=a["integer"])


_register_core_types()
