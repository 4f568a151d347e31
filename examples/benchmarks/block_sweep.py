"""simulate / dense bound at fixed block sizes, network by network (issue 16's block rule).

For each network (names of ``speed_nets``; "zoo" for every zoo member): the dense bound (T
plain forward passes of the ANN) and ``simulate`` (engine "auto", default path policy) with
``block_steps`` fixed at each of ``--steps``, and with the default rule; interleaved,
``--repeats`` rounds, medians of the ratios. Also the sizes the block rule reads: the sum of
all layers' activations per step, what is alive at once per step (``engine.live_numel``),
and the number of layers. One JSON line per network; ``--out`` writes them all (input of
``--fit``).

``--fit FILE``: reads such a file and prints, for candidate rules, the worst and the median
ratio over its networks when each network gets the block size the rule gives it (the
nearest measured size at or below).

Usage: PYTHONPATH=. python examples/benchmarks/block_sweep.py [NET ...] [--steps 1 2 4 8 16]
       [--threads 2] [--repeats 3] [--out sweep.json]
       PYTHONPATH=. python examples/benchmarks/block_sweep.py --fit sweep.json
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_nets  # noqa: E402

import snnedge  # noqa: E402
from snnedge import engine  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402

BATCH, T, ITEM = 100, 32, 4


def measure(net, args, test_x, train_x) -> dict:
    ann, x, snn = speed_nets.converted(net, test_x, train_x, BATCH)
    shapes = snn.shapes(tuple(x.shape[1:]))
    bound = speed_nets.dense_bound(ann, x, T)

    def sim(steps):
        return lambda: snnedge.simulate(snn, x, timesteps=T, batch_size=BATCH, block_steps=steps,
                                        progress=False)
    fns = {"bound": bound, "default": sim(None), **{str(s): sim(s) for s in args.steps}}
    bound_s, ratios = speed_nets.interleaved_ratios(fns, args.repeats)
    mib = BATCH * ITEM / 2**20
    row = {"net": net.name, "bound_s": bound_s,
           "sum_mib": sum(math.prod(s) for s in shapes.values()) * mib,
           "live_mib": engine.live_numel(snn, shapes) * mib, "layers": len(shapes),
           "default_steps": engine.block_steps_for(shapes, BATCH, T, ITEM,
                                                   budget_bytes=engine.block_budget("cpu"),
                                                   live=engine.live_numel(snn, shapes)),
           **ratios}
    return row


def fit(rows: list[dict]) -> None:
    """Worst and median ratio of candidate rules over the swept networks."""
    sizes = sorted(int(k) for k in rows[0] if k.isdigit())

    def at(row, steps):  # the nearest measured block size at or below
        return row[str(max([s for s in sizes if s <= max(1, steps)] or [sizes[0]]))]

    def report(label, pick):
        r = [at(row, pick(row)) for row in rows]
        print(f"{label:<58} worst {max(r):.2f}  median {statistics.median(r):.2f}")
    budget = engine.block_budget("cpu") / 2**20
    print(f"{len(rows)} networks; cache budget {budget:.0f} MiB")
    report("oracle (best size per network)", lambda row: min(sizes, key=lambda s: row[str(s)]))
    report("default of the run (measured)", lambda row: row["default_steps"])
    for cap in (512, 1024, 2048, None):
        for target in (0, 1, 2, 4, 8):
            def pick(row, cap=cap, target=target):
                steps = budget // row["live_mib"]
                if cap:
                    steps = min(steps, cap // row["sum_mib"])
                if target:  # each layer's call at least `target` MiB on average
                    steps = max(steps, math.ceil(target / (row["sum_mib"] / row["layers"])))
                return int(min(T, max(1, steps)))
            report(f"live in cache, sum cap {cap} MiB, >= {target} MiB per layer call", pick)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("nets", nargs="*")
    p.add_argument("--steps", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--fit", type=Path, default=None)
    args = p.parse_args(argv)
    if args.fit:
        fit([json.loads(line) for line in args.fit.read_text().splitlines() if line.strip()])
        return
    torch.set_num_threads(args.threads)
    print(speed_nets.machine(), flush=True)
    train_x, _ = load_mnist_digits()
    test_x, _ = load_mnist_test()
    rows = []
    for net in speed_nets.networks(args.nets or None):
        rows.append(measure(net, args, test_x, train_x))
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
