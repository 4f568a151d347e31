"""Peak memory of `snnedge.simulate` at T=512 against T=32, same network and batch.

Each measurement runs in its own process and reports that process's peak resident set
(``ru_maxrss``), so the two runs do not share allocator state. The dense engine walks time in
blocks and carries only the membrane between blocks, so memory should not grow with T.

Usage: python examples/benchmarks/memory.py [--batch 100] [--steps 32 512]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, torch, torch.nn as nn, snnedge
torch.set_num_threads(2)
torch.manual_seed(0)
T, B = int(sys.argv[1]), int(sys.argv[2])
ann = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                    nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                    nn.Flatten(), nn.Linear(128 * 3 * 3, 256), nn.ReLU(), nn.Linear(256, 10))
snn = snnedge.sequential(*[snnedge.IF(threshold=0.5) if isinstance(m, nn.ReLU) else m for m in ann])
x = torch.rand(B, 1, 28, 28)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
res = snnedge.simulate(snn, x, timesteps=T, batch_size=B, engine="dense", progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"T": T, "batch": B, "baseline_mib": base / 1024, "peak_mib": peak / 1024,
                  "spikes": res.total_spikes}))
"""


def measure(steps: int, batch: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(batch)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, nargs=2, default=(32, 512))
    args = ap.parse_args()
    short, long = (measure(t, args.batch) for t in args.steps)
    ratio = long["peak_mib"] / short["peak_mib"]
    print("| T | peak RSS (MiB) | RSS before simulate (MiB) |\n|---|---|---|")
    for r in (short, long):
        print(f"| {r['T']} | {r['peak_mib']:.0f} | {r['baseline_mib']:.0f} |")
    print(f"\npeak(T={long['T']}) / peak(T={short['T']}) = {ratio:.3f} (goal <= 1.2)")
    growth = (long["peak_mib"] - long["baseline_mib"]) / max(short["peak_mib"] - short["baseline_mib"], 1e-9)
    print(f"growth of simulate's own memory: {growth:.3f}x")


if __name__ == "__main__":
    main()
