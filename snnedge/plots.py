"""Plots of simulations for notebooks and reports: each function returns a matplotlib
``Figure``.

The figures are made with ``matplotlib.figure.Figure`` directly, not ``pyplot``: no global
state, no backend needed (they render with Agg when saved, ``fig.savefig("a.png")``), nothing
shown by surprise. In a notebook, end a cell with the figure to display it. Every function
also takes ``ax=`` to draw into an existing axes (and then returns that axes' figure).

* :func:`plot_spike_raster`, :func:`plot_accuracy_vs_timesteps`, :func:`plot_firing_rates`:
  from spikes and :class:`~snnedge.SimulationResult` s.

Plots of what ``neuromorphic_targets`` computes (energy comparisons, core occupancy of
mappings, the gap figures of Xu et al. 2018) live next to it, in
:mod:`neuromorphic_targets.plots`, and draw with :func:`figure_and_axes` as these do.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from .results import SimulationResult

__all__ = ["plot_spike_raster", "plot_accuracy_vs_timesteps", "plot_firing_rates",
           "figure_and_axes"]

NEURO_COLOR = "tab:blue"  # spiking networks, here and in neuromorphic_targets.plots


def figure_and_axes(ax=None, figsize: tuple[float, float] = (6.4, 3.8)):
    """``(figure, axes)`` to draw into: ``ax`` and its figure, or a new ``Figure`` of
    ``figsize`` inches (constrained layout) with one axes when ``ax`` is ``None``."""
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    return ax.figure, ax


def plot_spike_raster(spikes, ax=None, max_neurons: int | None = None,
                      title: str = "Spike raster"):
    """Dots at (step, neuron) for every spike of one sample.

    ``spikes``: a tensor or array ``(T, ...)`` (time first; the neurons' shape is flattened,
    so pass ``spikes[:, b]`` for sample ``b`` of a batch). A count above 1 marks one dot.
    ``max_neurons`` keeps the first neurons only.
    """
    s = torch.as_tensor(spikes).detach().cpu()
    if s.dim() < 2:
        raise ValueError(f"plot_spike_raster expects spikes of shape (T, neurons...). Got shape "
                         f"{tuple(s.shape)}; for one neuron pass spikes[:, None].")
    s = s.reshape(s.shape[0], -1)
    if max_neurons is not None:
        s = s[:, :max_neurons]
    t, n = torch.nonzero(s > 0, as_tuple=True)
    fig, ax = figure_and_axes(ax)
    few = s.shape[1] <= 200  # ticks for a few neurons, pixels for thousands
    ax.scatter(t.numpy() + 1, n.numpy(), marker="|" if few else "s", s=30 if few else 0.5,
               linewidths=1 if few else 0, color="k")
    ax.set_xlim(0.5, s.shape[0] + 0.5)
    ax.set_ylim(-0.5, s.shape[1] - 0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel("neuron")
    ax.set_title(title)
    return fig


def _accuracy_points(source, y) -> tuple[np.ndarray, np.ndarray, bool]:
    """(steps, accuracies in [0, 1], is a full curve)."""
    if isinstance(source, SimulationResult):
        curve = source.accuracy_curve(y).numpy()
        return np.arange(1, len(curve) + 1), curve, True
    if isinstance(source, Mapping):
        items = sorted(source.items())
        return np.array([k for k, _ in items]), np.array([float(v) for _, v in items]), False
    if isinstance(source, Sequence) and source and all(isinstance(r, SimulationResult) for r in source):
        res = sorted(source, key=lambda r: r.timesteps)
        return np.array([r.timesteps for r in res]), np.array([r.accuracy(y) for r in res]), False
    curve = np.asarray(torch.as_tensor(source, dtype=torch.float64).reshape(-1))
    if curve.size == 0:
        raise ValueError("plot_accuracy_vs_timesteps got an empty accuracy curve.")
    return np.arange(1, len(curve) + 1), curve, True


def plot_accuracy_vs_timesteps(source, y=None, ann_accuracy: float | None = None, ax=None,
                               label: str = "SNN", title: str = "Accuracy vs time steps"):
    """Accuracy (%) against the number of time steps ``T``.

    ``source``: one :class:`~snnedge.SimulationResult` (its accuracy after every step), a
    list of results at different ``T``, a ``{T: accuracy}`` dict, or a curve (accuracy after
    steps 1..T, in [0, 1]). ``ann_accuracy`` draws the ANN's accuracy as a dashed line.
    """
    steps, acc, curve = _accuracy_points(source, y)
    fig, ax = figure_and_axes(ax)
    ax.plot(steps, 100 * acc, marker=None if curve else "o", label=label)
    if ann_accuracy is not None:
        ax.axhline(100 * ann_accuracy, color="k", ls="--", lw=1, label="ANN")
    if steps.max() / max(steps.min(), 1) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend()
    return fig


def plot_firing_rates(result: SimulationResult, ax=None, title: str = "Firing rate per layer"):
    """Bars of each neuron layer's mean spikes per neuron per step."""
    if not isinstance(result, SimulationResult):
        raise TypeError(f"plot_firing_rates expects a snnedge.SimulationResult. Got "
                        f"{type(result).__name__}.")
    rates = result.firing_rates()
    fig, ax = figure_and_axes(ax)
    ax.bar(list(rates), list(rates.values()), color=NEURO_COLOR)
    ax.set_xlabel("layer")
    ax.set_ylabel("spikes / neuron / step")
    ax.set_title(title)
    return fig
