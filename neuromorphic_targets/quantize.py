"""`quantize_for`: make a network's weights representable on a profile, as a new network.

* TrueNorth: each neuron (output channel or unit) keeps at most ``axon_types_per_core`` (4)
  distinct non-zero weights, each a signed ``weight_bits`` (9-bit) integer times one scale per
  neuron (the neuron's threshold absorbs the scale).
* DYNAP-SE: the neurons of a core (the output channels of one tile from the mapping) share
  ``synapse_types`` (4) weights: 2 excitatory and 2 inhibitory values.
* DYNAP-CNN: ``weight_bits`` (8-bit) symmetric integers times one scale per layer.

Levels come from 1-D k-means over each group's non-zero weights (zeros stay absent synapses).
The original network is deep-copied and never changed; compare both with
``snnedge.simulate`` to measure what the hardware's precision costs in accuracy. Only the
weights change here; :func:`~neuromorphic_targets.to_hardware` gives the whole network in the
chip's arithmetic (thresholds, biases and membranes too).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from snnedge import SpikingNetwork

from .graph import NetworkGraph
from .mapping import map_network
from .profiles import Profile, get_profile
from .weights import kmeans_rows, snap_levels_to_bits, weight_rows


def quantize_for(snn: SpikingNetwork, profile: str | Profile,
                 input_shape: Sequence[int] | None = None) -> SpikingNetwork:
    """A copy of ``snn`` whose weights satisfy ``profile``'s weight limits.

    ``input_shape`` (default ``snn.input_shape``) is needed for DYNAP-SE only, whose weight
    groups are the cores chosen by :func:`~neuromorphic_targets.map_network`.

    >>> import torch, torch.nn as nn, snnedge
    >>> net = snnedge.sequential(nn.Linear(8, 3), snnedge.IF(), nn.Linear(3, 2))
    >>> q = quantize_for(net, "truenorth")
    >>> int(q.layer("0").weight[0].unique().numel()) <= 4
    True
    """
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"quantize_for expects a snnedge.SpikingNetwork. Got {type(snn).__name__}.")
    prof = get_profile(profile)
    out = copy.deepcopy(snn)
    weighted = [n.name for n in out.nodes if out.kind(n.name) == "weighted"]
    if prof.family == "truenorth":
        levels, bits = int(prof.value("axon_types_per_core")), int(prof.value("weight_bits"))
        for name in weighted:
            _set(out, name, lambda rows: _per_neuron(rows, levels, bits))
    elif prof.family == "dynap-cnn":
        bits = int(prof.value("weight_bits"))
        for name in weighted:
            _set(out, name, lambda rows: snap_levels_to_bits(rows.reshape(1, -1), bits).reshape(rows.shape))
    elif prof.family == "dynap-se":
        blocks = _dynapse_blocks(snn, prof, input_shape)
        half = int(prof.value("synapse_types")) // 2
        for name in weighted:
            _set(out, name, lambda rows, b=blocks.get(name): _per_core(rows, b or rows.shape[0], half))
    else:
        raise ValueError(f"quantize_for has no weight format for profile {prof.name!r} (family "
                         f"{prof.family!r}). Use a TrueNorth, DYNAP-SE or DYNAP-CNN profile; for "
                         f"Loihi, to_hardware(snn, {prof.name!r}) gives the whole network in its "
                         f"arithmetic (weights, thresholds, membranes).")
    return out


def _set(net: SpikingNetwork, name: str, fn) -> None:
    module = net.layer(name)
    with torch.no_grad():
        rows = weight_rows(module.weight).to("cpu", torch.float64)
        module.weight.copy_(fn(rows).reshape(module.weight.shape).to(module.weight))


def _per_neuron(rows: torch.Tensor, levels: int, bits: int) -> torch.Tensor:
    q = kmeans_rows(rows, rows != 0, levels)
    return snap_levels_to_bits(q, bits)


def _per_core(rows: torch.Tensor, block: int, half: int) -> torch.Tensor:
    out = rows.clone()
    for start in range(0, rows.shape[0], block):
        g = rows[start:start + block].reshape(1, -1)
        q = kmeans_rows(g, g > 0, half)
        q = kmeans_rows(q, q < 0, half)
        out[start:start + block] = q.reshape(-1, rows.shape[1])
    return out


def _dynapse_blocks(snn: SpikingNetwork, prof: Profile, input_shape) -> dict[str, int]:
    """Output channels per core of each weighted layer, from the mapping's tiles."""
    shape = input_shape if input_shape is not None else snn.input_shape
    if shape is None:
        raise ValueError("quantize_for(snn, 'dynap-se') groups weights by the cores of the mapping, "
                         "which needs the input shape: pass input_shape=(1, 28, 28) (for example).")
    m = map_network(snn, prof, shape)
    graph = NetworkGraph(snn, tuple(shape))
    blocks = {}
    for pop, row in zip(graph.populations, m.per_layer):
        for w in pop.weighted:
            if len(pop.weighted) == 1 and snn.layer(w).weight.shape[0] == pop.shape[0]:
                blocks[w] = row.tile[0]
    return blocks
