"""`map_network`: place a `SpikingNetwork`'s neurons on a profile's cores and check its limits.

The mapping is a pure function: it reads the network's graph, shapes and weights and returns a
frozen :class:`Mapping`; the network is never changed. Each family has its rules:

* TrueNorth (:mod:`.map_cores`): cores of 256 axons x 256 neurons; conv layers tiled so each
  core's receptive-field union fits its axons; splitter neurons for fan-out beyond one core;
  at most 4 distinct non-zero weights per neuron (axon types).
* DYNAP-SE (:mod:`.map_cores`): 4 cores x 256 neurons per chip, 4 chips per board; fan-in 64
  (CAM), fan-out 4 destination cores (SRAM), 4 synapse types with per-core shared weights.
* Loihi (:mod:`.map_cores`): 128 cores x 1024 compartments per chip.
* DYNAP-CNN (:mod:`.map_dynapcnn`): one conv layer per core, kernel/neuron/bias memories,
  layers assigned to the 9 cores by bipartite matching.

``feasible`` says whether the network's *structure* fits (neurons, axons or fan-in, fan-out,
memories, layer geometry); ``weights_representable`` whether its weights are (float weights
rarely are: :func:`~neuromorphic_targets.quantize_for` makes them so, and ``simulate`` then
measures the accuracy it costs).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from snnedge import SpikingNetwork

from .graph import MappingError, NetworkGraph, Population
from .profiles import Profile, get_profile


@dataclass(frozen=True)
class LayerRow:
    """One population on the hardware (a row of :attr:`Mapping.per_layer`).

    Attributes
    ----------
    layer:
        The weighted layer(s) feeding the neurons (``"a+b"`` for several), else the neuron layer.
    neuron_layer:
        The neuron layer, or ``None`` for the readout.
    neurons, cores:
        Neurons of the population and the cores they occupy (splitters not included).
    neuron_utilisation:
        ``neurons / (cores * neurons per core)`` (DYNAP-CNN: neuron memory used / the core's).
    fan_in:
        Largest number of inputs of one neuron.
    fan_out_cores:
        Largest number of cores one neuron's spikes must reach (``None`` for the readout).
    axon_utilisation:
        TrueNorth: mean axons used per core / axons per core; DYNAP-SE: mean fan-in / CAM
        entries per neuron; else ``None``.
    memory_utilisation:
        DYNAP-CNN: kernel memory used / the core's; Loihi: largest synaptic memory used /
        the core's when the profile knows the bits per synapse; else ``None``.
    tile:
        Box of neurons per core (channels, rows, columns) for tiled families.
    splitter_neurons, splitter_cores:
        TrueNorth neurons that copy this layer's spikes to more than one core.
    core:
        DYNAP-CNN core the layer is assigned to (``None`` if none).
    kernel_memory, neuron_memory, bias_memory:
        DYNAP-CNN memory entries the layer needs.
    max_axons:
        TrueNorth: largest number of axons a core of this layer uses.
    """

    layer: str
    neuron_layer: str | None
    neurons: int
    cores: int
    neuron_utilisation: float | None
    fan_in: int
    fan_out_cores: int | None
    axon_utilisation: float | None = None
    memory_utilisation: float | None = None
    tile: tuple[int, ...] | None = None
    splitter_neurons: int = 0
    splitter_cores: int = 0
    core: int | None = None
    kernel_memory: int | None = None
    neuron_memory: int | None = None
    bias_memory: int | None = None
    max_axons: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Mapping:
    """Where a network's neurons go on a profile's hardware, and what does not fit.

    Attributes
    ----------
    profile:
        The :class:`Profile` mapped onto.
    feasible, problems:
        Whether the structure fits; each problem names the layer and the violated limit with
        numbers.
    cores, chips, boards:
        Cores used (splitters included), chips, and boards (DYNAP-SE; ``None`` elsewhere).
    cores_lower_bound:
        Sum over layers of ``ceil(neurons / neurons per core)``.
    per_layer:
        One :class:`LayerRow` per population, in network order.
    weights_representable, weight_problems:
        Whether the weights fit the profile's precision and distinct-weight limits.
    notes:
        Limits not checked and assumptions made.
    input_shape:
        Per-sample input shape mapped.
    destinations:
        Per neuron layer, the cores each neuron's spikes reach (a tensor of the layer's shape);
        used by :func:`~neuromorphic_targets.estimate_energy` for routing.
    """

    profile: Profile
    feasible: bool
    problems: list[str]
    cores: int
    chips: int
    boards: int | None
    cores_lower_bound: int
    per_layer: list[LayerRow]
    weights_representable: bool
    weight_problems: list[str]
    notes: list[str]
    input_shape: tuple[int, ...]
    destinations: dict[str, torch.Tensor]

    @property
    def neuron_layers(self) -> tuple[str, ...]:
        return tuple(r.neuron_layer for r in self.per_layer if r.neuron_layer is not None)

    def row(self, layer: str) -> LayerRow:
        """The row whose ``layer`` or ``neuron_layer`` is ``layer``."""
        for r in self.per_layer:
            if layer in (r.layer, r.neuron_layer):
                return r
        raise KeyError(f"No row for layer {layer!r}; rows are {[r.layer for r in self.per_layer]}.")

    def to_dict(self) -> dict:
        """JSON-ready summary (no tensors)."""
        return {"profile": self.profile.name, "family": self.profile.family,
                "feasible": self.feasible, "problems": list(self.problems), "cores": self.cores,
                "chips": self.chips, "boards": self.boards,
                "cores_lower_bound": self.cores_lower_bound,
                "weights_representable": self.weights_representable,
                "weight_problems": list(self.weight_problems), "notes": list(self.notes),
                "input_shape": list(self.input_shape),
                "per_layer": [r.as_dict() for r in self.per_layer]}

    def table(self) -> str:
        """Per-layer rows as an aligned text table."""
        cols = [("layer", "layer", "{}"), ("neurons", "neurons", "{:,}"), ("cores", "cores", "{:,}"),
                ("neuron util", "neuron_utilisation", "{:.2f}"), ("fan-in", "fan_in", "{:,}"),
                ("fan-out cores", "fan_out_cores", "{}"), ("axon util", "axon_utilisation", "{:.2f}"),
                ("memory util", "memory_utilisation", "{:.2f}"), ("splitters", "splitter_neurons", "{:,}"),
                ("core", "core", "{}"), ("tile", "tile", "{}")]
        rows = [r.as_dict() for r in self.per_layer]
        keep = [c for c in cols if any(r[c[1]] not in (None, 0) for r in rows) or c[1] in
                ("layer", "neurons", "cores", "neuron_utilisation", "fan_in")]
        cells = [[c[0] for c in keep]] + [
            ["-" if r[k] is None else (fmt.format(tuple(r[k])) if k == "tile" else fmt.format(r[k]))
             for _, k, fmt in keep] for r in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(keep))]
        return "\n".join("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                                   for i, (v, w) in enumerate(zip(row, widths))) for row in cells)

    def summary(self) -> str:
        """Totals, problems and the per-layer table."""
        head = (f"Mapping onto {self.profile.name!r}: {'feasible' if self.feasible else 'INFEASIBLE'}; "
                f"{self.cores:,} cores (lower bound {self.cores_lower_bound:,}), {self.chips:,} chip(s)"
                + (f", {self.boards:,} board(s)" if self.boards is not None else "")
                + ("" if self.weights_representable else "; weights need quantize_for"))
        lines = [head] + [f"  problem: {p}" for p in self.problems]
        lines += [f"  weights: {p}" for p in self.weight_problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines + [self.table()])

    def __repr__(self) -> str:
        return (f"Mapping(profile={self.profile.name!r}, feasible={self.feasible}, cores={self.cores}, "
                f"chips={self.chips}, problems={len(self.problems)})")


def who(pop: Population) -> str:
    """How messages name a population: its weighted layer and its neurons."""
    if pop.readout:
        return f"readout layer {pop.label!r}"
    if pop.weighted:
        return f"layer {pop.label!r} (into neurons {pop.name!r})"
    return f"neuron layer {pop.name!r}"


def map_network(snn: SpikingNetwork, profile: str | Profile,
                input_shape: Sequence[int] | None = None) -> Mapping:
    """Map ``snn`` onto ``profile``'s cores and check every limit.

    Parameters
    ----------
    snn:
        The network (never modified).
    profile:
        A registered name (``"truenorth"``, ``"dynap-se"``, ``"dynap-cnn"``, ``"loihi"``)
        or a :class:`Profile`.
    input_shape:
        Shape of one input sample; defaults to ``snn.input_shape``.

    Returns
    -------
    Mapping
        Feasibility, problems (each naming the layer and the violated limit), cores, chips,
        boards and per-layer rows.

    Notes
    -----
    Tiled families check every core exactly: the work grows with cores x (neurons in + out) per
    layer, seconds for MNIST- and CIFAR-sized networks on a CPU.
    """
    from .map_cores import map_cores
    from .map_dynapcnn import map_dynapcnn

    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"map_network expects a snnedge.SpikingNetwork. Got {type(snn).__name__}; "
                        f"build one with snnedge.sequential(...) or converters.convert(ann, ...).")
    prof = get_profile(profile)
    shape = input_shape if input_shape is not None else snn.input_shape
    if shape is None:
        raise ValueError("map_network needs the shape of one input sample: pass input_shape=(1, 28, 28) "
                         "(for example), or build the network with input_shape=...")
    shape = tuple(int(s) for s in shape)
    graph = NetworkGraph(snn, shape)
    mappers = {"truenorth": map_cores, "dynap-se": map_cores, "loihi": map_cores,
               "dynap-cnn": map_dynapcnn}
    if prof.family not in mappers:
        raise MappingError(f"No mapper for family {prof.family!r}; families are {list(mappers)}.")
    return mappers[prof.family](graph, prof)


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def lower_bound(graph: NetworkGraph, per_core: int) -> int:
    return sum(math.ceil(p.neurons / per_core) for p in graph.populations)
