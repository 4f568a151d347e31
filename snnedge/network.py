"""`SpikingNetwork`: a named graph of synaptic modules and neuron layers.

A network is a list of :class:`Node` s in topological order. Each node has a name (a
converted network keeps the ANN's module paths, such as ``features.3``), a module and the
names of its inputs (``"input"`` is the network input). Modules are of three kinds:

* weighted synaptic modules: ``nn.Conv1d``, ``nn.Conv2d``, ``nn.Linear``;
* weight-free linear modules: pooling (average, sum, adaptive average), ``Flatten``,
  ``Identity``, the dropouts (``Dropout``, ``Dropout2d``, ...: active when the
  network trains, identities in eval mode), :class:`~snnedge.layers.Scale`, channel
  rearrangements (``nn.ChannelShuffle``, :class:`~snnedge.layers.Narrow`), and the junctions
  :class:`~snnedge.layers.Add` and :class:`~snnedge.layers.Concat` (two or more inputs);
* temporal modules with state (:class:`~snnedge.IF`, :class:`~snnedge.LIF`, or any
  :class:`~snnedge.layers.TemporalModule`); one may change its input's shape (a spiking max
  pool) and tells shape inference through ``output_shape``.

The network's output is its single sink node (a layer no other layer reads at the same
step). Nodes with no temporal module downstream form the readout: they accumulate their input
over time and the accumulated value is the simulation's output.

Recurrent edges. An input written ``previous("lif")`` (the string ``"lif[t-1]"``) reads the
output of temporal module ``lif`` one step earlier (zeros at ``t = 0``), so a layer may take
a neuron listed after it, or itself, and close a loop::

    Node("fc", nn.Linear(10, 20), ("input",)),
    Node("rec", nn.Linear(20, 20), (previous("lif"),)),   # W_rec z[t-1]
    Node("sum", Add(), ("fc", "rec")),
    Node("lif", LIF(), ("sum",)),                          # z[t] from fc[t] + W_rec z[t-1]

A delayed input must name a temporal module (fed-back spikes arrive one step later) on a
loop back to the layer that reads it; every cycle therefore runs through a neuron. Synaptic
events along a recurrent edge are counted when the spikes are sent, as on every other edge
(the last step's arrive after the end of the run). The other inputs still name earlier
layers, so :attr:`SpikingNetwork.names` stays a topological order of the graph without its
delayed edges. The executor runs each loop one step at a time and
everything else in blocks of steps (:mod:`snnedge.executor`).

Tensors inside the engines are time-first, ``(T, B, ...)``; synaptic modules see time
folded into the batch, ``(T * B, ...)``.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .executor import run_sequence
from .layers import DROPOUTS, INPUT, Add, Concat, Narrow, Scale, SumPool2d, TemporalModule
from .readout import check_exponent

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
#: Suffix of an input read one step late (:func:`previous`).
PREVIOUS_SUFFIX = "[t-1]"
WEIGHT_FREE = (nn.AvgPool1d, nn.AvgPool2d, SumPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
               nn.Flatten, nn.Unflatten, nn.Identity, *DROPOUTS, Scale, Add, Concat, Narrow,
               nn.ChannelShuffle)
MERGES = (Add, Concat)


def previous(name: str) -> str:
    """The input name that reads layer ``name``'s output one step earlier (a recurrent edge).

    >>> previous("lif")
    'lif[t-1]'
    """
    if not isinstance(name, str) or not name or name.endswith(PREVIOUS_SUFFIX):
        raise ValueError(f"previous() takes a layer name. Got {name!r}.")
    return name + PREVIOUS_SUFFIX


def split_delayed(i: str) -> tuple[str, bool]:
    """``("lif", True)`` for ``"lif[t-1]"``, ``(i, False)`` for any other input name."""
    if isinstance(i, str) and i.endswith(PREVIOUS_SUFFIX) and len(i) > len(PREVIOUS_SUFFIX):
        return i[:-len(PREVIOUS_SUFFIX)], True
    return i, False


@dataclass(frozen=True)
class Node:
    """One layer of a :class:`SpikingNetwork`: ``name``, ``module`` and input names.

    ``inputs=None`` means the layer listed just before (the network input for the first);
    ``previous(name)`` among the inputs reads ``name`` one step earlier (a recurrent edge)."""

    name: str
    module: nn.Module
    inputs: tuple[str, ...] | None = None


def _kind(module: nn.Module) -> str:
    if isinstance(module, TemporalModule):
        return "temporal"
    if isinstance(module, WEIGHTED):
        return "weighted"
    if isinstance(module, WEIGHT_FREE):
        return "weight_free"
    return "unsupported"


class SpikingNetwork(nn.Module):
    """A spiking neural network: a graph of named synaptic and neuron layers.

    Parameters
    ----------
    nodes:
        :class:`Node` s (or ``(name, module, inputs)`` tuples) in topological order.
    input_shape:
        Shape of one input sample, e.g. ``(1, 28, 28)``; checked against data in
        :func:`snnedge.simulate` when given.
    readout_exponent:
        How :func:`snnedge.simulate` weights the readout's steps: step ``t`` of ``T`` counts
        ``(t / T) ** readout_exponent`` (:mod:`snnedge.readout`). 0 (default): every step
        the same, the plain sum. :func:`converters.convert` sets it from calibration data;
        :func:`snnedge.fit`, which trains on the plain sum, asks for 0.

    Calling the network on a time-first input ``(T, B, ...)`` runs it from its initial state
    (:func:`snnedge.executor.run_sequence`) and returns the readout's input at every step,
    ``(T, B, ...)`` (differentiable through the neurons' surrogate gradients);
    :func:`snnedge.simulate` is the fast, counting path.
    """

    def __init__(self, nodes: Iterable[Node | tuple], input_shape: Sequence[int] | None = None,
                 readout_exponent: float = 0.0):
        super().__init__()
        self.readout_exponent = readout_exponent
        nodes = [n if isinstance(n, Node) else Node(*n) for n in nodes]
        if not nodes:
            raise ValueError("A SpikingNetwork needs at least one layer. Got an empty list.")
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self._names: list[str] = []
        self._inputs: dict[str, tuple[str, ...]] = {}
        self._kinds: dict[str, str] = {}
        self._delayed: dict[str, frozenset[str]] = {}  # layer -> inputs it reads at t - 1
        prev = INPUT
        for node in nodes:
            inputs = (prev,) if node.inputs is None else (
                (node.inputs,) if isinstance(node.inputs, str) else tuple(node.inputs))
            self._add(Node(node.name, node.module, inputs))
            prev = node.name
        self._validate_recurrence()
        self._validate_topology()

    @property
    def readout_exponent(self) -> float:
        """The readout's weighting over time, ``(t / T) ** p`` (see :mod:`snnedge.readout`)."""
        return self._readout_exponent

    @readout_exponent.setter
    def readout_exponent(self, value: float) -> None:
        self._readout_exponent = check_exponent(value, "SpikingNetwork")

    # -- construction ------------------------------------------------------------------
    def _add(self, node: Node) -> None:
        name, module = node.name, node.module
        parsed = [split_delayed(i) for i in node.inputs]
        inputs = tuple(i for i, _ in parsed)
        delayed = frozenset(i for i, d in parsed if d)
        if isinstance(name, str) and name.endswith(PREVIOUS_SUFFIX):
            raise ValueError(f"Layer name {name!r} ends in {PREVIOUS_SUFFIX!r}, which marks an input "
                             f"read one step late (snnedge.previous); rename the layer.")
        if not isinstance(name, str) or not name or name == INPUT or name in self._inputs:
            why = "is reserved for the network input" if name == INPUT else (
                "is used twice" if name in self._inputs else "must be a non-empty string")
            raise ValueError(f"Layer name {name!r} {why}; give each layer a unique name.")
        if not isinstance(module, nn.Module):
            raise TypeError(f"Layer {name!r}: expected a torch.nn.Module, got {type(module).__name__}.")
        kind = _kind(module)
        if kind == "unsupported":
            supported = ", ".join(t.__name__ for t in (*WEIGHTED, *WEIGHT_FREE)) + ", IF, LIF"
            raise TypeError(
                f"Layer {name!r} is a {type(module).__name__}, which a SpikingNetwork cannot run. "
                f"Supported modules: {supported}. Put nonlinearities into snnedge neurons (IF/LIF), "
                f"or convert an ANN with converters.convert, which maps ReLU and MaxPool2d.")
        for i in inputs:
            if i != INPUT and i not in self._inputs and i not in delayed:
                raise ValueError(f"Layer {name!r} takes input {i!r}, which is not defined before it. "
                                 f"List nodes in topological order; inputs are earlier layer names "
                                 f"or {INPUT!r}.")
        n_in = len(inputs)
        if isinstance(module, MERGES) and n_in < 2:
            raise ValueError(f"Layer {name!r} ({type(module).__name__}) joins branches and needs "
                             f"two or more inputs. Got {list(inputs)}.")
        if not isinstance(module, MERGES) and n_in != 1:
            raise ValueError(f"Layer {name!r} ({type(module).__name__}) takes exactly one input. "
                             f"Got {list(inputs)}; join branches with snnedge.Add or snnedge.Concat.")
        self._attach(name, module)
        self._names.append(name)
        self._inputs[name] = inputs
        self._kinds[name] = kind
        if delayed:
            self._delayed[name] = delayed

    def _attach(self, name: str, module: nn.Module) -> None:
        # Nested containers so that state_dict keys match the ANN's ("features.3.weight").
        *parents, leaf = name.split(".")
        owner: nn.Module = self
        for i, part in enumerate(parents):
            child = _submodule(owner, part)
            if child is None:
                child = nn.Module()
                owner.add_module(part, child)
            elif ".".join(parents[:i + 1]) in self._inputs:
                raise ValueError(f"Layer name {name!r} nests inside layer "
                                 f"{'.'.join(parents[:i + 1])!r}; rename one of them.")
            owner = child
        if not part_ok(leaf) or _submodule(owner, leaf) is not None or hasattr(type(owner), leaf):
            raise ValueError(f"Layer name {name!r} clashes with another layer or attribute; rename it.")
        owner.add_module(leaf, module)

    def _validate_recurrence(self) -> None:
        """Each delayed input names a temporal module on a loop back to its reader."""
        for name, delayed in self._delayed.items():
            for src in sorted(delayed):
                if src == INPUT or src not in self._inputs:
                    raise ValueError(f"Layer {name!r} reads {previous(src)!r}, but there is no layer "
                                     f"{src!r}; a delayed input names a layer of the network.")
                if self._kinds[src] != "temporal":
                    raise ValueError(
                        f"Layer {name!r} reads {previous(src)!r}, the previous step of "
                        f"{type(self.get_submodule(src)).__name__} {src!r}; a recurrent edge must "
                        f"start at a neuron (a temporal module), so that every cycle runs through "
                        f"one: feed back the spikes of the neuron after {src!r} instead.")
                if not self._reaches(name, src):
                    raise ValueError(
                        f"Layer {name!r} reads {previous(src)!r}, but {src!r} does not depend on "
                        f"{name!r}: a delayed input must close a loop. For a delay on a "
                        f"feed-forward path use snnedge.Delay(1).")

    def _reaches(self, start: str, goal: str) -> bool:
        """Whether ``goal`` depends on ``start`` along undelayed edges (or is ``start``)."""
        consumers: dict[str, list[str]] = {}
        for n, ins in self._inputs.items():
            for i in ins:
                if i not in self._delayed.get(n, ()):
                    consumers.setdefault(i, []).append(n)
        seen, stack = set(), [start]
        while stack:
            n = stack.pop()
            if n == goal:
                return True
            if n not in seen:
                seen.add(n)
                stack.extend(consumers.get(n, ()))
        return False

    def _validate_topology(self) -> None:
        # a layer read only one step late (a neuron on a loop) may still be the output
        consumed = {i for n, ins in self._inputs.items() for i in ins
                    if i not in self._delayed.get(n, ())}
        if INPUT not in consumed:
            raise ValueError(f"No layer takes {INPUT!r}: the network has no input.")
        sinks = [n for n in self._names if n not in consumed]
        if len(sinks) != 1:
            raise ValueError(f"A SpikingNetwork needs exactly one output layer (a layer no other "
                             f"layer consumes). Found {sinks}; join or remove the extra branches.")
        self.output_name = sinks[0]
        # Readout: nodes with no temporal module at or after them.
        consumers: dict[str, list[str]] = {n: [] for n in self._names}
        for n, ins in self._inputs.items():
            for i in ins:
                if i != INPUT:
                    consumers[i].append(n)
        # Readout: nodes from which no temporal module can be reached (loops included).
        feeds_temporal = {n for n in self._names if self._kinds[n] == "temporal"}
        stack = list(feeds_temporal)
        while stack:
            for i in self._inputs[stack.pop()]:
                if i != INPUT and i not in feeds_temporal:
                    feeds_temporal.add(i)
                    stack.append(i)
        self.readout_names = tuple(n for n in self._names if n not in feeds_temporal)
        self._consumers = {n: tuple(c) for n, c in consumers.items()}

    # -- views -------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Layer names in topological order (the network input, ``INPUT``, is not one)."""
        return tuple(self._names)

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The layers in topological order (delayed inputs written ``previous(name)``)."""
        return tuple(Node(n, self.get_submodule(n), self._marked_inputs(n)) for n in self._names)

    def _marked_inputs(self, name: str) -> tuple[str, ...]:
        delayed = self._delayed.get(name, ())
        return tuple(previous(i) if i in delayed else i for i in self._inputs[name])

    def layer(self, name: str) -> nn.Module:
        """The module of layer ``name`` (a ``KeyError`` lists the valid names)."""
        if name not in self._inputs:
            raise KeyError(f"No layer {name!r}; layers are {self._names}.")
        return self.get_submodule(name)

    def get_submodule(self, target: str) -> nn.Module:
        """``nn.Module.get_submodule`` with one attribute lookup per dotted part.

        The engines look up every layer once per block; torch's version (an ``hasattr``, a
        ``getattr`` and checks per part) was 15% of a one-sample simulation of GoogLeNet, and
        a ``getattr`` per part (``Module.__getattr__`` in Python) still 5%: the walk reads
        each module's ``_modules`` dict, where ``Module.__setattr__`` puts submodules, so a
        layer replaced through ``setattr`` is found. Anything it cannot walk goes to torch's
        version, which raises its errors."""
        module = self
        for part in target.split("."):
            children = getattr(module, "_modules", None)
            module = children.get(part) if children is not None else None
            if module is None:
                return super().get_submodule(target)
        return module

    def kind(self, name: str) -> str:
        """``"weighted"``, ``"weight_free"`` or ``"temporal"``."""
        return self._kinds[name]

    def inputs_of(self, name: str) -> tuple[str, ...]:
        """The layers ``name`` reads (names only; :meth:`delayed_inputs_of` says which of
        them it reads one step late)."""
        return self._inputs[name]

    def delayed_inputs_of(self, name: str) -> tuple[str, ...]:
        """The inputs of ``name`` read at the previous step (``previous(...)``), in input order."""
        delayed = self._delayed.get(name, ())
        return tuple(i for i in self._inputs[name] if i in delayed)

    @property
    def recurrent_edges(self) -> tuple[tuple[str, str], ...]:
        """``(source, reader)`` for every delayed input: ``reader`` takes ``source``'s output
        of the previous step. Empty for a feed-forward network."""
        if not self._delayed:  # (asked several times per simulate call)
            return ()
        return tuple((i, n) for n in self._names for i in self.delayed_inputs_of(n))

    def consumers_of(self, name: str) -> tuple[str, ...]:
        return tuple(self._consumers[name]) if name != INPUT else tuple(
            n for n in self._names if INPUT in self._inputs[n])

    @property
    def neuron_layers(self) -> tuple[str, ...]:
        """Names of layers whose outputs are neuron spikes."""
        return tuple(n for n in self._names
                     if self._kinds[n] == "temporal" and self.get_submodule(n).emits_spikes)

    def shapes(self, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Per-sample output shape of every layer for a sample of ``input_shape``.

        Raises a ``ValueError`` naming the first layer that cannot take its input.
        """
        key = tuple(int(s) for s in input_shape)
        cache = self.__dict__.setdefault("_shapes_cache", {})
        if key not in cache:
            infer = self._infer_shapes_recurrent if self._delayed else self._infer_shapes
            cache[key] = infer(key)
        return dict(cache[key])

    @torch.no_grad()
    def _infer_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        ref = next((t for t in (*self.parameters(), *self.buffers()) if t.is_floating_point()), None)
        vals = {INPUT: torch.zeros((1, *input_shape)) if ref is None else
                torch.zeros((1, *input_shape), dtype=ref.dtype, device=ref.device)}
        out = {}
        for n in self._names:
            module = self.get_submodule(n)
            xs = [vals[i] for i in self._inputs[n]]
            try:
                if self._kinds[n] == "temporal":
                    # temporal modules are asked, not run: they need state
                    y = xs[0].new_zeros((1, *module.output_shape(tuple(xs[0].shape[1:]))))
                else:
                    y = module(*xs)
            except (RuntimeError, ValueError) as e:
                got = [tuple(x.shape[1:]) for x in xs]
                raise ValueError(f"Layer {n!r} ({type(module).__name__}) cannot take an input of "
                                 f"shape {got[0] if len(got) == 1 else got} (per sample) that follows "
                                 f"from input shape {tuple(input_shape)}: {e}") from None
            vals[n] = y
            out[n] = tuple(y.shape[1:])
        return out

    @torch.no_grad()
    def _infer_shapes_recurrent(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Shapes around loops: a first pass leaves out delayed inputs not known yet (an
        ``Add`` takes its other inputs' shape); a second pass runs every layer on the
        shapes so found and must agree with the first."""
        ref = next((t for t in (*self.parameters(), *self.buffers()) if t.is_floating_point()), None)
        kw = {} if ref is None else {"dtype": ref.dtype, "device": ref.device}
        first: dict[str, tuple[int, ...]] = {INPUT: input_shape}
        for n in self._names:
            known = [first[i] for i in self._inputs[n] if i in first]
            joins = isinstance(self.get_submodule(n), Add) and known  # Add: its inputs' shape
            if len(known) == len(self._inputs[n]) or joins:
                xs = [torch.zeros((1, *s), **kw) for s in known]
                first[n] = self._node_shape(n, xs, input_shape)
        missing = [s for s, _ in self.recurrent_edges if s not in first]
        if missing:
            raise ValueError(f"Cannot infer the shape of {missing[0]!r} from input shape "
                             f"{tuple(input_shape)}: its loop has no input of known shape outside the "
                             f"loop. Join the fed-back input with snnedge.Add to a feed-forward one.")
        out = {}
        for n in self._names:
            xs = [torch.zeros((1, *(out.get(i) or first[i])), **kw) for i in self._inputs[n]]
            out[n] = self._node_shape(n, xs, input_shape)
            if n in first and first[n] != out[n]:
                raise ValueError(f"Layer {n!r} has per-sample shape {first[n]} from its inputs without "
                                 f"the fed-back ones and {out[n]} with them; the shapes around a loop "
                                 f"must settle.")
        for src, reader in self.recurrent_edges:
            if out[src] != first[src]:
                raise ValueError(f"Layer {reader!r} reads {previous(src)!r} of shape {first[src]} at "
                                 f"t - 1 but {src!r} has shape {out[src]}.")
        return out

    def _node_shape(self, n: str, xs: list[torch.Tensor], input_shape) -> tuple[int, ...]:
        module = self.get_submodule(n)
        try:
            if self._kinds[n] == "temporal":  # asked, as in _infer_shapes
                return tuple(module.output_shape(tuple(xs[0].shape[1:])))
            return tuple(module(*xs).shape[1:])
        except (RuntimeError, ValueError) as e:
            got = [tuple(x.shape[1:]) for x in xs]
            raise ValueError(f"Layer {n!r} ({type(module).__name__}) cannot take an input of "
                             f"shape {got[0] if len(got) == 1 else got} (per sample) that follows "
                             f"from input shape {tuple(input_shape)}: {e}") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_sequence(self, x)

    def extra_repr(self) -> str:
        rec = f", recurrent={[f'{s}->{r}' for s, r in self.recurrent_edges]}" if self._delayed else ""
        w = f", readout_exponent={self.readout_exponent:g}" if self.readout_exponent else ""
        return f"output={self.output_name!r}, readout={list(self.readout_names)}{w}{rec}"


def module_device(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters and buffers live (the CPU when it has none)."""
    p = next(itertools.chain(module.parameters(), module.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


def module_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of ``module``'s first floating-point parameter (the default dtype when it
    has none)."""
    p = next((t for t in module.parameters() if t.is_floating_point()), None)
    return p.dtype if p is not None else torch.get_default_dtype()


def _submodule(owner: nn.Module, name: str) -> nn.Module | None:
    """The child module ``owner`` holds as attribute ``name``, or None."""
    child = getattr(owner, name, None) if name else None
    return child if isinstance(child, nn.Module) else None


def part_ok(part: str) -> bool:
    return bool(part) and "." not in part


def sequential(*modules: nn.Module, input_shape: Sequence[int] | None = None) -> SpikingNetwork:
    """A chain of modules named ``"0"``, ``"1"``, ... like ``nn.Sequential``.

    Example
    -------
    >>> import torch.nn as nn, snnedge
    >>> net = snnedge.sequential(nn.Conv2d(1, 4, 3), snnedge.IF(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    >>> net.output_name, net.readout_names
    ('3', ('2', '3'))
    """
    if len(modules) == 1 and isinstance(modules[0], nn.Sequential):
        modules = tuple(modules[0])
    nodes, prev = [], INPUT
    for i, m in enumerate(modules):
        nodes.append(Node(str(i), m, (prev,)))
        prev = str(i)
    return SpikingNetwork(nodes, input_shape=input_shape)
