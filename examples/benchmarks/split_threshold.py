"""The event layers' compiled kernel split over PyTorch's OpenMP threads, or not, by work:
every event layer of a one-digit call (thresholds raised to <= 2 % activity, T = 32, so 32
rows), timed on its own recorded input at several values of ``OPENMP_MIN_WORK`` (the least
work per thread at which ``snnedge.events._native_run`` splits a call).

Usage: PYTHONPATH=. python examples/benchmarks/split_threshold.py [--nets zoo:tv_resnet18 ...]
[--thresholds 1000000 131072 65536 32768 1] [--threads 2] [--repeats 5]
(RESULTS.md, issue 16 section 18: why OPENMP_MIN_WORK is 32 k.)
"""
import argparse
import collections
import statistics
import time

import torch

import snnedge
import snnedge.events as ev
from converters import convert
from snnedge.datasets import load_mnist_digits, load_mnist_test
from snnedge.kernel_threads import kernel_threads
from speed_nets import machine, networks
from speed_zoo import raised_thresholds

BUCKETS = [(0, 32_768, "< 32 k"), (32_768, 65_536, "32-64 k"), (65_536, 131_072, "64-128 k"),
           (131_072, 1_000_000, "128 k - 1 M"), (1_000_000, float("inf"), ">= 1 M")]


def recorded_layers(snn, x):
    """(module, input) of every event layer of ``simulate(snn, x, engine="event")``."""
    seen, conv, linear = [], ev.event_conv2d, ev.event_linear
    ev.event_conv2d = lambda m, x, backend=None: seen.append((m, x.clone())) or conv(m, x, backend)
    ev.event_linear = lambda m, x, backend=None: seen.append((m, x.clone())) or linear(m, x, backend)
    try:
        snnedge.simulate(snn, x, timesteps=32, engine="event", progress=False)
    finally:
        ev.event_conv2d, ev.event_linear = conv, linear
    return seen


def work_of(module, x):
    """What ``_native_run`` counts: input values plus output values times taps."""
    if isinstance(module, torch.nn.Linear):
        return x.numel() + x.shape[0] * module.out_features
    oh, ow = ev._conv_geometry(module, x.shape[2], x.shape[3])[:2]
    return x.numel() + x.shape[0] * module.out_channels * oh * ow * module.kernel_size[0] * module.kernel_size[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["zoo:tv_resnet18", "zoo:tv_googlenet", "zoo:tv_densenet121",
                                                  "vgg_wide", "zoo:tv_alexnet"])
    ap.add_argument("--thresholds", type=int, nargs="+", default=[1_000_000, 131_072, 65_536, 32_768, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x_train, _ = load_mnist_digits()
    x_test, _ = load_mnist_test()
    base, saved = args.thresholds[0], ev.OPENMP_MIN_WORK
    totals, ratios = collections.defaultdict(dict), collections.defaultdict(list)
    with torch.no_grad():
        for net in networks(args.nets):
            snn = convert(net.build(), calibration=net.inputs(x_train[:500]))
            sparse, _ = raised_thresholds(snn, net.inputs(x_test[100:102]), 32)
            for module, x in recorded_layers(sparse, net.inputs(x_test[100:101])):
                run = ev.event_linear if isinstance(module, torch.nn.Linear) else ev.event_conv2d
                times = {t: [] for t in args.thresholds}
                try:
                    for _ in range(args.repeats):  # interleaved
                        for t in args.thresholds:
                            ev.OPENMP_MIN_WORK = t
                            run(module, x)
                            start = time.perf_counter()
                            for _ in range(20):
                                run(module, x)
                            times[t].append((time.perf_counter() - start) / 20)
                finally:
                    ev.OPENMP_MIN_WORK = saved
                med = {t: statistics.median(v) for t, v in times.items()}
                for t in args.thresholds:
                    totals[net.name][t] = totals[net.name].get(t, 0.0) + med[t]
                work = work_of(module, x)
                label = next(name for lo, hi, name in BUCKETS if lo <= work < hi)
                ratios[label].append(med[base] / med[args.thresholds[-1]])
    print(f"{machine()}, {args.threads} thread(s), kernel threads: {kernel_threads()}, "
          f"medians of {args.repeats}\n")
    print("| network | " + " | ".join(f"{t:,}" for t in args.thresholds) + " |")
    print("|---|" + "---|" * len(args.thresholds))
    for name, row in totals.items():
        print(f"| {name} | " + " | ".join(f"{row[t] * 1e3:.2f} ms" for t in args.thresholds) + " |")
    print(f"\nEach layer's time at {base:,} / at {args.thresholds[-1]:,}, by work:\n")
    print("| work | layers | median | min | max |\n|---|---|---|---|---|")
    for _, _, label in BUCKETS:
        if ratios[label]:
            r = ratios[label]
            print(f"| {label} | {len(r)} | {statistics.median(r):.2f} | {min(r):.2f} | {max(r):.2f} |")


if __name__ == "__main__":
    main()
