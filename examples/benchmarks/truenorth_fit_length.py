"""How long to fine-tune for TrueNorth: chosen on training digits, no test image read.

``hardware_accuracy.py`` fine-tunes the converted ``truenorth_cnn`` with
``fit(..., hardware="truenorth")`` on the 5,000 training digits. Its length (``FIT["epochs"]``)
is chosen here: fine-tune a copy on every training digit but 1,000 (those right after the
calibration sample in the benchmark's permutation), for each number of epochs, and measure
the float network and the chip (``to_hardware(net, "truenorth")``) on the 1,000 left out,
T = 32. The ANN saw those digits in training, so only the chip's change against the float
SNN counts.

Usage::

    python examples/benchmarks/truenorth_fit_length.py 3 6 10
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parents[1]), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import hardware_accuracy as ha  # noqa: E402
import snnedge  # noqa: E402
from converters import convert  # noqa: E402
from neuromorphic_targets import to_hardware  # noqa: E402
from snnedge.datasets import load_mnist_digits  # noqa: E402

LEFT_OUT = 1000


def main(argv=None) -> None:
    epochs = [int(a) for a in (sys.argv[1:] if argv is None else argv)] or [3, 6, 10]
    torch.set_num_threads(1)
    x, y = load_mnist_digits()
    order = ha.training_order(len(x))
    n_cal = ha.CALIBRATION_SAMPLES
    val = order[n_cal:n_cal + LEFT_OUT]
    train = torch.cat([order[:n_cal], order[n_cal + LEFT_OUT:]])
    snn = convert(ha.trained("truenorth_cnn"), x[order[:n_cal]])
    f = ha.accuracy(snn, x[val], y[val])
    print(f"truenorth_cnn, {len(val)} left-out training digits, T = {ha.TIMESTEPS}: float SNN {f:.2f} %, "
          f"TrueNorth after conversion {ha.accuracy(to_hardware(snn, 'truenorth'), x[val], y[val]):.2f} %",
          flush=True)
    for e in epochs:
        net = copy.deepcopy(snn)
        snnedge.fit(net, (x[train], y[train]), hardware="truenorth", progress=False,
                    **{**ha.FIT, "epochs": e})
        chip = ha.accuracy(to_hardware(net, "truenorth"), x[val], y[val])
        print(f"  fit {e:2d} epochs: float {ha.accuracy(net, x[val], y[val]):.2f} %, TrueNorth "
              f"{chip:.2f} % ({chip - f:+.2f} against the float SNN)", flush=True)


if __name__ == "__main__":
    main()
