"""Where a zoo ANN has no decision: test images whose outputs tie for the maximum.

A network whose readout is a ReLU (torchvision's SqueezeNet: conv -> ReLU -> global average
pool) can output exactly zero for every class. ``argmax`` then returns class 0 by
convention, and the ANN's accuracy counts those images right whenever the digit is a 0.
A converted SNN that fires even one readout spike there "predicts" another class: a loss
that says nothing about how well the SNN computes the ANN's function.

For each zoo network: the share of test images on which the ANN's outputs tie, its accuracy
on them, and (unless ``--ann-only``) the conversion loss at each T over all test images and
over the images where the ANN's maximum is unique, for ``convert``'s defaults and for
``calibrate_membrane=False`` (the membrane calibration raises initial membranes where a
layer fires too little on average, so some silent readout neurons fire once).

Usage::

    PYTHONPATH=$PWD /work/peersvenv/bin/python examples/benchmarks/readout_ties.py \\
        tv_squeezenet1_1 --test-samples 500
    python examples/benchmarks/readout_ties.py --ann-only          # every member here
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

import conversion_zoo as cz  # noqa: E402
import zoo  # noqa: E402
import snnedge  # noqa: E402
from converters import convert  # noqa: E402

VARIANTS = {"default": {}, "calibrate_membrane=False": {"calibrate_membrane": False}}


def tied(outputs: torch.Tensor) -> torch.Tensor:
    """Per row: True where more than one output equals the row's maximum.

    >>> tied(torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.3, 0.2], [2.0, 1.0, 2.0]])).tolist()
    [True, False, True]
    """
    return (outputs == outputs.max(1, keepdim=True).values).sum(1) > 1


def measure(name: str, n_test: int | None, steps: tuple[int, ...], ann_only: bool) -> dict:
    ann = zoo.trained(name)
    calib, x, y = cz.data(zoo.MEMBERS[name], cz.CALIBRATION_SAMPLES, n_test)
    with torch.no_grad():
        out = torch.cat([ann(x[i:i + 256]) for i in range(0, len(x), 256)])
    right, ties = out.argmax(1) == y, tied(out)
    row = {"test_samples": len(x), "ann_acc": 100 * float(right.float().mean()),
           "tied_share": 100 * float(ties.float().mean()),
           "ann_acc_on_tied": 100 * float(right[ties].float().mean()) if ties.any() else None,
           "loss": {}}
    if ann_only:
        return row
    for label, options in VARIANTS.items():
        res = snnedge.simulate(convert(ann, calib, **options), x, timesteps=max(steps),
                               batch_size=500, progress=False)
        row["loss"][label] = {t: {"all": 100 * float(right.float().mean()
                                                     - (res.step_predictions[t - 1] == y).float().mean()),
                                  "untied": 100 * float(right[~ties].float().mean()
                                                        - (res.step_predictions[t - 1] == y)[~ties]
                                                        .float().mean())}
                              for t in steps}
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("members", nargs="*", help="zoo members (default: every one buildable here "
                                              "and already trained in _cache/)")
    p.add_argument("--test-samples", type=int, default=500)
    p.add_argument("--timesteps", nargs="+", type=int, default=[32, 64, 128])
    p.add_argument("--ann-only", action="store_true", help="only the ANN's ties")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.members or [n for n in zoo.available() if zoo.cache_path(n).is_file()]:
        r = measure(name, args.test_samples, tuple(args.timesteps), args.ann_only)
        on_tied = "-" if r["ann_acc_on_tied"] is None else f"{r['ann_acc_on_tied']:.1f}"
        print(f"{name:20s} ANN {r['ann_acc']:.2f}% on {r['test_samples']} images; outputs tied on "
              f"{r['tied_share']:.1f}% (ANN right on {on_tied}% of those)", flush=True)
        for label, losses in r["loss"].items():
            cells = "  ".join(f"T={t}: {v['all']:+.2f} / {v['untied']:+.2f}" for t, v in losses.items())
            print(f"    {label:26s} loss all / untied images: {cells}", flush=True)


if __name__ == "__main__":
    main()
