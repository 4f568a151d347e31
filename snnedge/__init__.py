"""snnedge: ANN-to-SNN conversion, fast spiking simulation, and neuromorphic cost estimates.

See DESIGN in the README for the public contract. The main entry points::

    snnedge.sequential(...)     # build a SpikingNetwork from torch modules and neurons
    snnedge.simulate(snn, x, timesteps=32)   # -> SimulationResult
    snnedge.IF, snnedge.LIF     # neuron layers
"""
from importlib.metadata import PackageNotFoundError, version

from .chip_neuron import ChipNeuron
from .delay import Delay
from .encoders import ENCODERS
from .event_streams import events_to_frames, moving_digit_events
from .layers import Add, Concat, Narrow, Scale, SumPool2d, TemporalModule
from .network import Node, SpikingNetwork, previous, sequential
from .neuron_models import NEURON_MODELS, LI, CubaLIF, Integrator, Threshold
from .neurobench_metrics import NeuroBenchMetrics, neurobench_metrics
from .ops import LayerOps, OpCount, count_ops
from .neurons import IF, LIF, SpikingNeuron, if_step, lif_step
from .results import SimulationResult
from .simulate import ENGINES, simulate
from .io import load_network, save_network
from .interop import from_nir, to_nir  # registers engine="brian2"; brian2 and nir load lazily
from .surrogate import SURROGATES, get_surrogate
from .training import History, fit, load_checkpoint, save_checkpoint

try:
    __version__ = version("snnedge")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = [
    "IF", "LIF", "SpikingNeuron", "ChipNeuron", "if_step", "lif_step", "Add", "Concat", "Narrow",
    "Scale", "SumPool2d", "TemporalModule", "Node", "SpikingNetwork", "sequential", "simulate",
    "SimulationResult",
    "ENGINES", "ENCODERS", "SURROGATES", "get_surrogate", "count_ops", "OpCount", "LayerOps",
    "NeuroBenchMetrics", "neurobench_metrics", "to_nir", "from_nir", "save_network", "load_network",
    "fit", "History", "save_checkpoint", "load_checkpoint",
    "CubaLIF", "LI", "Integrator", "Threshold", "Delay", "NEURON_MODELS", "previous",
    "events_to_frames", "moving_digit_events",
    "__version__",
]
