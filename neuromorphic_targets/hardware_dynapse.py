r"""DYNAP-SE as the analog chip computes: 4 shared weights per core and frozen mismatch.

:func:`~neuromorphic_targets.to_hardware` calls :func:`dynapse_network` for the ``dynap-se``
family. The chip (Moradi et al., IEEE TBioCAS 12:106, 2018) has no per-synapse weight
memory: each core has 4 synapse types (fast/slow, excitatory/inhibitory) whose weights are
bias currents shared by all its neurons, and a synapse is a CAM entry that names its type.
Its circuits are analog, so every neuron's copy of a nominal current differs from the
nominal value by a frozen random factor (mismatch). The network is rebuilt as:

1. each neuron layer's input map (weighted layer, pooling, flatten) unrolled into one matrix
   ``M`` (neurons x inputs): a conv's shared kernel becomes each neuron's own synapses, as
   the chip's CAMs hold them;
2. per core (the mapping's tiles), the non-zero entries of its neurons' rows replaced by
   ``synapse_types / 2`` k-means levels among the positive entries and as many among the
   negative ones (2 excitatory + 2 inhibitory weights);
3. mismatch, with relative sigma ``s`` (default the profile's ``mismatch_sigma_fraction``: rockpool's
   DYNAP-SE2 simulator draws 30 % at 3 sigma, so ``s = 0.10``), drawn once from ``seed``::

       w_ij    = L_core(type_ij) * max(0, 1 + s * e_(j, type_ij))   (per neuron and synapse type)
       theta_j = theta * max(1e-3, 1 + s * e_j)                      (per neuron)
       tau_j   = tau * max(1e-3, 1 + s * e'_j),  beta_j = beta^(tau / tau_j)   (LIF only)

   with ``e`` standard normal; a current cannot change sign (weights clip at 0), a threshold
   or time constant stays positive;
4. neurons as analog :class:`snnedge.ChipNeuron` s that reset to zero (the circuit's reset
   potential; the chip has no reset by subtraction).

An IF layer has no time constant to mismatch (beta = 1 stays 1); biases have no per-neuron
counterpart on the chip (its DC input is one current per core) and are refused.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from snnedge import SpikingNetwork
from snnedge.chip_neuron import ChipNeuron
from snnedge.layers import INPUT
from snnedge.network import Node
from snnedge.neurons import LIF, SpikingNeuron
from snnedge.quantization import FormatGroup, format_groups, row_levels

from .hardware_info import HardwareError, HardwareInfo
from .mapping_types import Mapping
from .profiles import Profile
from .tiling import Tiling

# Mismatch may not push a threshold or a time constant to zero or below.
FLOOR = 1e-3


def dynapse_network(snn: SpikingNetwork, prof: Profile, m: Mapping, shape: tuple[int, ...],
                    mismatch: float | None, seed: int) -> SpikingNetwork:
    """``snn`` on ``prof``'s DYNAP-SE cores (see the module docstring); ``m`` is its mapping."""
    sigma = float(prof.value("mismatch_sigma_fraction") if mismatch is None else mismatch)
    half = int(prof.value("synapse_types")) // 2
    info = HardwareInfo(prof.name, prof.family, "", mismatch=sigma, seed=seed)
    info.notes.append("analog neurons reset to zero (the circuit's reset potential)")
    gen = torch.Generator().manual_seed(seed)
    shapes = dict(snn.shapes(shape))
    shapes[INPUT] = shape
    nodes: list[Node] = []
    for g in format_groups(snn, shape):
        _check(snn, g, HardwareError)
        (source,) = g.sources
        name = g.target if g.neuron is None else g.layers[-1]
        matrix = _unrolled(snn, g, shapes)
        weights, types = _per_core_levels(matrix, _cores(m, g, shapes), half)
        gains = _draw(gen, sigma, (matrix.shape[0], 2 * half))
        weights = weights * gains.gather(1, types)
        lin = nn.Linear(matrix.shape[1], matrix.shape[0], bias=False).to(torch.float64)
        lin.weight = nn.Parameter(weights, requires_grad=False)
        nodes += [Node(f"{name}_in", nn.Flatten(), (source,)), Node(name, lin, (f"{name}_in",))]
        if g.neuron is None:
            continue
        out_shape = shapes[g.target]
        prev = name
        if len(out_shape) > 1:
            nodes.append(Node(f"{name}_out", nn.Unflatten(1, out_shape), (name,)))
            prev = f"{name}_out"
        nodes.append(Node(g.neuron, _neuron(snn.layer(g.neuron), out_shape, gen, sigma, info,
                                            g.neuron), (prev,)))
    hw = SpikingNetwork(nodes, input_shape=shape,
                        readout_exponent=snn.readout_exponent).to(torch.float64)
    hw.hardware_ = info
    return hw


def _check(snn: SpikingNetwork, g: FormatGroup, error: type) -> None:
    who = g.neuron or f"readout {g.target!r}"
    if len(g.sources) != 1:
        raise error(f"Neurons {who!r} receive spikes from {list(g.sources)}; the DYNAP-SE model "
                    f"here builds one source per neuron layer. Join the branches with a weighted "
                    f"layer per branch into its own neurons.")
    if any(snn.layer(n).bias is not None and bool((snn.layer(n).bias != 0).any()) for n in g.layers):
        raise error(f"Layer(s) {list(g.layers)} have biases, but DYNAP-SE neurons have no bias of "
                    f"their own (the DC input is one current per core). Train or convert the "
                    f"network without biases (bias=False).")
    if g.neuron is not None and not isinstance(snn.layer(g.neuron), SpikingNeuron):
        raise error(f"Layer {g.neuron!r} is a {type(snn.layer(g.neuron)).__name__}; to_hardware "
                    f"builds DYNAP-SE neurons from snnedge.IF and snnedge.LIF layers.")


@torch.no_grad()
def _unrolled(snn: SpikingNetwork, g: FormatGroup, shapes: dict) -> torch.Tensor:
    """The group's linear map from its source to its target as a matrix (targets x sources)."""
    (source,) = g.sources
    n_in = math.prod(shapes[source])
    vals = {source: torch.eye(n_in, dtype=torch.float64).reshape(n_in, *shapes[source])}
    for n in g.nodes:
        module = snn.layer(n)
        dtype = next((p.dtype for p in module.parameters()), torch.float64)
        vals[n] = module(*[vals[i].to(dtype) for i in snn.inputs_of(n)]).to(torch.float64)
    return vals[g.target].reshape(n_in, -1).T.contiguous()


def _cores(m: Mapping, g: FormatGroup, shapes: dict) -> torch.Tensor:
    """The core of each neuron of the group (flat, in the layer's element order)."""
    shape = shapes[g.target]
    row = next(r for r in m.per_layer if (r.neuron_layer == g.neuron if g.neuron else
                                          r.neuron_layer is None))
    tile = tuple(row.tile) if row.tile is not None else None
    n = math.prod(shape)
    if tile is None or len(tile) != len(shape):
        per_core = int(m.profile.value("neurons_per_core"))
        return torch.arange(n) // per_core
    coords = torch.stack(torch.meshgrid(*[torch.arange(s) for s in shape], indexing="ij"))
    return Tiling(tuple(shape), tile).tile_ids(coords.reshape(len(shape), -1).T)


def _per_core_levels(matrix: torch.Tensor, cores: torch.Tensor,
                     half: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each core's non-zero weights as ``half`` positive and ``half`` negative k-means levels,
    and each entry's synapse type: the rank of its level among the core's levels (zero
    entries, no synapse, get type 0)."""
    out = matrix.clone()
    types = torch.zeros(matrix.shape, dtype=torch.long)
    for k in cores.unique():
        rows = cores == k
        block = matrix[rows].reshape(1, -1)
        q = (row_levels(block.clamp(min=0), half) + row_levels(block.clamp(max=0), half))
        q = q.reshape(-1, matrix.shape[1])
        levels = q[q != 0].unique()  # ascending, at most 2 * half
        out[rows] = q
        if levels.numel():
            types[rows] = torch.where(q != 0, torch.searchsorted(levels, q.contiguous()).clamp(
                max=2 * half - 1), 0)
    return out, types


def _draw(gen: torch.Generator, sigma: float, shape, floor: float = 0.0) -> torch.Tensor:
    """``max(floor, 1 + sigma * N(0, 1))`` of ``shape`` (exactly ones when sigma is 0)."""
    if sigma == 0.0:
        return torch.ones(shape, dtype=torch.float64)
    e = torch.randn(shape, generator=gen, dtype=torch.float64)
    return (1.0 + sigma * e).clamp(min=floor)


def _neuron(module: SpikingNeuron, shape: tuple[int, ...], gen: torch.Generator, sigma: float,
            info, name: str) -> ChipNeuron:
    template = torch.zeros((1, *shape), dtype=torch.float64)
    theta = module.threshold_for(template.to(module.threshold.dtype)).to(torch.float64)
    theta = theta.expand(shape) * _draw(gen, sigma, shape, FLOOR)
    v0 = module.initial_state(template.to(module.threshold.dtype)).to(torch.float64)[0]
    beta = None
    if isinstance(module, LIF):
        nominal = module.per_channel(module.decay.detach(), template.to(module.decay.dtype))
        nominal = nominal.to(torch.float64).expand(template.shape)[0]
        beta = nominal ** (1.0 / _draw(gen, sigma, shape, FLOOR))
    elif sigma:
        info.notes.append(f"layer {name!r}: an IF neuron has no time constant to mismatch")
    if module.reset != "zero":
        info.notes.append(f"layer {name!r}: reset {module.reset!r} runs as a reset to zero")
    return ChipNeuron(theta, None, v0, "zero", beta=beta, integer=False)
