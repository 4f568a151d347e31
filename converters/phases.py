r"""Where the neurons fed by the input start: all at one membrane, or at ordered phases.

Under direct encoding a layer fed only by the input (the first convolution) receives the same
current at every step, and its neurons all start at ``v_init`` (theta/2). Neurons with equal
currents therefore fire in step, and a digit's saturated strokes give many of them equal
currents: the layers behind receive those spikes in bursts, and a shallow residual network
reads wrong for whole windows of steps (the zoo's resnet8_f loses 1.7 points at T = 32, its
readout off by 41 points over steps 17-24; RESULTS.md, "Readout weighted over time").

``"ordered"`` starts each such neuron at ``v_init + u``, where ``u`` comes from the 4 x 4
ordered-dither (Bayer) matrix tiled over the feature map, the tile shifted one row per channel
and one column per four channels. Every 4 x 4 window of a channel and every 16 consecutive
channels at one position hold the 16 offsets ``(k + 1/2) / 16 - 1/2`` once each (mean 0), so
neighbours that receive equal currents fire at spread steps. The spread has a price: a
neuron's count after ``T`` steps is then within one spike of ``T a / lambda`` instead of half a
spike, and networks that amplify each neuron's error (MobileNetV2) lose more from it than they
gain. So ``convert`` chooses per network on the calibration data (``phases="auto"``): it
builds and calibrates both networks and keeps the one whose readout is closer to the ANN's
output (the error of :mod:`converters.readout`). On the zoo (RESULTS.md, "Phases of the
first layer") it chose ``"ordered"`` for 8 of the 24 members; resnet8_f then loses 0.18 / 0.18 /
0.10 points at T = 16 / 32 / 64 on the 10,000 test digits (aligned: 0.41 / 1.54 / 0.37).
Random offsets (uniform, seeded) were tried first: they spread the bursts as well, but on
resnet8_f (2,000 test digits, plain readout) they lose 0.20 points at T = 64, the ordered
offsets 0.10 and aligned phases 0.05.

Only layers with a feature map (``(C, H, W)`` per sample) get offsets; a linear first layer
has no neighbourhood to spread over and keeps ``v_init``.
"""
from __future__ import annotations

import torch

from .ir import NEURON_KINDS, Graph, after_neurons

PHASES = ("auto", "aligned", "ordered")
# "auto" builds and calibrates both candidates only where the simulated steps of both (the
# membrane calibration's and the readout choice's, sample-steps) fit in PHASE_PASSES ANN passes
# over the calibration samples: with 1,000 samples at T_c = 16 they take 12.3; with 64
# ImageNet images they would take 16 on top of the statistics, past issue 17's budget of 20
# passes for all of convert, so there "auto" keeps one network, aligned.
PHASE_PASSES = 13

# Bayer's 4 x 4 ordered-dither matrix (Bayer, IEEE ICC 1973): each entry's rank 0..15, placed
# so that every 2 x 2 sub-block and every row and column spreads the ranks evenly.
BAYER_4 = torch.tensor([[0, 8, 2, 10],
                        [12, 4, 14, 6],
                        [3, 11, 1, 9],
                        [15, 7, 13, 5]], dtype=torch.float64)


def ordered_offsets(shape: tuple[int, ...]) -> torch.Tensor | None:
    """The initial-membrane offsets ``u`` (fractions of the threshold, in ``(-1/2, 1/2)``) of
    a layer whose per-sample shape is ``shape``; ``None`` where it is not ``(C, H, W)``."""
    if len(shape) != 3:
        return None
    c, h, w = shape
    ch = torch.arange(c).view(c, 1, 1)
    rows = (torch.arange(h).view(1, h, 1) + ch) % 4
    cols = (torch.arange(w).view(1, 1, w) + ch // 4) % 4
    return (BAYER_4[rows, cols] + 0.5) / 16 - 0.5


def spread_layers(graph: Graph) -> list[str]:
    """The neuron ops of ``graph`` fed by the input alone (no neuron op upstream) whose
    values have a feature map: those that ``"ordered"`` starts at spread phases."""
    after = after_neurons(graph)
    return [op.name for op in graph.ops if op.kind in NEURON_KINDS
            and not any(after[i] for i in op.inputs) and ordered_offsets(tuple(op.shape)) is not None]
