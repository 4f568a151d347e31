"""Engine "auto" with the fitted rule against "auto" with this machine's calibration (issue 16).

For each network (names of ``speed_nets``; "zoo" for every cached zoo member), converted with
``converters.convert``, in one process, interleaved: the dense bound (T plain forward passes
of the ANN, the same batch), ``simulate`` with engines "dense" and "event", and engine
"auto" under path policy "limit" (the rule fitted on one CPU) and "calibrated" (the rule
scaled by this machine's measured break-evens, ``snnedge.path_calibration``). Prints one
JSON line per network: each run's time / the bound's (median over the repeats' ratios) and
auto / best, ``auto``'s time over the faster of "dense" and "event" (goal <= 1.1); with
``--out`` a markdown table with the worst case and the median.

The calibration is measured at the start of the run, as ``snnedge calibrate`` does, at the
run's thread count (``--quick``: as engine "auto" does on first use, ``snnedge calibrate
--quick``; ``--calibration FILE`` reads a kept one instead).

Usage: PYTHONPATH=. python examples/benchmarks/calibrated_auto.py [NET ...] [--threads 1]
       [--clock cpu|wall] [--timesteps 32] [--batch 100] [--repeats 5] [--quick] [--out F.md]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_nets  # noqa: E402

import snnedge  # noqa: E402
from snnedge import path_calibration, path_choice  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402

RUNS = ("dense", "event", "auto_limit", "auto_calibrated")


def measure(net, args, clock, test_x, train_x) -> dict:
    ann, x, snn = speed_nets.converted(net, test_x, train_x, args.batch)
    bound = speed_nets.dense_bound(ann, x, args.timesteps)

    def run(engine, policy=None):
        def fn():
            path_choice.set_path_policy(policy)
            return snnedge.simulate(snn, x, timesteps=args.timesteps, batch_size=args.batch,
                                    engine=engine, progress=False)
        return fn

    fns = {"bound": bound, "dense": run("dense"), "event": run("event"),
           "auto_limit": run("auto", "limit"), "auto_calibrated": run("auto", "calibrated")}
    for fn in fns.values():
        fn()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(args.repeats):
        for k, fn in fns.items():
            times[k].append(clock.time(fn))
    over = {k: statistics.median(a / b for a, b in zip(times[k], times["bound"])) for k in RUNS}
    best = [min(d, e) for d, e in zip(times["dense"], times["event"])]
    row = {"net": net.name, "bound_s": round(statistics.median(times["bound"]), 4),
           **{f"{k}/bound": round(v, 3) for k, v in over.items()},
           **{f"{k}/best": round(statistics.median(a / b for a, b in zip(times[k], best)), 3)
              for k in ("auto_limit", "auto_calibrated")}}
    path_choice.set_path_policy("calibrated")
    res = snnedge.simulate(snn, x, timesteps=args.timesteps, batch_size=args.batch, progress=False)
    row["event_layers_calibrated"] = len(res.extra["event_layers"][0])
    path_choice.set_path_policy("limit")
    res = snnedge.simulate(snn, x, timesteps=args.timesteps, batch_size=args.batch, progress=False)
    row["event_layers_limit"] = len(res.extra["event_layers"][0])
    row["activity"] = round(res.extra["activity_first_block"][0], 4)
    return row


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nets", nargs="*", help="names from speed_nets (default: all; 'zoo': its members)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("cpu", "wall"), default=None,
                    help="default: cpu with one thread, wall with more")
    ap.add_argument("--timesteps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rows", type=int, nargs="+", default=None,
                    help="row counts of the calibration's probes (default: the package's)")
    ap.add_argument("--calibration", type=Path, default=None, help="a kept calibration file")
    ap.add_argument("--quick", action="store_true",
                    help="measure the calibration as engine 'auto' does on first use (bisection)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = speed_nets.Clock(args.clock or ("cpu" if args.threads == 1 else "wall"))
    if args.calibration is not None:
        cal = path_calibration.load(args.calibration)
        if cal is None:
            raise SystemExit(f"{args.calibration} holds no calibration for this machine at "
                             f"{args.threads} thread(s); run without --calibration to measure one.")
    elif args.quick:
        cal = path_calibration.calibrate(rows=args.rows or path_calibration.QUICK_ROWS,
                                         repeats=path_calibration.QUICK_REPEATS,
                                         progress=False, search="bisection")
    else:
        cal = path_calibration.calibrate(rows=args.rows or path_calibration.ROWS, progress=False)
    # the run's own calibration, in a file of its own for this process
    os.environ["SNNEDGE_CALIBRATION"] = str(path_calibration.save(
        cal, Path(tempfile.mkdtemp(prefix="snnedge-calibration-")) / "calibration.json"))
    print(f"# {speed_nets.machine()}; {clock.label(args.threads)}; T = {args.timesteps}, "
          f"batch {args.batch}, {args.repeats} repeats", flush=True)
    print(f"# calibration: {cal.search}, rows {cal.rows}, measured in {cal.seconds:.1f} s; factors "
          "(break-even / rule): " + ", ".join(f"{c} {f:.2f}" for c, f in cal.factors.items()),
          flush=True)
    test_x, train_x = load_mnist_test()[0], load_mnist_digits()[0]
    rows = []
    for net in speed_nets.networks(args.nets or None):
        rows.append(measure(net, args, clock, test_x, train_x))
        print(json.dumps(rows[-1]), flush=True)
    if args.out is not None:
        cols = [f"{k}/bound" for k in RUNS] + ["auto_limit/best", "auto_calibrated/best"]
        lines = ["| network | activity | event layers (limit / calibrated) | " + " | ".join(cols) + " |",
                 "|---" * (3 + len(cols)) + "|"]
        for r in rows:
            lines.append(f"| {r['net']} | {r['activity']:.1%} | {r['event_layers_limit']} / "
                         f"{r['event_layers_calibrated']} | " + " | ".join(f"{r[c]:.2f}" for c in cols) + " |")
        for name, pick in (("worst", max), ("median", statistics.median)):
            lines.append(f"| **{name}** | | | " + " | ".join(f"{pick(r[c] for r in rows):.2f}" for c in cols) + " |")
        args.out.write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
