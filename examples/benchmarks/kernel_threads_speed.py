"""simulate with its kernels on PyTorch's OpenMP threads against Python threads (issue 16).

For each network (names of ``speed_nets``; "zoo" for every zoo member), in one process,
interleaved: the dense bound (T plain forward passes of the ANN, the same batch),
``simulate`` with ``snnedge.kernel_threads`` mode "openmp" and with mode "python", both
with the default engine ("auto") and path policy; with ``--timed`` also mode "openmp" with
path policy "timed"; with ``--no-in-place`` also mode "openmp" with additions and ``Scale``
layers writing new tensors instead of over their donor input. Prints one JSON line per
network (median of the repeats' ratios to the bound) and, with ``--out``, a markdown table
with the worst case and the median.

Both modes give the same outputs bit for bit (tests/test_kernel_threads.py); this measures
only the time.

Usage: PYTHONPATH=. python examples/benchmarks/kernel_threads_speed.py [NET ...]
       [--threads 2] [--timesteps 32] [--batch 100] [--repeats 5] [--timed] [--no-in-place]
       [--out F.md]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_nets  # noqa: E402

import snnedge  # noqa: E402
from snnedge import kernel_threads, path_choice  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402
from snnedge.executor import Executor  # noqa: E402


def measure(net, args, test_x, train_x) -> dict:
    ann, x, snn = speed_nets.converted(net, test_x, train_x, args.batch)
    bound = speed_nets.dense_bound(ann, x, args.timesteps)

    def run(mode, policy):
        def fn():
            kernel_threads.set_kernel_threads(mode)
            path_choice.set_path_policy(policy)
            return snnedge.simulate(snn, x, timesteps=args.timesteps, batch_size=args.batch,
                                    progress=False)
        return fn

    fns = {"bound": bound, "openmp": run("openmp", "limit"), "python": run("python", "limit")}
    if args.timed:
        fns["openmp_timed"] = run("openmp", "timed")
    if args.no_in_place:  # additions and Scales into new tensors, as before 2026-12-06
        def without(fn=run("openmp", "limit")):
            saved = Executor._donor
            Executor._donor = lambda *a: None
            try:
                return fn()
            finally:
                Executor._donor = saved
        fns["openmp_no_in_place"] = without
    # (the warm-up round also makes the timed policy's measurements)
    bound_s, ratios = speed_nets.interleaved_ratios(fns, args.repeats)
    row = {"net": net.name, "bound_s": bound_s, **ratios}
    return row


def table(rows: list[dict], args) -> str:
    cols = [k for k in ("python", "openmp", "openmp_timed", "openmp_no_in_place") if k in rows[0]]
    lines = [f"Command: `PYTHONPATH=. python examples/benchmarks/kernel_threads_speed.py "
             f"{' '.join(sys.argv[1:])}`", "",
             f"Machine: {speed_nets.machine()}; {args.threads} threads, T = {args.timesteps}, "
             f"batch {args.batch}, wall clock, median of {args.repeats} interleaved ratios.", "",
             "simulate / dense bound (lower is faster):", "",
             "| network | bound (s) | " + " | ".join(cols) + " |",
             "| --- | --- | " + " | ".join("---" for _ in cols) + " |"]
    for r in rows:
        lines.append(f"| {r['net']} | {r['bound_s']:.3f} | "
                     + " | ".join(f"{r[c]:.2f}" for c in cols) + " |")
    for stat, fn in (("worst", max), ("median", statistics.median)):
        lines.append(f"| **{stat}** |  | " + " | ".join(f"**{fn(r[c] for r in rows):.2f}**"
                                                        for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("nets", nargs="*", help="speed_nets names, or zoo (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timesteps", type=int, default=32)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--timed", action="store_true", help="also path policy 'timed' (openmp)")
    p.add_argument("--no-in-place", action="store_true",
                   help="also additions and Scales into new tensors (openmp)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if kernel_threads.torch_libgomp() is None:
        raise SystemExit("PyTorch does not run on a GNU OpenMP library here: nothing to compare.")
    train_x, _ = load_mnist_digits()
    test_x, _ = load_mnist_test()
    rows = []
    for net in speed_nets.networks(args.nets or None):
        rows.append(measure(net, args, test_x, train_x))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(table(rows, args))
        print(args.out.read_text())


if __name__ == "__main__":
    main()
