"""Where `snnedge.simulate`'s time goes, network by network (issue 16's profile).

For every network of ``speed_nets.networks()`` (converted with ``converters.convert``), one
``simulate`` call (T steps, direct encoding, engine "auto" unless told) is split into:

* ``first layer``: layers computed once per batch from the static input (the analog first
  convolution, its BatchNorm folded in, and anything fed only by it);
* ``synaptic dense`` / ``synaptic event``: the spike-fed convolutions and linear layers, by
  the path they ran (oneDNN, or the compiled event kernel);
* ``pooling``: weight-free layers on spikes (average, sum and spiking max pools, flatten,
  additions);
* ``neurons``: the IF/LIF updates (compiled block kernel) with their spike counts, and the
  tiling average pools fused into them (``Executor._temporal_pooled``);
* ``set-up``: everything else in the call (input checks, synapse links, the readout's
  running argmax, assembling the result).

beside the dense bound (T plain forward passes of the ANN). Times come from the executor's
methods, wrapped here (nothing in snnedge changes); the median of ``--repeats`` runs.

Usage: python examples/benchmarks/speed_profile.py [--nets vgg_avg resnet ...] [--threads 1]
       [--clock cpu|wall] [--batch 100] [--timesteps 32] [--engine auto] [--write-results]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import speed_nets  # noqa: E402

import snnedge  # noqa: E402
import snnedge.executor as executor  # noqa: E402
from converters import convert  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402

PARTS = ("first layer", "synaptic dense", "synaptic event", "pooling", "neurons", "set-up")


class Split:
    """Wraps :class:`snnedge.executor.Executor`'s layer methods to add up time per part."""

    def __init__(self, clock: speed_nets.Clock):
        self.clock, self.spent, self.layers = clock, defaultdict(float), defaultdict(float)
        self._saved = (executor.Executor._temporal, executor.Executor._synaptic,
                       getattr(executor.Executor, "_temporal_pooled", None))

    def __enter__(self):
        temporal, synaptic, temporal_pooled = self._saved
        split = self

        def timed_temporal_pooled(ex, name, module, cur, steps, keep):
            t0 = split.clock.now()
            try:
                return temporal_pooled(ex, name, module, cur, steps, keep)
            finally:
                dt = split.clock.now() - t0
                split.spent["neurons"] += dt
                split.layers[f"{name} ({type(module).__name__} + pool)"] += dt

        def timed_temporal(ex, name, module, cur, steps, count, *args, **kwargs):
            t0 = split.clock.now()
            try:
                return temporal(ex, name, module, cur, steps, count, *args, **kwargs)
            finally:
                dt = split.clock.now() - t0
                split.spent["neurons"] += dt
                split.layers[f"{name} ({type(module).__name__})"] += dt

        def timed_synaptic(ex, name, module, ins, steps, *args, **kwargs):
            if all(v.static for v in ins):
                part = "first layer"
            elif ex.net.kind(name) != "weighted":
                part = "pooling"
            elif ex.densities is not None:  # auto, choosing: the layer's choice decides
                part = None
            elif ex.engine == "event" and (ex.event_layers is None or name in ex.event_layers):
                part = "synaptic event"
            else:
                part = "synaptic dense"
            t0 = split.clock.now()
            try:
                return synaptic(ex, name, module, ins, steps, *args, **kwargs)
            finally:
                dt = split.clock.now() - t0
                if part is None:  # (read after the call: the path the layer took in this block)
                    events = ex.choices.get(name, name in (ex.event_layers or ()))
                    part = "synaptic event" if events else "synaptic dense"
                split.spent[part] += dt
                split.layers[f"{name} ({type(module).__name__}, {part})"] += dt

        executor.Executor._temporal, executor.Executor._synaptic = timed_temporal, timed_synaptic
        if temporal_pooled is not None:
            executor.Executor._temporal_pooled = timed_temporal_pooled
        return self

    def __exit__(self, *exc):
        executor.Executor._temporal, executor.Executor._synaptic = self._saved[:2]
        if self._saved[2] is not None:
            executor.Executor._temporal_pooled = self._saved[2]


def profile(net: speed_nets.Net, x: torch.Tensor, calib: torch.Tensor, args,
            clock: speed_nets.Clock) -> dict:
    ann = net.build()
    xin, cin = net.inputs(x), net.inputs(calib)
    snn = convert(ann, calibration=cin)
    T = args.timesteps

    def bound():
        with torch.no_grad():
            for _ in range(T):
                ann(xin)

    def ours():
        return snnedge.simulate(snn, xin, timesteps=T, batch_size=len(xin), engine=args.engine,
                                progress=False)

    bound(), ours()  # warm-up
    rows = []
    for _ in range(args.repeats):
        b = clock.time(bound)
        with Split(clock) as split:
            start = clock.now()
            res = ours()
            total = clock.now() - start
        parts = dict(split.spent)
        parts["set-up"] = total - sum(parts.values())
        rows.append((b, total, parts, dict(split.layers)))
    med = lambda v: statistics.median(v)  # noqa: E731
    activity = res.total_spikes / (sum(res.neurons.values()) * T * res.num_samples)
    return {"net": net.name, "macs": speed_nets.macs_per_sample(ann, xin), "activity": activity,
            "bound": med([r[0] for r in rows]), "total": med([r[1] for r in rows]),
            "parts": {p: med([r[2].get(p, 0.0) for r in rows]) for p in PARTS},
            "event_layers": res.extra.get("event_layers", [[]])[0],
            "layers": {k: med([r[3].get(k, 0.0) for r in rows]) for k in rows[0][3]}}


def table(results: list[dict]) -> str:
    head = ("| network | M MAC | activity | dense bound s | simulate s | / bound | "
            + " | ".join(PARTS) + " |")
    lines = [head, "|" + "---|" * (6 + len(PARTS))]
    for r in results:
        parts = " | ".join(f"{r['parts'][p]:.3f} ({r['parts'][p] / r['total']:.0%})" for p in PARTS)
        lines.append(f"| {r['net']} | {r['macs'] / 1e6:.1f} | {r['activity']:.1%} | {r['bound']:.3f} | "
                     f"{r['total']:.3f} | {r['total'] / r['bound']:.2f} | {parts} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="*", help="names from speed_nets (default: all; 'zoo': its members)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("cpu", "wall"), default=None,
                    help="default: cpu with one thread, wall with more")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--timesteps", type=int, default=32)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top", type=int, default=0, help="also print the N slowest layers per network")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = speed_nets.Clock(args.clock or ("cpu" if args.threads == 1 else "wall"))
    x_train, _ = load_mnist_digits()
    x_test, _ = load_mnist_test()
    x, calib = x_test[:args.batch], x_train[:500]
    results = []
    for net in speed_nets.networks(args.nets):
        r = profile(net, x, calib, args, clock)
        results.append(r)
        print(f"{r['net']}: simulate {r['total']:.3f} s, bound {r['bound']:.3f} s, event layers "
              f"{r['event_layers']}", flush=True)
        for layer, t in sorted(r["layers"].items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"    {t:.3f} s  {layer}")
    print(f"\nT = {args.timesteps}, batch {args.batch}, engine {args.engine!r}; "
          f"{clock.label(args.threads)}; median of {args.repeats}; {speed_nets.machine()}\n")
    print(table(results))


if __name__ == "__main__":
    main()
