"""Channel-wise or per-layer scales on chips with one weight scale per layer (issue 19).

``convert``'s default for neurons that reset by subtraction gives every output channel its
own scale (Kim et al., AAAI 2020), so the normalized weights of one layer spread over the
ratio of those scales. DYNAP-CNN (one scale per layer, 8-bit weights) and Loihi (8-bit
weights times one power-of-two exponent per layer) then keep fewer bits for the channels
with small weights. For each network of ``hardware_accuracy.py`` and each normalization:
the float SNN's accuracy and the change on each chip, on the training digits outside the
calibration sample (no test image is read; the ANNs saw these digits in training, so only
the changes count), T = 32.

With ``--ratios 2 4 8 16``: also channel-wise scales bounded to each ratio of their layer's
largest (``convert(..., max_scale_ratio=r)``), the comparison behind
``converters.pipeline.CHIP_SCALE_RATIO`` (the ratio with the best worst on-chip accuracy over
the networks and the two chips).

With ``--reset zero --targets`` (no target): the float SNNs of networks converted with
``reset="zero"`` under each normalization, the comparison behind
``converters.pipeline.default_normalization``.

Usage::

    python examples/benchmarks/chip_normalization.py                 # 3 networks, 1,000 digits
    python examples/benchmarks/chip_normalization.py --networks truenorth_cnn --digits 4500
    python examples/benchmarks/chip_normalization.py --ratios 2 4 8 16
    python examples/benchmarks/chip_normalization.py --reset zero --targets \
        --networks truenorth_cnn dynapse_cnn interop_cnn_s1 interop_cnn_s2 vgg_avg
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

import hardware_accuracy as ha  # noqa: E402
from converters import convert  # noqa: E402
from neuromorphic_targets import to_hardware  # noqa: E402
from snnedge.datasets import load_mnist_digits  # noqa: E402

TARGETS = ("dynap-cnn", "loihi")
NORMALIZATIONS = ("channelwise", "percentile")


def spread(snn) -> float:
    """The largest ratio of channel scales within one layer of ``snn`` (1 for per-layer)."""
    ratios = [max(s) / min(s) for s in snn.conversion_.scales.values()
              if isinstance(s, list) and min(s) > 0]
    return max(ratios, default=1.0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--networks", nargs="+", default=["truenorth_cnn", "interop_cnn_s1", "interop_cnn_s2"],
                   choices=list(ha.NETWORKS))
    p.add_argument("--digits", type=int, default=1000, help="training digits after the calibration sample")
    p.add_argument("--reset", choices=("subtract", "zero"), default="subtract")
    p.add_argument("--targets", nargs="*", default=list(TARGETS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ratios", nargs="*", type=float, default=[],
                   help="also channel-wise scales within these ratios of their layer's largest")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y = load_mnist_digits()
    order = ha.training_order(len(x))
    calib = x[order[:ha.CALIBRATION_SAMPLES]]
    rest = order[ha.CALIBRATION_SAMPLES:ha.CALIBRATION_SAMPLES + args.digits]
    print(f"reset={args.reset!r}, T = {ha.TIMESTEPS}, {len(rest)} training digits; chips: change "
          f"against the float SNN in points")
    print("| network | normalization | largest channel-scale ratio in a layer | float SNN % |"
          + "".join(f" {t} |" for t in args.targets) + " worst on chip % |")
    print("| --- | --- | --- | --- |" + "".join(" --- |" for _ in args.targets) + " --- |")
    settings = [(norm, None) for norm in NORMALIZATIONS] + [("channelwise", r) for r in args.ratios]
    worst: dict[str, float] = {}
    for name in args.networks:
        ann = ha.trained(name)
        for norm, ratio in settings:
            snn = convert(ann, calib, normalization=norm, reset=args.reset, max_scale_ratio=ratio)
            f = ha.accuracy(snn, x[rest], y[rest])
            chips = [ha.accuracy(to_hardware(snn, t), x[rest], y[rest]) for t in args.targets]
            label = norm if ratio is None else f"{norm}, max_scale_ratio={ratio:g}"
            low = min(chips, default=f)
            worst[label] = min(worst.get(label, low), low)
            print(f"| {name} | {label} | {spread(snn):.1f} | {f:.2f} |"
                  + "".join(f" {c - f:+.2f} |" for c in chips) + f" {low:.2f} |", flush=True)
    if len(args.networks) > 1 and args.targets:
        print("\nworst on-chip accuracy over the networks and chips: "
              + ", ".join(f"{k} {v:.2f}" for k, v in worst.items()))


if __name__ == "__main__":
    main()
