"""Published chip operating points and snnedge's reproduction of them.

A :class:`PublishedPoint` is an energy per inference that a paper reports for a network on a
chip, with the inputs the paper (or a source quoting it) gives for reproducing it: the input
rate, the time per inference, the network's size, the number of copies run side by side.
:func:`reproduce` prices a simulated stand-in network under both accountings
(:data:`~neuromorphic_targets.profiles.ACCOUNTINGS`) and says how far the ``throughput``
figure, the way published chip results count, lands from the published one.

What is simulated and what is not is stated per point: the network's structure below the
published size is snnedge's (the papers' trained networks are not public), its activity comes
from training it here on MNIST and simulating it, and the per-event and static figures are the
profile's (Merolla et al. 2014). ``examples/benchmarks/published_energy.py`` runs every point
and writes the table in ``examples/benchmarks/RESULTS.md``; the tests check each lands within
2x of its published figure.

Points:

* Esser et al., NeurIPS 2015, MNIST on TrueNorth: one network 92.7 % at 0.268 uJ per image
  (the proceedings abstract: 0.408 uJ); an ensemble of 64 at 99.42 % and 108 uJ (121 uJ).
  One image per 1 ms tick, 1,000 images/s. The single network has 512 neurons: four cores
  of 64 neurons, each seeing a 16 x 16 window of the image (stride 12), and one core of 256
  output neurons voting for the classes (:func:`esser2015_network`, ``"single"``). Each
  ensemble member has 3,840 neurons (Renner et al. 2024, Table 1), laid out here as
  ``"member"``.
* Esser et al., PNAS 2016: 8 datasets at 1,200-2,600 frames/s and 25-275 mW (abstract). Not
  reproduced: see :data:`NOT_REPRODUCED`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

import snnedge
from snnedge import SimulationResult, SpikingNetwork
from snnedge.errors import check_choice

from .energy import EnergyEstimate, estimate_energy
from .figures import Figure
from .mapping_types import Mapping

ESSER_2015 = ("Esser et al., 'Backpropagation for energy-efficient neuromorphic computing', "
              "NeurIPS 2015 (Advances in Neural Information Processing Systems 28)")
ESSER_2016 = ("Esser et al., 'Convolutional networks for fast, energy-efficient neuromorphic "
              "computing', PNAS 113:11441 (2016), doi:10.1073/pnas.1604850113")
RENNER_2024 = ("Renner et al., Nature Communications 15:9691 (2024), "
               "doi:10.1038/s41467-024-53827-9, Table 1 (a review of MNIST results on "
               "neuromorphic hardware; secondary for Esser et al. 2015)")
PYTRUENORTH = ("pytruenorth, trueshadow.py FrameClassifier5Core (a public reimplementation of "
               "Esser et al. 2015: four 16 x 16 windows at stride 12 onto 64-neuron cores, one "
               "256-neuron output core; read in code)")


@dataclass(frozen=True)
class PublishedPoint:
    """One published energy per inference and the inputs to reproduce it.

    Attributes
    ----------
    name:
        Short key (``"esser2015-single"``).
    profile:
        The chip's registered profile.
    energy_j:
        Published energy per inference (J), with its source and verified flag.
    other_energy_j:
        A second published value of the same figure (another version of the paper), or
        ``None``.
    accuracy:
        Published accuracy (a fraction), for reference; snnedge's stand-in is not trained to
        match it.
    inputs_per_s:
        Steady input rate (Hz) of the published run: the time per inference of the
        ``throughput`` accounting is its inverse.
    latency_s:
        Time one inference holds the network (s): ticks per inference x tick.
    neurons:
        Spiking neurons of one network (of one ensemble member).
    copies:
        Networks run side by side per inference (the ensemble's size).
    network:
        The stand-in's layout for :func:`esser2015_network`.
    """

    name: str
    profile: str
    energy_j: Figure
    other_energy_j: Figure | None
    accuracy: float
    inputs_per_s: Figure
    latency_s: Figure
    neurons: Figure
    copies: int
    network: str


_RATE = Figure(1000.0, "Hz", RENNER_2024, False,
               "1 / (1 ms latency per sample): one image per 1 ms tick, the layers pipelined; "
               "1,000 images/s is also how Esser et al. 2015 are commonly quoted, not found in "
               "the abstract read here", derived=True)
_LATENCY = Figure(1e-3, "s", RENNER_2024, False, "1 ms per sample: one tick")


def _esser2015(name: str, *, paper_j: float, proceedings_j: float, accuracy: float,
               network_note: str, neurons: int, neurons_note: str, copies: int,
               layout: str) -> PublishedPoint:
    """A point of Esser et al. (2015), MNIST on TrueNorth, cited as each of them is: the energy
    per image from the abstract of the paper PDF (``energy_j``; ``network_note`` says which
    network) and from the abstract on the proceedings page (``other_energy_j``), one image per
    1 ms tick, and the network's neurons as Renner et al. (2024) give them (``neurons_note``)."""
    return PublishedPoint(
        name, "truenorth",
        Figure(paper_j, "J", ESSER_2015 + ", abstract (paper PDF)", True, network_note),
        Figure(proceedings_j, "J", ESSER_2015 + ", abstract on the proceedings page", True),
        accuracy, _RATE, _LATENCY, Figure(neurons, "neuron", RENNER_2024, False, neurons_note),
        copies, layout)


#: The published points snnedge reproduces (tests and examples/benchmarks/published_energy.py).
POINTS: dict[str, PublishedPoint] = {p.name: p for p in (
    _esser2015("esser2015-single", paper_j=0.268e-6, proceedings_j=0.408e-6, accuracy=0.927,
               network_note="high-efficiency network, an ensemble of 1, 92.7 % on MNIST",
               neurons=512, neurons_note="'CNN (512 neurons)': 4 x 64 + 256, the layout of "
               + PYTRUENORTH, copies=1, layout="single"),
    _esser2015("esser2015-ensemble", paper_j=108e-6, proceedings_j=121e-6, accuracy=0.9942,
               network_note="high-performance network, an ensemble of 64, 99.42 % on MNIST",
               neurons=3840, neurons_note="'CNN (3840 neurons)' per network of the ensemble; "
               "the layout is not given there", copies=64, layout="member"),
)}

#: Published figures snnedge does not reproduce, and what is missing to do it.
NOT_REPRODUCED: dict[str, str] = {
    "esser2016": (
        f"{ESSER_2016}: 8 datasets at 1,200-2,600 frames/s and 25-275 mW, > 6,000 frames/s/W "
        "(abstract, verified). Missing here: the per-dataset table (each network's cores, "
        "frame rate and power side by side; only the abstract's ranges were read), the "
        "networks themselves (layers, groups, cores; trained on datasets snnedge does not "
        "ship) and their activity (spikes per frame). The abstract's lowest power, 25 mW, is "
        "below the lowest whole-chip power Merolla et al. (2014) report (42 mW at 0.70 V with "
        "no spikes), so it does not count whole chips at that voltage: consistent with the "
        "throughput accounting's share of a chip (or a lower supply voltage)."),
}


def _votes(outputs: int = 256, classes: int = 10) -> nn.Linear:
    """A fixed readout: output neuron ``j`` votes for class ``j % classes`` (the first
    ``classes x (outputs // classes)`` neurons vote), as the papers' output cores do."""
    lin = nn.Linear(outputs, classes, bias=False)
    j = torch.arange((outputs // classes) * classes)
    w = torch.zeros(classes, outputs)
    w[j % classes, j] = 1.0
    lin.weight.data.copy_(w)
    lin.weight.requires_grad_(False)
    return lin


def esser2015_network(layout: str = "single") -> SpikingNetwork:
    """An untrained stand-in for an Esser et al. (2015) MNIST network on TrueNorth.

    ``"single"`` (512 neurons, the layout of the paper's high-efficiency network as
    pytruenorth reimplements it): a 16 x 16 convolution at stride 12 gives four windows of the
    28 x 28 image, 64 IF neurons each (four cores of 256 axons), then 256 IF output neurons
    (one core) voting 25 per class into a fixed readout. ``"member"`` (3,840 neurons, the size
    Renner et al. 2024 give for each network of the 64-ensemble; this layout is snnedge's):
    16 x 16 windows at stride 4 with 128 neurons each (2,048), then grouped 2 x 2 and 1 x 1
    convolutions that keep every neuron's fan-in at 256 axons (1,024, 512 and 256 neurons),
    the last 256 voting as above. Fixed weights, no bias: train with :func:`snnedge.fit`.

    >>> from neuromorphic_targets import map_network
    >>> m = map_network(esser2015_network("single"), "truenorth")
    >>> sum(r.neurons for r in m.per_layer[:-1]), m.cores   # the readout is the last row
    (512, 6)
    """
    check_choice(layout, ("single", "member"), param="layout", where="esser2015_network")
    if layout == "single":
        layers = [nn.Conv2d(1, 64, 16, stride=12), snnedge.IF(), nn.Flatten(),
                  nn.Linear(256, 256), snnedge.IF(), _votes()]
    else:
        layers = [nn.Conv2d(1, 128, 16, stride=4), snnedge.IF(),
                  nn.Conv2d(128, 256, 2, stride=2, groups=2), snnedge.IF(),
                  nn.Conv2d(256, 512, 2, groups=4), snnedge.IF(),
                  nn.Conv2d(512, 256, 1, groups=2), snnedge.IF(), nn.Flatten(), _votes()]
    return snnedge.sequential(*layers, input_shape=(1, 28, 28))


@dataclass(frozen=True)
class Reproduction:
    """snnedge's estimate of a :class:`PublishedPoint` from a simulated stand-in.

    Attributes
    ----------
    point:
        The published point.
    estimate:
        One copy under the ``throughput`` accounting at the point's input rate.
    throughput_j:
        ``copies`` x the estimate's total: the figure compared with the published one.
    single_j:
        The same copies under the ``single`` accounting: every chip they occupy
        (``ceil(copies x cores / cores per chip)``) for the latency, plus their dynamic energy.
    ratio:
        ``throughput_j / point.energy_j``; within [0.5, 2] is the goal.
    accuracy, spikes, synaptic_events, cores:
        The stand-in's simulated accuracy, per-inference activity of one copy, and cores.
    """

    point: PublishedPoint
    estimate: EnergyEstimate
    throughput_j: float
    single_j: float
    ratio: float
    accuracy: float | None
    spikes: float
    synaptic_events: float
    cores: int

    @property
    def within_2x(self) -> bool:
        return 0.5 <= self.ratio <= 2.0


def reproduce(point: PublishedPoint | str, result: SimulationResult,
              mapping: Mapping) -> Reproduction:
    """Price ``result`` (the stand-in simulated at the point's ticks per inference) on
    ``mapping`` under both accountings, for ``point.copies`` copies."""
    point = POINTS[point] if isinstance(point, str) else point
    rate = point.inputs_per_s.value
    busy = estimate_energy(result, mapping, accounting="throughput", input_rate_hz=rate)
    one = estimate_energy(result, mapping, accounting="single")
    if busy.total_j is None or one.total_j is None:
        raise ValueError(f"reproduce {point.name!r}: the estimate misses {busy.missing}; the "
                         f"profile {mapping.profile.name!r} cannot price this point.")
    copies = point.copies
    cpc = mapping.profile.value("cores_per_chip")
    chips = math.ceil(copies * mapping.cores / cpc)
    single = one.static_j / mapping.chips * chips + copies * one.dynamic_j
    total = copies * busy.total_j
    per = result.per_inference()
    labels = result.labels is not None
    return Reproduction(point, busy, total, single, total / point.energy_j.value,
                        result.accuracy() if labels else None, per["spikes"],
                        per["synaptic_events"], mapping.cores)
