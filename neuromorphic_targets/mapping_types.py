"""What a mapping returns (:class:`Mapping`, one :class:`LayerRow` per population) and the
helpers every mapper shares.

The mappers (:mod:`.map_cores` for TrueNorth, DYNAP-SE and Loihi; :mod:`.map_dynapcnn` for
DYNAP-CNN) build these; :func:`~neuromorphic_targets.map_network` picks the mapper of the
profile's family; :func:`~neuromorphic_targets.estimate_energy` reads the result.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .graph import NetworkGraph, Population
from .profiles import Profile


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
    input_destinations:
        Per input element (the input's shape), where each input event goes as the chip counts
        it: TrueNorth, the cores whose axons take it (one axon delivery each); DYNAP-CNN, the
        layers its event input feeds; ``None`` when the mapper does not say.
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
    input_destinations: torch.Tensor | None = None

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


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` in integers (cores to chips, chips to boards)."""
    return -(-int(a) // int(b))


def lower_bound(graph: NetworkGraph, per_core: int) -> int:
    """Cores if each population filled its cores: sum of ``ceil(neurons / per_core)``."""
    return sum(math.ceil(p.neurons / per_core) for p in graph.populations)
