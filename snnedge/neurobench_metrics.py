"""NeuroBench-style metrics of a spiking network from a simulation and the network itself.

NeuroBench (Yik et al., "NeuroBench: a framework for benchmarking neuromorphic computing
algorithms and systems", arXiv:2304.04640; its ``SynapticOperations``, ``ActivationSparsity``,
``ConnectionSparsity`` and ``Footprint`` metrics) reports, per inference:

* **effective ACs**: accumulates driven by binary inputs (spikes): one per spike per non-zero
  synapse it reaches; snnedge's synaptic events;
* **effective MACs**: multiply-accumulates driven by non-binary inputs: one per non-zero
  input value per non-zero synapse per step; snnedge's ``input_macs`` (the direct-encoded
  first layer, and any weighted layer fed by another one's analog output, as in a readout);
* **dense ops**: every connection at every step, zero inputs and zero weights included
  (a dense, clock-driven execution), border-exact for padded convolutions;
* **activation sparsity**: zero neuron outputs / all neuron outputs over every neuron layer,
  step and sample (``1 - spikes / (neurons x T x N)``; the readout does not spike and is not
  counted);
* **connection sparsity**: zero weights / weights of the weighted layers;
* **footprint**: bytes of the parameters and buffers.

One difference is by design: between a neuron layer and a weighted layer, snnedge folds
weight-free pooling into the connectivity (a spike entering a pooling window is forwarded
once, as event-driven hardware does), while NeuroBench sees the pooled values at the weighted
layer's input, counts them as non-binary (MACs) and counts non-zero pooled values rather than
spikes. The two agree on networks with no pooling between neurons and weights.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch

from .connectivity import fanout
from .layers import INPUT
from .network import SpikingNetwork
from .results import SimulationResult

__all__ = ["NeuroBenchMetrics", "neurobench_metrics"]


@dataclass(frozen=True)
class NeuroBenchMetrics:
    """Per-inference NeuroBench-style metrics (see the module docstring for definitions).

    ``per_layer`` maps each weighted layer to its ``effective_acs``, ``effective_macs`` and
    ``dense_ops`` per inference and its ``connections`` (per step, all weights)."""

    effective_acs: float
    effective_macs: float
    dense_ops: float
    activation_sparsity: float
    connection_sparsity: float
    footprint_bytes: int
    timesteps: int
    per_layer: dict[str, dict[str, float]]

    def to_dict(self) -> dict:
        return asdict(self)


def _connections(module: torch.nn.Module, in_shape, out_shape) -> int:
    """Connections of a weighted layer per sample, zero weights included, border-exact."""
    weight = torch.nn.Parameter(torch.ones_like(module.weight, device="cpu"), requires_grad=False)
    # A copy of the module with the weight of ones in place of its own (the memo hands deepcopy
    # the replacement, so the real weight is never copied); the user's module is left alone.
    ones = copy.deepcopy(module, {id(module.weight): weight})
    return int(round(float(fanout(ones, tuple(in_shape), tuple(out_shape)).sum())))


def neurobench_metrics(result: SimulationResult, snn: SpikingNetwork,
                       input_shape: tuple[int, ...] | None = None) -> NeuroBenchMetrics:
    """NeuroBench-style metrics of ``result``, a simulation of ``snn``.

    Parameters
    ----------
    result:
        From :func:`snnedge.simulate` on ``snn``.
    snn:
        The simulated network (never modified).
    input_shape:
        One sample's shape; defaults to ``snn.input_shape``.

    Examples
    --------
    >>> import torch, torch.nn as nn, snnedge
    >>> net = snnedge.sequential(nn.Linear(4, 3, bias=False), snnedge.IF(), nn.Linear(3, 2),
    ...                          input_shape=(4,))
    >>> res = snnedge.simulate(net, torch.ones(1, 4), timesteps=5)
    >>> m = neurobench_metrics(res, net)
    >>> m.dense_ops  # (4 x 3 + 3 x 2) connections x 5 steps
    90.0
    """
    if not isinstance(result, SimulationResult):
        raise TypeError(f"The 'result' parameter of neurobench_metrics must be a "
                        f"snnedge.SimulationResult. Got {type(result).__name__} instead.")
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"The 'snn' parameter of neurobench_metrics must be a "
                        f"snnedge.SpikingNetwork. Got {type(snn).__name__} instead.")
    if set(result.neurons) != set(snn.neuron_layers):
        raise ValueError(f"neurobench_metrics: the result's neuron layers {sorted(result.neurons)} "
                         f"differ from the network's {sorted(snn.neuron_layers)}; pass the "
                         f"network that was simulated.")
    shape = input_shape if input_shape is not None else snn.input_shape
    if shape is None:
        raise ValueError("neurobench_metrics needs the shape of one input sample: pass "
                         "input_shape=(1, 28, 28) (for example), or build the network with "
                         "input_shape=...")
    shapes = snn.shapes(tuple(shape))
    shapes[INPUT] = tuple(int(s) for s in shape)
    n, T = result.num_samples, result.timesteps

    per_layer: dict[str, dict[str, float]] = {}
    zeros = weights = 0
    for node in snn.nodes:
        if snn.kind(node.name) != "weighted":
            continue
        w = node.module.weight.detach()
        zeros += int((w == 0).sum())
        weights += w.numel()
        conn = _connections(node.module, shapes[node.inputs[0]], shapes[node.name])
        per_layer[node.name] = {
            "effective_acs": result.synaptic_events.get(node.name, 0) / n,
            "effective_macs": result.input_macs.get(node.name, 0) / n,
            "dense_ops": float(conn * T), "connections": float(conn)}
    outputs = sum(result.neurons.values()) * T * n
    footprint = sum(t.numel() * t.element_size() for t in (*snn.parameters(), *snn.buffers()))
    return NeuroBenchMetrics(
        effective_acs=result.total_synaptic_events / n,
        effective_macs=sum(result.input_macs.values()) / n,
        dense_ops=float(sum(v["dense_ops"] for v in per_layer.values())),
        activation_sparsity=1.0 - result.total_spikes / outputs if outputs else 0.0,
        connection_sparsity=zeros / weights if weights else 0.0,
        footprint_bytes=int(footprint), timesteps=T, per_layer=per_layer)
