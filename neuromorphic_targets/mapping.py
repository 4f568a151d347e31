"""`map_network`: place a `SpikingNetwork`'s neurons on a profile's cores and check its limits.

The mapping is a pure function: it reads the network's graph, shapes and weights and returns a
frozen :class:`Mapping` (:mod:`.mapping_types`); the network is never changed. This module only
picks the mapper of the profile's family (:data:`MAPPERS`); each family has its rules:

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

from collections.abc import Sequence

from snnedge import SpikingNetwork

from .graph import MappingError, NetworkGraph
from .map_cores import map_cores
from .map_dynapcnn import map_dynapcnn
from .mapping_types import LayerRow, Mapping
from .profiles import Profile, get_profile

__all__ = ["LayerRow", "Mapping", "map_network"]

#: The mapper of each profile family.
MAPPERS = {"truenorth": map_cores, "dynap-se": map_cores, "loihi": map_cores,
           "dynap-cnn": map_dynapcnn}


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
    Tiled families check every core and every neuron exactly. Receptive fields come in closed
    form (:mod:`.receptive`, :mod:`.tile_counts`): interior cores of a convolution are alike,
    border cores are counted as they are, so the work grows with the number of distinct cores
    rather than with all of them (VGG-16 and ResNet-50 at 224 px map in seconds to tens of
    seconds on a CPU). Layer kinds outside the closed form fall back to the structural map's
    vector-Jacobian products over every core (exact, slower).
    """
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
    if prof.family not in MAPPERS:
        raise MappingError(f"No mapper for family {prof.family!r}; families are {list(MAPPERS)}.")
    return MAPPERS[prof.family](graph, prof)
