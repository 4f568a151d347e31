"""Plots of comparisons, mappings and the edge-inference gap: each function returns a
matplotlib ``Figure`` (made without ``pyplot``, as :mod:`snnedge.plots` explains; every
function also takes ``ax=`` to draw into an existing axes).

* :func:`plot_energy_comparison`, :func:`plot_accuracy_vs_energy`: from a
  :class:`~neuromorphic_targets.Comparison` (anything with its ``rows``);
  ``Comparison.plot()`` and ``Comparison.plot_accuracy_vs_energy()`` call them;
* :func:`plot_core_occupancy`: from :class:`~neuromorphic_targets.Mapping` s (their
  ``per_layer`` rows);
* :func:`plot_ops_vs_performance_density`, :func:`plot_memory_vs_energy_efficiency`: the two
  gap figures of Xu et al., "Scaling for edge inference of deep neural networks", Nature
  Electronics 1:216 (2018), doi:10.1038/s41928-018-0059-3 (Figs. 3 and 4), for any models
  (operation counts from :func:`snnedge.count_ops`) and devices (baseline profiles).

Plots of simulation results (spike rasters, accuracy against time steps, firing rates) are
in :mod:`snnedge.plots`.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from snnedge.errors import check_choice
from snnedge.plots import NEURO_COLOR, figure_and_axes

__all__ = ["plot_energy_comparison", "plot_accuracy_vs_energy", "plot_core_occupancy",
           "plot_ops_vs_performance_density", "plot_memory_vs_energy_efficiency",
           "accounting_title"]

BASE_COLOR, ISO_COLOR = "tab:orange", "0.65"  # conventional baselines; iso-energy lines


def _rows(comparison) -> list:
    rows = getattr(comparison, "rows", None)
    if rows is None:
        raise TypeError(f"Expected a neuromorphic_targets Comparison (with .rows). Got "
                        f"{type(comparison).__name__}; make one with compare(result, ...).")
    return list(rows)


def _label(row) -> str:
    """``name`` and ``T`` for targets (their accounting is in the title); ``name`` and the
    row's accounting for baselines, each of which counts in its own way."""
    if row.timesteps is not None:
        return f"{row.name}\nT={row.timesteps}"
    how = getattr(row, "accounting", None)
    return row.name if how is None else f"{row.name}\n{how}"


def accounting_title(comparison) -> str:
    """The right-hand title of a comparison's plots: the target rows' accounting, and that
    ``>=`` marks lower bounds."""
    how = getattr(comparison, "accounting", None)
    return ("" if how is None else f"targets: {how} accounting; ") + ">= lower bound"


def plot_energy_comparison(comparison, ax=None, title: str = "Energy per inference"):
    """Log-scale bars of energy per inference, one per comparison row.

    Neuromorphic rows (SNN) and baselines (ANN) have their own colours; infeasible mappings
    are hatched and labelled; lower bounds (an energy term unknown) get ``>=`` on top; rows
    whose energy is unknown get no bar and the word "unknown". The target rows' accounting
    (``single`` or ``throughput``) is in the title on the right, each baseline's under its
    name.
    """
    rows = _rows(comparison)
    fig, ax = figure_and_axes(ax, figsize=(max(6.4, 0.8 * len(rows) + 2), 4.2))
    known = [(i, r) for i, r in enumerate(rows) if r.energy_j is not None and r.energy_j > 0]
    bars = ax.bar([i for i, _ in known], [r.energy_j for _, r in known],
                  color=[NEURO_COLOR if r.kind == "neuromorphic" else BASE_COLOR for _, r in known],
                  edgecolor="k", linewidth=0.5)
    ax.set_yscale("log")
    for bar, (i, r) in zip(bars, known):
        if r.feasible is False:
            bar.set_hatch("//")
            bar.set_alpha(0.6)
        text = ("" if r.energy_complete else ">= ") + ("infeasible" if r.feasible is False else "")
        if text:
            ax.annotate(text.strip(), (i, r.energy_j), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)
    for i, r in enumerate(rows):
        if r.energy_j is None:
            ax.annotate("unknown" + (" (infeasible)" if r.feasible is False else ""), (i, 0),
                        xycoords=("data", "axes fraction"), xytext=(0, 4),
                        textcoords="offset points", ha="center", va="bottom", rotation=90,
                        fontsize=7)
    ax.set_xticks(range(len(rows)), [_label(r) for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("energy per inference (J)")
    ax.set_title(title)
    ax.set_title(accounting_title(comparison), loc="right", fontsize=7)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=NEURO_COLOR, label="SNN on neuromorphic target"),
                       Patch(color=BASE_COLOR, label="ANN on conventional baseline"),
                       Patch(facecolor="white", edgecolor="k", hatch="//", label="infeasible")],
              fontsize=7)
    return fig


def plot_accuracy_vs_energy(comparison, ax=None, title: str = "Accuracy vs energy per inference"):
    """Accuracy against energy per inference: one line per target across its ``T`` values
    (labelled), one square per baseline (the ANN's accuracy). Open markers: lower bounds. The
    targets' accounting is in the title on the right. Rows with an on-chip accuracy
    (``compare(..., hardware_data=...)``) add a dashed line of diamonds beside the float
    accuracy, labelled "<target> on chip"."""
    rows = [r for r in _rows(comparison) if r.energy_j is not None and r.accuracy is not None]
    fig, ax = figure_and_axes(ax)
    names = list(dict.fromkeys(r.name for r in rows if r.kind == "neuromorphic"))
    for name in names:
        pts = sorted((r for r in rows if r.name == name and r.kind == "neuromorphic"),
                     key=lambda r: r.timesteps)
        line, = ax.plot([r.energy_j for r in pts], [100 * r.accuracy for r in pts], marker="o",
                        label=name)
        for r in pts:
            if not r.energy_complete:
                ax.plot(r.energy_j, 100 * r.accuracy, marker="o", mfc="white",
                        color=line.get_color())
            ax.annotate(f"T={r.timesteps}", (r.energy_j, 100 * r.accuracy), xytext=(3, 3),
                        textcoords="offset points", fontsize=7)
        chip = [r for r in pts if r.hardware_accuracy is not None]
        if chip:  # the same rows in the chip's own arithmetic (compare's hardware_data)
            ax.plot([r.energy_j for r in chip], [100 * r.hardware_accuracy for r in chip],
                    marker="D", ls="--", color=line.get_color(), label=f"{name} on chip")
    for r in rows:
        if r.kind != "neuromorphic":
            ax.plot(r.energy_j, 100 * r.accuracy, marker="s", ls="none",
                    mfc="white" if not r.energy_complete else None, label=f"{r.name} (ANN)")
    if rows:
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no row has both an accuracy and an energy\n(pass labels or "
                "accuracy_ann to compare)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("energy per inference (J)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.set_title(accounting_title(comparison), loc="right", fontsize=7)
    return fig


def plot_core_occupancy(mappings, ax=None, title: str = "Core occupancy per layer"):
    """Grouped bars of the cores each layer occupies (splitter cores included), per target.

    ``mappings``: one ``neuromorphic_targets`` Mapping or a ``{name: Mapping}`` dict.
    """
    if not isinstance(mappings, Mapping):
        mappings = {getattr(getattr(mappings, "profile", None), "name", "mapping"): mappings}
    for name, m in mappings.items():
        if not hasattr(m, "per_layer"):
            raise TypeError(f"plot_core_occupancy expects neuromorphic_targets Mappings (with "
                            f"per_layer rows). Got {type(m).__name__} for {name!r}.")
    layers = list(dict.fromkeys(r.layer for m in mappings.values() for r in m.per_layer))
    width = 0.8 / max(len(mappings), 1)
    fig, ax = figure_and_axes(ax, figsize=(max(6.4, 0.9 * len(layers) + 2), 3.8))
    for k, (name, m) in enumerate(mappings.items()):
        cores = {r.layer: r.cores + r.splitter_cores for r in m.per_layer}
        xs = [j + k * width for j, layer in enumerate(layers) if layer in cores]
        ax.bar(xs, [cores[layer] for layer in layers if layer in cores], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))], layers, rotation=30,
                  ha="right")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("cores")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def _model_values(models, what: str) -> dict[str, float]:
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict {name: snnedge.OpCount or number}, e.g. "
                        "{'vgg': snnedge.count_ops(vgg, (3, 32, 32))}.")
    out = {}
    for name, v in models.items():
        if hasattr(v, "macs") and hasattr(v, "batch_size"):
            v = v.macs / v.batch_size if what == "macs" else v.memory_bytes / v.batch_size
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"models[{name!r}] must be an OpCount or a positive number. Got {v!r}.")
        out[name] = float(v)
    return out


def _device_values(devices, getter) -> tuple[dict[str, float], list[str]]:
    if isinstance(devices, Mapping):
        items = [(k, v) for k, v in devices.items()]
    else:
        items = [(getattr(d, "name", str(d)), getter(d)) for d in devices]
    known = {k: float(v) for k, v in items if v is not None and v > 0}
    return known, [k for k, v in items if v is None or not v > 0]


def _gap_plot(ax, models: dict, devices: dict, unknown: list, per_x: bool, iso_label) -> None:
    """Vertical device lines, horizontal model lines, points at their crossings, and dotted
    iso-lines at whole decades of ``v = y / x`` (``per_x``) or ``v = x / y``."""
    def iso(x, y):
        return y / x if per_x else x / y

    def solve(x, v):
        return v * x if per_x else x / v

    xs, ys = list(devices.values()), list(models.values())
    lo_x, hi_x = min(xs) / 10, max(xs) * 10
    lo_y, hi_y = min(ys) / 10, max(ys) * 10
    groups: list[tuple[float, list[str]]] = []  # devices within 5 % share one line and label
    for name, x in sorted(devices.items(), key=lambda kv: kv[1]):
        if groups and x <= groups[-1][0] * 1.05:
            groups[-1][1].append(name)
        else:
            groups.append((x, [name]))
    for k, (x, names) in enumerate(groups):
        ax.axvline(x, color=f"C{k % 10}", lw=1, alpha=0.7)
        ax.annotate(", ".join(names), (x, 1), xycoords=("data", "axes fraction"), xytext=(2, -4),
                    textcoords="offset points", rotation=90, va="top", fontsize=7)
    for name, y in models.items():
        ax.axhline(y, color="0.3", lw=0.8, ls="--")
        ax.annotate(name, (0, y), xycoords=("axes fraction", "data"), xytext=(3, 2),
                    textcoords="offset points", fontsize=7)
    px = [x for x in xs for _ in ys]
    py = [y for _ in xs for y in ys]
    ax.scatter(px, py, color="k", s=14, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo_x, hi_x)
    ax.set_ylim(lo_y, hi_y)
    values = [iso(x, y) for x, y in [(lo_x, lo_y), (lo_x, hi_y), (hi_x, lo_y), (hi_x, hi_y)]]
    grid = np.geomspace(lo_x, hi_x, 50)
    for e in range(math.floor(math.log10(min(values))), math.ceil(math.log10(max(values))) + 1):
        v = 10.0 ** e
        line_y = np.array([solve(x, v) for x in grid])
        ax.plot(grid, line_y, ls=":", color=ISO_COLOR, lw=0.8, gid="iso")
        inside = (line_y > lo_y) & (line_y < hi_y)
        if inside.any():
            j = np.flatnonzero(inside)[len(np.flatnonzero(inside)) // 2]
            ax.annotate(iso_label(v), (grid[j], line_y[j]), fontsize=6, color="0.4")
    if unknown:
        text = textwrap.fill("not shown (figure unknown): " + ", ".join(unknown), 60)
        ax.text(0.99, 0.01, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=6,
                color="0.3")


def _si(v: float, unit: str) -> str:
    for p, f in (("", 1), ("m", 1e-3), ("u", 1e-6), ("n", 1e-9), ("p", 1e-12), ("f", 1e-15)):
        if v >= f * 0.999:
            return f"{v / f:g} {p}{unit}"
    return f"{v:g} {unit}"


def plot_ops_vs_performance_density(models, devices, per: str = "W", ax=None,
                                    title: str = "Required operations vs performance density"):
    """Xu et al. (2018), Fig. 3 for any models and devices: MACs per inference (y) against the
    device's performance density (x), both log scale.

    ``models``: ``{name: OpCount or MACs per inference}``. ``devices``: baseline profiles (with
    ``performance_density(per)``) or ``{name: MAC/s per W (or per mm^2)}``. ``per="W"``: the x
    axis is MAC/s per watt, i.e. MACs per joule, and the dotted lines are joules per inference
    (``MACs / density``); ``per="mm^2"``: MAC/s per mm^2 of die, dotted lines inferences per
    second per mm^2. Devices whose figure is unknown are listed, not drawn.
    """
    check_choice(per, ("W", "mm^2"), param="per", where="plot_ops_vs_performance_density")
    macs = _model_values(models, "macs")
    dens, unknown = _device_values(devices, lambda d: d.performance_density(per))
    fig, ax = figure_and_axes(ax)
    if dens:
        if per == "W":
            _gap_plot(ax, macs, dens, unknown, True, lambda v: _si(v, "J/inf"))
        else:
            _gap_plot(ax, macs, dens, unknown, False, lambda v: f"{v:g} inf/s/mm²")
    else:
        ax.text(0.5, 0.5, f"no device with a known performance density per {per}: "
                + ", ".join(unknown), ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xlabel("performance density (MAC/s per W = MAC/J)" if per == "W"
                  else "performance density (MAC/s per mm²)")
    ax.set_ylabel("MACs per inference")
    ax.set_title(title)
    return fig


def plot_memory_vs_energy_efficiency(models, devices, level: str | Sequence[str] = "dram",
                                     ax=None,
                                     title: str = "Memory accesses vs memory energy efficiency"):
    """Xu et al. (2018), Fig. 4 for any models and devices: memory traffic per inference (y,
    bytes) against the memory's energy efficiency (x, bytes per joule at ``level``), both log
    scale; dotted lines are joules per inference spent on memory (``traffic / efficiency``).

    ``models``: ``{name: OpCount or bytes per inference}`` (an OpCount's ``memory_bytes``:
    weights read once, each layer's input read and output written). ``devices``: baseline
    profiles (with ``memory_energy_efficiency(level)``) or ``{name: bytes per J}``. Several
    levels (``level=("sram", "dram")``) draw one line per device and level ("cpu DRAM").
    """
    levels = (level,) if isinstance(level, str) else tuple(level)
    for lv in levels:
        check_choice(lv, ("rf", "sram", "dram"), param="level",
                     where="plot_memory_vs_energy_efficiency")
    traffic = _model_values(models, "bytes")
    if isinstance(devices, Mapping) or len(levels) == 1:
        eff, unknown = _device_values(devices, lambda d: d.memory_energy_efficiency(levels[0]))
    else:
        eff, unknown = _device_values(
            {f"{getattr(d, 'name', d)} {lv.upper()}": d.memory_energy_efficiency(lv)
             for d in devices for lv in levels}, None)
    fig, ax = figure_and_axes(ax)
    names = "/".join(lv.upper() for lv in levels)
    if eff:
        _gap_plot(ax, traffic, eff, unknown, True, lambda v: _si(v, "J/inf"))
    else:
        ax.text(0.5, 0.5, f"no device with a known {names} energy per access: "
                + ", ".join(unknown), ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xlabel(f"memory energy efficiency ({names}, bytes per J)")
    ax.set_ylabel("memory traffic per inference (bytes)")
    ax.set_title(title)
    return fig

