"""Break-even density of narrow convolutions (under 32 input channels) on this CPU, against
the fitted rule: each layer timed on random spikes over the calibration's grid of densities
(dense time / event time per point, medians of interleaved repeats), at 32 and 400 rows.

Usage: python examples/benchmarks/narrow_break_even.py [--threads 2] [--repeats 3]
(RESULTS.md, issue 16 section 17: why engine "auto" times each narrow layer on its own shape.)
"""
import argparse
import math
import statistics

import torch
from torch import nn

from snnedge import path_calibration as pc
from snnedge.events import event_density_limit
from speed_nets import machine

# (in, out, kernel, stride, input side)
LAYERS = [(4, 16, 3, 1, 28), (8, 8, 3, 1, 14), (8, 16, 3, 1, 14), (8, 16, 3, 1, 28), (16, 16, 3, 1, 28),
          (16, 16, 3, 1, 7), (16, 32, 3, 1, 14), (24, 32, 3, 1, 14), (8, 16, 3, 2, 14), (16, 32, 3, 2, 14),
          (16, 32, 3, 2, 7), (8, 16, 5, 1, 10), (8, 16, 5, 1, 14), (8, 16, 5, 1, 28), (8, 32, 5, 1, 14),
          (12, 24, 5, 1, 14), (16, 16, 5, 1, 14), (16, 32, 5, 1, 14), (3, 32, 5, 1, 28), (1, 16, 3, 1, 28)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, nargs="+", default=list(pc.ROWS))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"{machine()}, {args.threads} thread(s), rows {args.rows}, medians of {args.repeats}\n")
    print("| layer | input | rule | break-even | break-even / rule | dense / event per density, per row count |")
    print("|---|---|---|---|---|---|")
    with torch.no_grad():
        for cin, cout, k, s, side in LAYERS:
            layer = nn.Conv2d(cin, cout, k, s, k // 2)
            curves = [[pc.time_ratio(layer, (n, cin, side, side), d, gen, args.repeats) for d in pc.DENSITIES]
                      for n in args.rows]
            evens = [pc.break_even(pc.DENSITIES, c) for c in curves]
            even = math.exp(statistics.fmean(map(math.log, evens)))
            rule = event_density_limit(layer)
            bound = ">= " if any(e >= pc.DENSITIES[-1] for e in evens) else ""
            name = f"Conv2d {cin}->{cout} {k}x{k}" + (f" stride {s}" if s > 1 else "")
            print(f"| {name} | {side}x{side} | {rule:.2%} | {bound}{even:.1%} | {even / rule:.1f} | "
                  + " / ".join(" ".join(f"{r:.2f}" for r in c) for c in curves) + " |", flush=True)


if __name__ == "__main__":
    main()
