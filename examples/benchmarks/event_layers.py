"""Per-layer crossover of the event and dense engines: one weighted layer, random spikes.

For each layer shape and input activity (fraction of non-zero inputs), times the two
engines' paths on the same binary input of ``N`` rows (a block of ``T`` steps at batch 1 is
``N = T``), channels-last as the engines pass it: the dense engine's
``snnedge.dense_paths.apply_synaptic`` (oneDNN's convolution) against the event engine's
``snnedge.events.event_apply``, and prints dense time / event time (> 1: event wins).
``engine="auto"``'s per-layer break-even (``snnedge.events.event_density_limit``) is fitted
to this table.

``--clock cpu`` times with the process's CPU time (median of interleaved repeats), what a
shared, loaded machine allows; ``wall`` (default) uses ``torch.utils.benchmark``.
``--isa`` runs the compiled kernels with one instruction set (``generic``, ``avx2``,
``avx512``; default: the best the CPU has). ``--conv-scatter BYTES`` sets the widest output
row (bytes) that takes the convolution's scatter form (0: the gather form only, the kernel
before 2026-12-07; default: the kernel's own limit, 128).

Usage: python examples/benchmarks/event_layers.py [--threads 1] [--rows 32 320] [--clock cpu]
       [--isa avx2] [--conv-scatter 0] [--activities 0.02 0.1] [--layers "Conv2d 16->16, 28x28" ...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from snnedge.dense_paths import apply_synaptic  # noqa: E402
from snnedge.events import event_apply, native_kernel, set_native_isa  # noqa: E402

ACTIVITIES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
LAYERS = {
    "Conv2d 16->8, 28x28": (lambda: nn.Conv2d(16, 8, 3, padding=1), (16, 28, 28)),
    "Conv2d 40->8, 28x28": (lambda: nn.Conv2d(40, 8, 3, padding=1, bias=False), (40, 28, 28)),
    "Conv2d 16->16, 28x28": (lambda: nn.Conv2d(16, 16, 3, padding=1), (16, 28, 28)),
    "Conv2d 16->32, 28x28": (lambda: nn.Conv2d(16, 32, 3, padding=1), (16, 28, 28)),
    "Conv2d 16->32 5x5, 14x14": (lambda: nn.Conv2d(16, 32, 5, padding=2), (16, 14, 14)),
    "Conv2d 32->32, 28x28": (lambda: nn.Conv2d(32, 32, 3, padding=1), (32, 28, 28)),
    "Conv2d 32->64, 14x14": (lambda: nn.Conv2d(32, 64, 3, padding=1), (32, 14, 14)),
    "Conv2d 64->64 1x1, 14x14": (lambda: nn.Conv2d(64, 64, 1), (64, 14, 14)),
    "Conv2d 64->128, 7x7": (lambda: nn.Conv2d(64, 128, 3, padding=1), (64, 7, 7)),
    "Conv2d 128->128, 14x14": (lambda: nn.Conv2d(128, 128, 3, padding=1), (128, 14, 14)),
    "Conv2d 128->256, 7x7": (lambda: nn.Conv2d(128, 256, 3, padding=1), (128, 7, 7)),
    "Conv2d 128->32, 4x4": (lambda: nn.Conv2d(128, 32, 3, padding=1), (128, 4, 4)),
    "Linear 1152->128": (lambda: nn.Linear(1152, 128), (1152,)),
    "Linear 3136->256": (lambda: nn.Linear(3136, 256), (3136,)),
    "Linear 256->10": (lambda: nn.Linear(256, 10), (256,)),
}


def median_ms(fn) -> float:
    return Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=0.2).median * 1e3


def cpu_ratio(dense, event, repeats: int = 7) -> float:
    """Median over interleaved repeats of dense CPU time / event CPU time (each repeat runs
    each side for at least 20 ms of CPU time)."""
    def once(fn) -> float:
        n, spent = 0, 0.0
        start = time.process_time()
        while spent < 0.02:
            fn()
            n += 1
            spent = time.process_time() - start
        return spent / n
    dense(), event()
    return statistics.median(once(dense) / once(event) for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, nargs="+", default=[32, 320])
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--isa", default=None)
    ap.add_argument("--conv-scatter", type=int, default=None,
                    help="widest output row in bytes for the convolution's scatter form (0: never)")
    ap.add_argument("--activities", type=float, nargs="+", default=list(ACTIVITIES))
    ap.add_argument("--layers", nargs="*", default=None, help="names of LAYERS (default: all)")
    args = ap.parse_args()
    unknown = set(args.layers or ()) - set(LAYERS)
    if unknown:
        ap.error(f"unknown layers {sorted(unknown)}; choose from {sorted(LAYERS)}")
    torch.set_num_threads(args.threads)
    if args.isa:
        set_native_isa(args.isa)
    torch.manual_seed(0)
    kernel = native_kernel()
    scatter = ""
    if kernel is not None:
        default = kernel.set_conv_scatter(0)  # (returns the limit it replaces)
        limit = default if args.conv_scatter is None else args.conv_scatter
        kernel.set_conv_scatter(limit)
        scatter = f", scatter form for rows of <= {limit} bytes"
    print(f"dense time / event time ({args.clock} clock), {args.threads} thread(s), torch "
          f"{torch.__version__}, event kernel: {'native ' + kernel.isa() if kernel else 'scipy'}"
          f"{scatter}\n")
    print("| layer | N | " + " | ".join(f"{a:.1%}" for a in args.activities) + " |")
    print("|---|---|" + "---|" * len(args.activities))
    with torch.no_grad():
        for name, (build, shape) in LAYERS.items():
            if args.layers and name not in args.layers:
                continue
            layer = build()
            for n in args.rows:
                cells = []
                for activity in args.activities:
                    x = (torch.rand(n, *shape) < activity).float()
                    if x.dim() == 4:
                        x = x.contiguous(memory_format=torch.channels_last)
                    assert torch.allclose(event_apply(layer, x), layer(x), atol=1e-4)
                    if args.clock == "cpu":
                        ratio = cpu_ratio(lambda: apply_synaptic(layer, x), lambda: event_apply(layer, x))
                    else:
                        ratio = median_ms(lambda: apply_synaptic(layer, x)) / median_ms(lambda: event_apply(layer, x))
                    cells.append(f"{ratio:.2f}")
                print(f"| {name} | {n} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
