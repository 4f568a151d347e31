"""The event path of a linear layer with its weight packed chunk by chunk, against whole weight
rows and against the dense layer (issue 16, RESULTS.md section 15).

For each layer shape, row count ``N`` (the steps x samples of one block) and input density,
times on the same random binary input: the dense layer (``module(x)``, oneDNN's GEMM), the
event kernel on whole weight rows (``snnedge.events.LINEAR_CHUNK_BYTES`` raised above the
layer's output width, the kernel before the packed form) and on the packed weight (at any row
count: ``LINEAR_PACKED_ROWS`` lowered to 1), each on a copy of the layer of its own (a layer
keeps one form of its weight at a time). Checks that both event forms give the same result
bit for bit, then prints rows / packed (> 1: the packed form is faster) and dense / packed
(> 1: the event path beats the dense layer). Sides interleaved, medians of ``--repeats``
wall-clock timings.

Usage: python examples/benchmarks/linear_packed.py [--threads 1] [--rows 1 8 32 400 3200]
       [--densities 0.02 0.072] [--repeats 5]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import snnedge.events as ev  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_nets import machine  # noqa: E402

# (in, out): AlexNet's classifier, VGG-style heads of the speed networks, an MLP layer, an
# ImageNet readout and a 10-class one (a single chunk: never packed)
SHAPES = ((9216, 4096), (4096, 4096), (3136, 256), (1152, 128), (512, 512), (2048, 1000), (4096, 10))


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, nargs="+", default=[1, 8, 32, 400, 3200])
    p.add_argument("--densities", type=float, nargs="+", default=[0.02, 0.072])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if ev.native_kernel() is None:
        sys.exit("The compiled kernels are not built (reinstall snnedge where a C compiler is "
                 "available) or SNNEDGE_NATIVE=0 is set.")
    torch.set_num_threads(args.threads)
    print(f"{machine()}; {args.threads} thread(s); medians of {args.repeats} interleaved "
          f"wall-clock timings\n")
    print("| layer | rows | density | rows / packed | dense / packed | dense / rows |")
    print("|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(0)
    packed_chunk, packed_rows = ev.LINEAR_CHUNK_BYTES, ev.LINEAR_PACKED_ROWS
    for f_in, f_out in SHAPES:
        torch.manual_seed(f_in + f_out)
        layer = nn.Linear(f_in, f_out)
        copies = {"rows": copy.deepcopy(layer), "packed": copy.deepcopy(layer)}
        for n in args.rows:
            for density in args.densities:
                x = (torch.rand(n, f_in, generator=gen) < density).float()

                def event(form):
                    ev.LINEAR_CHUNK_BYTES, ev.LINEAR_PACKED_ROWS = (
                        (packed_chunk, 1) if form == "packed" else (8 * f_out, packed_rows))
                    try:
                        return ev.event_linear(copies[form], x)
                    finally:
                        ev.LINEAR_CHUNK_BYTES, ev.LINEAR_PACKED_ROWS = packed_chunk, packed_rows
                with torch.no_grad():
                    if not torch.equal(event("rows"), event("packed")):
                        sys.exit(f"Linear {f_in}->{f_out}: the packed and the row kernels differ.")
                    sides = {"dense": lambda: layer(x), "rows": lambda: event("rows"),
                             "packed": lambda: event("packed")}
                    times = {k: [] for k in sides}
                    for _ in range(args.repeats):
                        for k, fn in sides.items():
                            times[k].append(seconds(fn))
                t = {k: statistics.median(v) for k, v in times.items()}
                one_chunk = f_out * 4 <= packed_chunk  # both sides ran whole rows
                vs_rows = "- (one chunk)" if one_chunk else f"{t['rows'] / t['packed']:.2f}"
                vs_dense = "-" if one_chunk else f"{t['dense'] / t['packed']:.2f}"
                print(f"| Linear {f_in}->{f_out} | {n} | {density:.1%} | {vs_rows} | {vs_dense} | "
                      f"{t['dense'] / t['rows']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
