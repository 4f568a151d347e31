"""Calibrations and a small network for the tests of engine "auto"'s path choice
(test_path_calibration.py, test_layer_calibration.py)."""
import torch
from torch import nn

import snnedge
from snnedge import path_calibration as pc


def calibration(factors=None, threads=None, layers=None) -> pc.Calibration:
    """A calibration of these class factors (default 1: the rule's limits), each probe's
    break-even its class's factor times its rule (so that the classes of BY_INPUT_CHANNELS
    and BY_SHAPE give the class's factor too); ``layers``: its layers' own break-evens (None:
    it measures none)."""
    factors = factors or {c: 1.0 for c in pc.PROBES}
    points = {name: factors[cls] * rule for cls in pc.PROBES for name, _, rule in pc._probe_rules(cls)}
    return pc.Calibration(pc.machine(threads), factors, points,
                          {n: [[1.0] * len(pc.DENSITIES)] for n in points}, rows=[32], layers=layers)


def narrow_net():
    """Conv 1 -> 16, IF, Conv 16 -> 16 (a narrow layer fed by spikes), IF, Linear; 4 inputs."""
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(1, 16, 3, padding=1), snnedge.IF(threshold=0.5),
                             nn.Conv2d(16, 16, 3, padding=1), snnedge.IF(), nn.Flatten(),
                             nn.Linear(16 * 8 * 8, 10), input_shape=(1, 8, 8))
    return net, torch.rand(4, 1, 8, 8)
