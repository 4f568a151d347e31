"""Per-layer crossover of the event and dense engines: one weighted layer, random spikes.

For each layer shape and input activity (fraction of non-zero inputs), times the two
engines' paths on the same binary input of ``N`` rows (a block of ``T`` steps at batch 1 is
``N = T``), channels-last as the engines pass it: the dense engine's
``snnedge.events.apply_synaptic`` (oneDNN's convolution) against the event engine's
``snnedge.events.event_apply``, and prints dense time / event time (> 1: event wins).
``engine="auto"``'s per-layer break-even (``snnedge.events.event_density_limit``) is fitted
to this table.

Usage: python examples/benchmarks/event_layers.py [--threads 1] [--rows 32 320]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from snnedge.events import apply_synaptic, event_apply, native_kernel  # noqa: E402

ACTIVITIES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
LAYERS = {
    "Conv2d 32->64, 14x14": (lambda: nn.Conv2d(32, 64, 3, padding=1), (32, 14, 14)),
    "Conv2d 64->128, 7x7": (lambda: nn.Conv2d(64, 128, 3, padding=1), (64, 7, 7)),
    "Conv2d 128->128, 14x14": (lambda: nn.Conv2d(128, 128, 3, padding=1), (128, 14, 14)),
    "Conv2d 128->256, 7x7": (lambda: nn.Conv2d(128, 256, 3, padding=1), (128, 7, 7)),
    "Linear 1152->128": (lambda: nn.Linear(1152, 128), (1152,)),
}


def median_ms(fn) -> float:
    return Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=0.2).median * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, nargs="+", default=[32, 320])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kernel = native_kernel()
    print(f"dense time / event time, {args.threads} thread(s), torch {torch.__version__}, event "
          f"kernel: {'native ' + kernel.isa() if kernel else 'scipy'}\n")
    print("| layer | N | " + " | ".join(f"{a:.1%}" for a in ACTIVITIES) + " |")
    print("|---|---|" + "---|" * len(ACTIVITIES))
    with torch.no_grad():
        for name, (build, shape) in LAYERS.items():
            layer = build()
            for n in args.rows:
                cells = []
                for activity in ACTIVITIES:
                    x = (torch.rand(n, *shape) < activity).float()
                    if x.dim() == 4:
                        x = x.contiguous(memory_format=torch.channels_last)
                    assert torch.allclose(event_apply(layer, x), layer(x), atol=1e-4)
                    dense = median_ms(lambda: apply_synaptic(layer, x))
                    cells.append(f"{dense / median_ms(lambda: event_apply(layer, x)):.2f}")
                print(f"| {name} | {n} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
