"""The optimizer and the learning-rate schedule, shared by both trainers (:func:`snnedge.fit`
and :func:`snnedge.ann.train_classifier`)."""
from __future__ import annotations

from collections.abc import Iterable

import torch


def make_optimizer(optimizer, params: Iterable[torch.nn.Parameter], lr: float,
                   where: str = "fit") -> torch.optim.Optimizer:
    """Adam with learning rate ``lr`` when ``optimizer`` is None; an ``Optimizer`` class built
    over ``params`` with ``lr``; an ``Optimizer`` instance as it is. Anything else is a
    ``TypeError`` naming the ``optimizer`` parameter of ``where``."""
    if optimizer is None:
        return torch.optim.Adam(params, lr=lr)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer(params, lr=lr)
    raise TypeError(f"The 'optimizer' parameter of {where} must be None (Adam), a "
                    f"torch.optim.Optimizer instance or class. Got {type(optimizer).__name__}.")


def cosine_schedule(optimizer: torch.optim.Optimizer,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Learning rates that decay from their initial values to 0 along a half cosine over
    ``total_steps`` calls of ``step()`` (Loshchilov & Hutter, ICLR 2017, arXiv:1608.03983)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
