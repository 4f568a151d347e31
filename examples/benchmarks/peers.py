"""Adapters for the peer libraries that the benchmarks compare snnedge against.

Each peer is imported inside the function that uses it, so this module imports without
them; a missing peer raises ``ImportError`` that names ``install_peers.sh`` (next to this
file), which installs them without replacing the project's torch.

SpikingJelly 2.0.0 rate-coding conversion (``spikingjelly.activation_based.ann2snn``):

* ``Converter`` is ``FXConverter(recipe, device=None)``; ``.convert(ann)`` FX-traces the ANN
  (in eval mode) and runs the recipe. ``RateCodingRecipe(dataloader, mode="Max",
  momentum=0.1, fuse_flag=True, channel_wise=False, ...)`` fuses Conv+BN, records a scale
  after every ``nn.ReLU`` module (exact type; ``F.relu`` is not matched) over the
  calibration batches, then replaces each ReLU with ``VoltageScaler(1/scale) ->
  IFNode(v_threshold=1, v_reset=None) -> VoltageScaler(scale)`` (soft reset).
* ``mode``: ``"Max"``, a percentile string such as ``"99.9%"`` (``torch.quantile`` over the
  whole batch's activations), or a float in (0, 1] times the batch max. The per-batch
  values are combined by an exponential moving average (``momentum``), so the first batch
  sets the scale and later batches move it by 10 % each.
* Pooling layers stay where they are in the graph, as single-step ``layer.MaxPool2d`` /
  ``layer.AvgPool2d`` copies, so in the usual Conv-ReLU-Pool order they act on the scaled
  spikes after the neuron. Only ``channel_wise=True, pre_spike_maxpool=True`` moves a
  max pool before the neuron.
* The converted net is single-step (``step_mode="s"``): one call is one time step with the
  analog image as input current, and the last Linear's output is summed over the steps.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

INSTALL_HINT = ("install the peer libraries with examples/benchmarks/install_peers.sh "
                "(PIP=/path/to/venv/bin/pip bash examples/benchmarks/install_peers.sh); "
                "it keeps the installed torch")


def _spikingjelly():
    """``(ann2snn, functional)`` from SpikingJelly, or ImportError naming install_peers.sh."""
    try:
        from spikingjelly.activation_based import ann2snn, functional
    except ImportError as err:
        raise ImportError(f"SpikingJelly 2.0.0 is needed here ({err}); {INSTALL_HINT}.") from err
    return ann2snn, functional


def spikingjelly_convert(ann: nn.Module, calib_x: torch.Tensor, mode: str | float = "99.9%",
                         batch_size: int = 100, progress: bool = False,
                         **recipe_kwargs) -> nn.Module:
    """Convert ``ann`` with SpikingJelly's ``RateCodingRecipe``, calibrated on ``calib_x``.

    ``calib_x`` is split into batches of ``batch_size`` (the scale is a moving average over
    batches, so the batch size matters). ``recipe_kwargs`` go to ``RateCodingRecipe``
    (``momentum``, ``fuse_flag``, ``channel_wise``, ...). ``ann`` is not changed: a deep
    copy is converted. ``progress=False`` hides the recipe's tqdm bar. Returns the
    converted ``torch.fx.GraphModule`` in eval mode, on ``calib_x``'s device.
    """
    ann2snn, _ = _spikingjelly()
    model = copy.deepcopy(ann).to(calib_x.device).eval()
    # Batches shaped like a labelled dataloader's; the recipe only reads the inputs.
    labels = torch.zeros(len(calib_x), dtype=torch.long, device=calib_x.device)
    calib = list(zip(calib_x.split(batch_size), labels.split(batch_size)))
    recipe = ann2snn.RateCodingRecipe(dataloader=calib, mode=mode, **recipe_kwargs)
    converter = ann2snn.Converter(recipe, device=calib_x.device)
    if progress:
        return converter.convert(model).eval()
    from spikingjelly.activation_based.ann2snn.recipes import rate_coding
    bar = rate_coding.tqdm
    rate_coding.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        return converter.convert(model).eval()
    finally:
        rate_coding.tqdm = bar


@torch.no_grad()
def spikingjelly_simulate_checkpoints(snn: nn.Module, x: torch.Tensor,
                                      checkpoints: Sequence[int],
                                      batch_size: int = 100) -> dict[int, torch.Tensor]:
    """Run ``snn`` for ``max(checkpoints)`` steps in one pass; ``{T: outputs summed over the
    first T steps}`` for each T in ``checkpoints``, each ``[N, classes]``.

    The net is reset with ``functional.reset_net`` before every batch and after the last;
    each step feeds the same ``x`` batch (constant-current input).
    """
    _, functional = _spikingjelly()
    steps = sorted({int(t) for t in checkpoints})
    if not steps or steps[0] < 1:
        raise ValueError(f"checkpoints must be positive step counts, got {list(checkpoints)}")
    snn.eval()
    chunks: dict[int, list[torch.Tensor]] = {t: [] for t in steps}
    for xb in x.split(batch_size):
        functional.reset_net(snn)
        total = None
        for t in range(1, steps[-1] + 1):
            out = snn(xb)
            total = out.clone() if total is None else total.add_(out)
            if t in chunks:
                chunks[t].append(total.clone())
    functional.reset_net(snn)
    return {t: torch.cat(parts) for t, parts in chunks.items()}


def spikingjelly_simulate(snn: nn.Module, x: torch.Tensor, timesteps: int,
                          batch_size: int = 100) -> torch.Tensor:
    """``snn``'s outputs summed over ``timesteps`` steps, ``[N, classes]`` (argmax = class)."""
    return spikingjelly_simulate_checkpoints(snn, x, [timesteps], batch_size)[int(timesteps)]


def spikingjelly_accuracy(snn: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          checkpoints: Sequence[int] = (8, 16, 32, 64, 128),
                          batch_size: int = 100) -> dict[int, float]:
    """Top-1 accuracy after each number of steps in ``checkpoints``, from one simulation."""
    outputs = spikingjelly_simulate_checkpoints(snn, x, checkpoints, batch_size)
    y = y.to(x.device)
    return {t: (out.argmax(1) == y).float().mean().item() for t, out in outputs.items()}
