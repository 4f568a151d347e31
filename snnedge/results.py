"""`SimulationResult`: what :func:`snnedge.simulate` measured."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SimulationResult:
    """Outputs and activity of one simulation.

    Attributes
    ----------
    output:
        ``[N, classes]`` readout accumulated over all steps: the plain sum, or where the
        network has a ``readout_exponent`` ``p`` the sum weighted by ``(t / T) ** p`` times
        ``T / sum_t (t / T) ** p`` (:mod:`snnedge.readout`).
    step_predictions:
        ``[T, N]`` argmax of the readout accumulated (so weighted) up to each step.
    readout:
        ``[T, N, classes]`` the readout's value at each step, unweighted, when
        ``simulate(..., keep_readout=True)``; else ``None``.
    spike_counts:
        Total spikes per neuron layer, over all samples and steps.
    synaptic_events:
        Spike-driven synaptic events per weighted layer: each spike counted once per
        non-zero synapse it reaches (border-exact fan-out), over all samples and steps. A
        neuron layer whose spikes also cross synapses of its own (Loihi's two-compartment
        neuron: the soma's synapse back to its dendrite) has an entry of its own for them.
    input_macs:
        Multiply-accumulates driven by analog (non-spike) inputs per weighted layer: the
        first layer under direct encoding counts one MAC per non-zero input value per synapse
        per step.
    neurons:
        Neurons per neuron layer.
    neuron_spike_counts:
        Spikes of each neuron (per-sample shape), summed over samples and steps.
    timesteps, num_samples:
        ``T`` and ``N``.
    labels:
        Labels when the data came with them (a DataLoader of ``(x, y)``), else ``None``.
    input_spike_counts:
        Input spikes per input element (per-sample shape), summed over samples and steps, for
        spiking encodings (``poisson``, ``latency``); ``None`` for ``direct``.
    network:
        The simulated :class:`~snnedge.SpikingNetwork` (the caller's object, not a copy), so
        that reports such as ``neuromorphic_targets.compare`` can map it.
    engine:
        Engine used (``"auto"`` resolves per batch; the most used one is reported).
    dt_s:
        Simulated time per step in seconds, when the network carries one (else ``None``).
    """

    output: torch.Tensor
    step_predictions: torch.Tensor
    spike_counts: dict[str, int]
    synaptic_events: dict[str, int]
    input_macs: dict[str, int]
    neurons: dict[str, int]
    neuron_spike_counts: dict[str, torch.Tensor]
    timesteps: int
    num_samples: int
    encoding: str
    engine: str
    labels: torch.Tensor | None = None
    input_spike_counts: torch.Tensor | None = None
    network: object | None = field(default=None, repr=False, compare=False)
    wall_time_s: float = 0.0
    extra: dict = field(default_factory=dict)
    readout: torch.Tensor | None = None

    @property
    def predictions(self) -> torch.Tensor:
        """``[N]`` class with the largest accumulated readout."""
        return self.step_predictions[-1]

    def _labels(self, y) -> torch.Tensor:
        if y is None:
            if self.labels is None:
                raise ValueError("accuracy needs labels: pass y (a tensor of N class indices), "
                                 "or simulate a DataLoader of (x, y) batches.")
            y = self.labels
        y = torch.as_tensor(y).reshape(-1).to(self.step_predictions.device)
        if y.numel() != self.num_samples:
            raise ValueError(f"accuracy got {y.numel()} labels for {self.num_samples} simulated "
                             f"samples; pass one label per sample, in the same order.")
        return y

    def accuracy(self, y=None) -> float:
        """Fraction of samples whose prediction equals ``y`` (in [0, 1])."""
        return float((self.predictions == self._labels(y)).double().mean())

    def accuracy_curve(self, y=None) -> torch.Tensor:
        """Accuracy after each step ``t = 1..T`` (length ``T``, float64)."""
        return (self.step_predictions == self._labels(y).unsqueeze(0)).double().mean(1)

    @property
    def total_spikes(self) -> int:
        return int(sum(self.spike_counts.values()))

    @property
    def total_synaptic_events(self) -> int:
        return int(sum(self.synaptic_events.values()))

    def firing_rates(self) -> dict[str, float]:
        """Mean spikes per neuron per step, per neuron layer."""
        denom = self.num_samples * self.timesteps
        return {k: self.spike_counts[k] / (self.neurons[k] * denom) for k in self.spike_counts}

    def per_inference(self) -> dict[str, float]:
        """Spikes, synaptic events and analog MACs per sample."""
        n = self.num_samples
        return {"spikes": self.total_spikes / n, "synaptic_events": self.total_synaptic_events / n,
                "input_macs": sum(self.input_macs.values()) / n}

    def summary(self) -> str:
        """A readable table of per-layer activity."""
        rates = self.firing_rates()
        lines = [f"SimulationResult: {self.num_samples} samples x {self.timesteps} steps, "
                 f"encoding={self.encoding!r}, engine={self.engine!r}"]
        if self.labels is not None:
            lines.append(f"accuracy: {self.accuracy():.4f}")
        w = max([len(k) for k in (*self.neurons, *self.synaptic_events)] + [5])
        lines.append(f"{'layer':<{w}}  {'neurons':>9}  {'spikes':>12}  {'rate/step':>9}")
        for k in self.neurons:
            lines.append(f"{k:<{w}}  {self.neurons[k]:>9,}  {self.spike_counts[k]:>12,}  {rates[k]:>9.4f}")
        lines.append(f"{'layer':<{w}}  {'synaptic events':>16}  {'analog MACs':>14}")
        for k in dict.fromkeys([*self.synaptic_events, *self.input_macs]):
            lines.append(f"{k:<{w}}  {self.synaptic_events.get(k, 0):>16,}  {self.input_macs.get(k, 0):>14,}")
        per = self.per_inference()
        lines.append(f"per inference: {per['spikes']:,.1f} spikes, {per['synaptic_events']:,.1f} "
                     f"synaptic events, {per['input_macs']:,.1f} analog MACs")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"SimulationResult(num_samples={self.num_samples}, timesteps={self.timesteps}, "
                f"spikes={self.total_spikes}, synaptic_events={self.total_synaptic_events})")

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-neuron maps, no outputs)."""
        d = {
            "timesteps": self.timesteps, "num_samples": self.num_samples,
            "encoding": self.encoding, "engine": self.engine,
            "spike_counts": dict(self.spike_counts), "synaptic_events": dict(self.synaptic_events),
            "input_macs": dict(self.input_macs), "neurons": dict(self.neurons),
            "firing_rates": self.firing_rates(), "per_inference": self.per_inference(),
            "wall_time_s": self.wall_time_s,
        }
        if self.labels is not None:
            d["accuracy"] = self.accuracy()
            d["accuracy_curve"] = self.accuracy_curve().tolist()
        return d
