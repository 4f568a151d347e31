"""Where a converted zoo network loses accuracy: the count error of every neuron layer.

For zoo network ``NAME`` converted with ``convert``'s defaults (calibration: the benchmark's
1,000 calibration digits), the spike count of every neuron after ``T`` steps on held-out
*training* digits (``conversion_ablation.held_out``; no test image is read) against the
count its ANN activation stands for, ``clip(T a / lambda, 0, T)``:

* ``bias``: the mean error (spikes per neuron and sample): what the membrane and the bias
  calibrations correct;
* ``mae``: the mean absolute error, and ``rel``: it over the mean target count: the
  per-sample error, which no correction of means can take off;
* ``slope``: the least-squares slope of the counts against the targets over all neurons and
  samples: below 1 when the counts are a compressed copy of the targets (what
  ``convert(..., calibrate_gain=True)`` corrects, ``converters.gain``).

Usage::

    PYTHONPATH=$PWD nice -n 19 /work/peersvenv/bin/python \\
        examples/benchmarks/conversion_layer_error.py resnet_deep --held-out 200 --timesteps 32
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parents[1]), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import conversion_ablation as ca  # noqa: E402
import conversion_zoo as cz  # noqa: E402
import zoo  # noqa: E402
from converters import convert  # noqa: E402
from converters.fold import simplify  # noqa: E402
from converters.graph import capture_fx  # noqa: E402
from converters.sweep import Sweep  # noqa: E402


@torch.no_grad()
def layer_errors(name: str, held_out: int, timesteps: int, **options) -> list[dict]:
    """Per neuron layer of zoo network ``name`` (in topological order): its threshold, the
    ANN's mean rate, and the mean, mean absolute and relative count errors after
    ``timesteps`` steps on ``held_out`` held-out training digits; ``options`` go to
    ``convert``."""
    base = {v: k for k, v in cz.QCFS.items()}.get(name, name)
    ann = cz.qcfs_model(name) if name in cz.QCFS.values() else zoo.trained(name)
    calib, x = ca.held_out(zoo.MEMBERS[base], held_out)
    snn = convert(ann, calib, **options)
    neurons = list(snn.neuron_layers)
    acts = {n: [] for n in neurons}
    # the ANN's activations at the neuron layers (the converted network keeps their names)
    graph, _ = simplify(capture_fx(ann, x[:2]))
    for i in range(0, x.shape[0], 100):
        _, rec = graph.run(x[i:i + 100], record=tuple(neurons))
        for n in neurons:
            acts[n].append(rec[n].double())
    counts: dict[str, list[torch.Tensor]] = {}
    sweep = Sweep(snn, x, timesteps)
    for n in sweep.temporal:
        sweep.store(n, None, lambda k, y, n=n: counts.setdefault(n, []).append(y.sum(0).double()))
    rows = []
    for n in neurons:
        c, a = torch.cat(counts[n]), torch.cat(acts[n])
        lam = torch.tensor(snn.conversion_.scales[n], dtype=torch.float64)
        lam = lam.view(1, -1, *([1] * (c.dim() - 2))) if lam.dim() else lam
        target = torch.clamp(a / lam * timesteps, 0, timesteps)
        err = c - target
        theta = torch.as_tensor(snn.layer(n).threshold, dtype=torch.float64)
        rows.append({"layer": n, "threshold": float(theta.mean()),
                     "rate": float(target.mean()) / timesteps, "bias": float(err.mean()),
                     "mae": float(err.abs().mean()),
                     "rel": float(err.abs().mean() / target.mean().clamp(min=1e-12)),
                     "slope": float(((c - c.mean()) * (target - target.mean())).mean()
                                    / target.var(unbiased=False).clamp(min=1e-12))})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", help="zoo member (or qcfs_resnet18 / qcfs_vgg11_bn)")
    p.add_argument("--held-out", type=int, default=200)
    p.add_argument("--timesteps", type=int, default=32)
    p.add_argument("--calibrate-bias", choices=("default", "on", "off"), default="default",
                   help="convert's calibrate_bias (default: convert's own default)")
    p.add_argument("--calibrate-gain", choices=("default", "on", "off"), default="default",
                   help="convert's calibrate_gain (default: convert's own default)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    options = {} if args.calibrate_bias == "default" else {"calibrate_bias": args.calibrate_bias == "on"}
    if args.calibrate_gain != "default":
        options["calibrate_gain"] = args.calibrate_gain == "on"
    torch.set_num_threads(args.threads)
    print(f"{'layer':30s} {'theta':>6s} {'rate':>6s} {'bias':>7s} {'mae':>6s} {'rel':>6s} {'slope':>6s}")
    for r in layer_errors(args.name, args.held_out, args.timesteps, **options):
        print(f"{r['layer']:30s} {r['threshold']:6.2f} {r['rate']:6.3f} {r['bias']:+7.3f} "
              f"{r['mae']:6.3f} {r['rel']:6.3f} {r['slope']:6.3f}")


if __name__ == "__main__":
    main()
