"""Issue 16's speed goals as worst cases over a list of networks, in one run.

For every network of ``speed_nets.networks()`` (the reference ANNs, two held-out networks,
and the conversion zoo where ``zoo.py`` is present), converted with ``converters.convert``:

1. ``simulate / bound``: ``snnedge.simulate`` (T steps, batch B, engine "auto") against the
   dense bound, T plain forward passes of the ANN (goal: <= 1.0 for every network, <= 0.5
   median); ``SJ / simulate``: SpikingJelly's single-step loop on its own conversion of the
   same ANN (goal >= 2 wherever it converts; needs the peers).
2. ``dense / event`` at batch 1, thresholds raised until <= 2% activity, for networks of at
   least 20 M MAC per sample (goal >= 3); ``auto / best`` at batch 1 and batch B: ``auto``
   against the faster of "dense" and "event" (goal <= 1.1).
3. ``peak RSS T=512 / T=32`` at batch B, each run in its own process (goal <= 1.2): the
   child's own high-water mark (``VmHWM``; on Linux ``ru_maxrss`` keeps the parent's peak
   across ``exec``).

Every ratio is a median over interleaved repeats measured side by side in this process.
``--clock cpu`` (the default with one thread) uses the process's CPU time, what a shared
machine allows; ``--clock wall`` is for a quiet machine with more threads.

Usage::

    python examples/benchmarks/speed_zoo.py [--nets vgg_avg resnet zoo ...] [--threads 1]
        [--clock cpu|wall] [--repeats 3] [--parts batch event memory] [--json out.json]

Run it with the peers' interpreter (``PYTHONPATH=. /work/peersvenv/bin/python ...``) for the
SpikingJelly column.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import speed_nets  # noqa: E402

import snnedge  # noqa: E402
from snnedge import path_calibration  # noqa: E402
from converters import convert  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402

BIG_MACS = 20e6  # the batch-1 event goal applies from here


def raised_thresholds(snn: snnedge.SpikingNetwork, x: torch.Tensor, T: int, target: float = 0.02):
    """A copy of ``snn`` with thresholds scaled by the smallest power of 1.25 that brings the
    mean activity (spikes per neuron per step) to at most ``target``; and that activity."""
    factor = 1.0
    while True:
        net = copy.deepcopy(snn)
        for name in net.neuron_layers:
            net.layer(name).threshold.mul_(factor)
        res = snnedge.simulate(net, x, timesteps=T, engine="dense", progress=False)
        activity = res.total_spikes / max(sum(res.neurons.values()) * T * res.num_samples, 1)
        if activity <= target or factor > 1e3:
            return net, activity
        factor *= 1.25


def interleaved(fns: dict, clock: speed_nets.Clock, repeats: int) -> dict[str, list[float]]:
    for fn in fns.values():
        fn()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(clock.time(fn))
    return times


def median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def batch_part(net, ann, snn, x, calib, args, clock) -> dict:
    T = args.timesteps

    def bound():
        with torch.no_grad():
            for _ in range(T):
                ann(x)

    fns = {"bound": bound,
           "simulate": lambda: snnedge.simulate(snn, x, timesteps=T, batch_size=len(x), progress=False)}
    sj_note = None
    try:
        import peers
        sj = peers.spikingjelly_convert(ann, calib, mode="99.9%")
        fns["SJ"] = lambda: peers.spikingjelly_simulate(sj, x, T, batch_size=len(x))
    except ImportError as err:
        sj_note = f"not installed ({str(err).split('(')[0].strip()})"
    except Exception as err:  # noqa: BLE001  SpikingJelly's converter refuses some graphs
        sj_note = f"does not convert: {type(err).__name__}: {str(err)[:80]}"
    t = interleaved(fns, clock, args.repeats)
    out = {"simulate_over_bound": median_ratio(t["simulate"], t["bound"]),
           "seconds": {k: statistics.median(v) for k, v in t.items()}}
    out["sj_over_simulate"] = median_ratio(t["SJ"], t["simulate"]) if "SJ" in t else sj_note
    return out


def event_part(net, snn, xs, x_batch, macs, args, clock) -> dict:
    T = args.timesteps
    sparse, activity = raised_thresholds(snn, xs, T)
    one = {e: (lambda e=e: [snnedge.simulate(sparse, xs[i:i + 1], timesteps=T, engine=e, progress=False)
                            for i in range(len(xs))]) for e in ("dense", "event")}
    # auto at batch 1 as a user runs it on many samples: one call, batch_size=1
    one["auto"] = lambda: snnedge.simulate(sparse, xs, timesteps=T, batch_size=1, progress=False)
    t1 = interleaved(one, clock, args.repeats)
    many = {e: (lambda e=e: snnedge.simulate(sparse, x_batch, timesteps=T, batch_size=len(x_batch),
                                             engine=e, progress=False)) for e in ("dense", "event", "auto")}
    tb = interleaved(many, clock, args.repeats)

    def auto_over_best(t):
        return statistics.median(a / min(d, e) for a, d, e in zip(t["auto"], t["dense"], t["event"]))
    return {"activity": activity,
            "dense_over_event_b1": median_ratio(t1["dense"], t1["event"]) if macs >= BIG_MACS else None,
            "auto_over_best_b1": auto_over_best(t1), "auto_over_best_batch": auto_over_best(tb)}


MEMORY_CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, sys.argv[1])
import speed_nets, snnedge
from converters import convert
from snnedge.datasets import load_mnist_digits, load_mnist_test
torch.set_num_threads(1)
name, T, B = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
net = speed_nets.networks([name])[0]
ann = net.build()
snn = convert(ann, calibration=net.inputs(load_mnist_digits()[0][:200]))
x = net.inputs(load_mnist_test()[0][:B])
def status(field):  # this process's own figure (ru_maxrss would carry the parent's peak over exec)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
base = status("VmRSS")
snnedge.simulate(snn, x, timesteps=T, batch_size=B, progress=False)
print(json.dumps({"base": base, "peak": status("VmHWM")}))
"""


def memory_part(net, args) -> dict:
    # engine "auto"'s calibration at the children's one thread, measured here if none is kept,
    # so that no child's peak includes the probes of a first-use calibration
    path_calibration.for_auto(threads=1, progress=False)
    peaks = {}
    for T in (32, 512):
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(HERE), net.name, str(T),
                              str(args.batch)], check=True, capture_output=True, text=True)
        peaks[T] = json.loads(out.stdout.strip().splitlines()[-1])
    return {"peak_mib": {T: p["peak"] for T, p in peaks.items()},
            "ratio": peaks[512]["peak"] / peaks[32]["peak"]}


def fmt(v, digits=2) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(rows: list[dict]) -> str:
    lines = ["| network | M MAC | simulate / bound | SJ / simulate | activity b1 | dense / event b1 | "
             "auto / best b1 | auto / best batch | RSS T=512 / T=32 |", "|" + "---|" * 9]
    for r in rows:
        b, e, m = r.get("batch", {}), r.get("event", {}), r.get("memory", {})
        lines.append(f"| {r['net']} | {r['macs'] / 1e6:.1f} | {fmt(b.get('simulate_over_bound'))} | "
                     f"{fmt(b.get('sj_over_simulate'))} | {fmt(e.get('activity'), 4)} | "
                     f"{fmt(e.get('dense_over_event_b1'))} | {fmt(e.get('auto_over_best_b1'))} | "
                     f"{fmt(e.get('auto_over_best_batch'))} | {fmt(m.get('ratio'), 3)} |")
    return "\n".join(lines)


def worst(rows: list[dict]) -> str:
    def col(part, key, pick):
        vals = [r[part][key] for r in rows if part in r and isinstance(r[part].get(key), float)]
        return fmt(pick(vals)) if vals else "-"
    return ("| worst case | measured | goal |\n|---|---|---|\n"
            f"| simulate / bound, max | {col('batch', 'simulate_over_bound', max)} | <= 1.0 |\n"
            f"| simulate / bound, median | {col('batch', 'simulate_over_bound', statistics.median)} | <= 0.5 |\n"
            f"| SJ / simulate, min | {col('batch', 'sj_over_simulate', min)} | >= 2 |\n"
            f"| dense / event at batch 1, min (>= 20 M MAC) | {col('event', 'dense_over_event_b1', min)} | >= 3 |\n"
            f"| auto / best, batch 1, max | {col('event', 'auto_over_best_b1', max)} | <= 1.1 |\n"
            f"| auto / best, batch B, max | {col('event', 'auto_over_best_batch', max)} | <= 1.1 |\n"
            f"| RSS T=512 / T=32, max | {col('memory', 'ratio', max)} | <= 1.2 |")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="*", help="names from speed_nets (default: all; 'zoo': its members)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("cpu", "wall"), default=None)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--timesteps", type=int, default=32)
    ap.add_argument("--event-samples", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", nargs="*", default=["batch", "event", "memory"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = speed_nets.Clock(args.clock or ("cpu" if args.threads == 1 else "wall"))
    x_train, _ = load_mnist_digits()
    x_test, _ = load_mnist_test()
    rows = []
    for net in speed_nets.networks(args.nets):
        ann = net.build()
        calib = net.inputs(x_train[:500])
        x = net.inputs(x_test[:args.batch])
        xs = net.inputs(x_test[args.batch:args.batch + args.event_samples])
        snn = convert(ann, calibration=calib)
        row = {"net": net.name, "macs": speed_nets.macs_per_sample(ann, x)}
        if "batch" in args.parts:
            row["batch"] = batch_part(net, ann, snn, x, calib, args, clock)
        if "event" in args.parts:
            row["event"] = event_part(net, snn, xs, x, row["macs"], args, clock)
        if "memory" in args.parts:
            row["memory"] = memory_part(net, args)
        rows.append(row)
        print(json.dumps(row), flush=True)
    head = (f"T = {args.timesteps}, batch {args.batch}; {clock.label(args.threads)}; median of "
            f"{args.repeats} interleaved repeats; peak RSS in its own process per T; "
            f"{speed_nets.machine()}")
    print(f"\n{head}\n\n{table(rows)}\n\n{worst(rows)}")
    report = {"setup": head, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
