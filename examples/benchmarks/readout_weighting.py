"""How a converted network's readout should weight its steps: the transient, the candidates,
and the choice ``convert`` makes (``snnedge.readout``, ``converters.readout``).

For each zoo member: ``convert(ann, calib)`` with its defaults (1,000 random training digits),
one simulation of 128 steps on the first N test images that keeps each step's readout
(``keep_readout=True``), then, from those readouts alone (the weighting changes no spike):

* the transient: the loss against the ANN of the readout summed over each window of 8 steps;
* the candidate weightings: loss after T = 8 .. 128 steps for the plain sum, step t weighted
  by ``(t / T) ** p`` for p = 1, 2, 3, 4, 8, and the last half / quarter of the steps only;
* the exponent ``convert`` chose (on the calibration digits) and its losses;
* per row of issue 15's goals, the worst loss over the networks measured, per weighting.

Usage (torchvision's members need the peers' environment)::

    PYTHONPATH=$PWD python examples/benchmarks/readout_weighting.py lenet_w8 resnet_deep \\
        tv_mobilenet_v2 --test-samples 1000 --out /tmp/readout.md
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import conversion_zoo as cz  # this folder's; it puts the repository root on sys.path
import zoo
import snnedge
from converters import convert

TIMESTEPS = (8, 16, 32, 64, 128)
WINDOW = 8


def schemes() -> dict:
    """Weight of step t (1..T) of T, per candidate weighting."""
    out = {"plain sum": lambda t, T: torch.ones_like(t)}
    for p in (1, 2, 3, 4, 8):
        out[f"(t/T)^{p}"] = (lambda p: lambda t, T: (t / T) ** p)(p)
    out["last half"] = lambda t, T: (t > T / 2).double()
    out["last quarter"] = lambda t, T: (t > 3 * T / 4).double()
    return out


def losses(readout: torch.Tensor, y: torch.Tensor, ann_acc: float, weight) -> list[float]:
    """Loss in points after each T of TIMESTEPS for the readout ``(T_max, N, C)`` summed with
    ``weight(t, T)``."""
    out = []
    for T in TIMESTEPS:
        t = torch.arange(1, T + 1, dtype=torch.float64)
        s = (weight(t, T).view(-1, 1, 1) * readout[:T]).sum(0)
        out.append(100 * (ann_acc - float((s.argmax(1) == y).double().mean())))
    return out


def measure(name: str, n_test: int) -> dict:
    member = zoo.MEMBERS[name]
    calib, x, y = cz.data(member, cz.CALIBRATION_SAMPLES, n_test)
    ann = zoo.trained(name).eval()
    ann_acc = float(snnedge.ann.evaluate(ann, x, y))
    snn = convert(ann, calib)
    res = snnedge.simulate(snn, x, timesteps=max(TIMESTEPS), batch_size=500, progress=False,
                           keep_readout=True)
    o = res.readout.double()
    windows = [100 * (ann_acc - float((o[s:s + WINDOW].sum(0).argmax(1) == y).double().mean()))
               for s in range(0, o.shape[0], WINDOW)]
    p = snn.readout_exponent
    table = {k: losses(o, y, ann_acc, w) for k, w in schemes().items()}
    table["chosen"] = losses(o, y, ann_acc, lambda t, T: (t / T) ** p)
    return {"group": cz.group_of(name), "n_test": len(y), "ann": ann_acc, "exponent": p,
            "windows": windows, "losses": table}


def markdown(results: dict) -> str:
    lines = ["Loss of the readout summed over each window of 8 steps (points against the ANN):", "",
             "| network | test images | " + " | ".join(
                 f"{s + 1}-{s + WINDOW}" for s in range(0, max(TIMESTEPS), WINDOW)) + " |",
             "|" + " --- |" * (2 + max(TIMESTEPS) // WINDOW)]
    for n, r in results.items():
        lines.append(f"| {n} | {r['n_test']:,} | " + " | ".join(f"{v:.1f}" for v in r["windows"]) + " |")
    lines += ["", "Loss after T = " + " / ".join(map(str, TIMESTEPS)) + " steps per weighting "
              "('chosen': the exponent `convert` chose on the calibration digits):", "",
              "| network | group | chosen p | " + " | ".join(schemes()) + " | chosen |",
              "|" + " --- |" * (4 + len(schemes()))]
    for n, r in results.items():
        cells = [" / ".join(f"{v:.2f}" for v in r["losses"][k]) for k in [*schemes(), "chosen"]]
        lines.append(f"| {n} | {r['group']} | {r['exponent']:g} | " + " | ".join(cells) + " |")
    lines += ["", "Worst loss per row of goals (issue 15) and weighting:", "",
              "| goal | limit | " + " | ".join([*schemes(), "chosen"]) + " |",
              "|" + " --- |" * (3 + len(schemes()))]
    for group, goals in cz.GOALS.items():
        for T, limit in goals.items():
            members = [n for n, r in results.items() if r["group"] == group]
            if not members:
                continue
            cells = []
            for k in [*schemes(), "chosen"]:
                v, n = max((results[m]["losses"][k][TIMESTEPS.index(T)], m) for m in members)
                cells.append(f"{v:.2f} ({n})")
            lines.append(f"| {group}, T={T} | {limit} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("members", nargs="+")
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the tables here (markdown)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    for name in args.members:
        results[name] = measure(name, args.test_samples)
        r = results[name]
        print(f"{name}: p={r['exponent']:g}, plain " + " / ".join(f"{v:.2f}" for v in r["losses"]["plain sum"])
              + ", chosen " + " / ".join(f"{v:.2f}" for v in r["losses"]["chosen"]), flush=True)
    text = markdown(results)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
