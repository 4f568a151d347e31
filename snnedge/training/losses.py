"""Losses of :func:`snnedge.fit`: functions of the readout at every step, ``(T, B, C)``.

``"ce"``, cross-entropy on the mean readout (the accumulated readout of
:func:`snnedge.simulate` divided by ``T``); ``"count_ce"``, cross-entropy on the output
layer's spike counts; ``"count_mse"``, mean squared error between spike counts and targets of
``0.8 T`` (correct class) and ``0.2 T`` (others), after snnTorch's ``mse_count_loss``
(Eshraghian et al., Proc. IEEE 111:1016, 2023, doi:10.1109/JPROC.2023.3308088).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import check_choice, check_real
from ..network import SpikingNetwork

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ce_loss(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the mean readout over the steps."""
    return F.cross_entropy(outputs.mean(0), y)


def count_ce_loss(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the summed readout (spike counts of a spiking output layer)."""
    return F.cross_entropy(outputs.sum(0), y)


def count_mse_loss(correct_rate: float = 0.8, incorrect_rate: float = 0.2) -> LossFn:
    """MSE between spike counts and ``rate * T`` targets (``correct_rate`` for the label)."""
    check_real(correct_rate, param="correct_rate", where="count_mse_loss", low=0, high=1)
    check_real(incorrect_rate, param="incorrect_rate", where="count_mse_loss", low=0, high=1)

    def loss(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        steps = outputs.shape[0]
        target = torch.full_like(outputs[0], incorrect_rate * steps)
        target.scatter_(1, y.view(-1, 1), correct_rate * steps)
        return F.mse_loss(outputs.sum(0), target)
    return loss


LOSSES: dict[str, LossFn] = {"ce": ce_loss, "count_ce": count_ce_loss, "count_mse": count_mse_loss()}


def loss_function(loss: str | LossFn, net: SpikingNetwork, where: str) -> LossFn:
    """The loss named ``loss`` (or ``loss`` itself when callable), checked against ``net``:
    the count losses need an output layer that spikes."""
    if callable(loss):
        return loss
    check_choice(loss, LOSSES, param="loss", where=where)
    if loss.startswith("count_"):
        out = net.output_name
        if not (net.kind(out) == "temporal" and net.layer(out).emits_spikes):
            raise ValueError(f"The {loss!r} loss of {where} needs spike counts, but the output layer "
                             f"{out!r} ({type(net.layer(out)).__name__}) does not spike. End the "
                             f"network with a neuron layer (e.g. snnedge.LIF) or use loss='ce'.")
    return LOSSES[loss]
