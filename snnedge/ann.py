"""Training and evaluating the conventional networks that get converted.

A small, seeded trainer for image classifiers (Adam, cross-entropy, cosine learning-rate
decay, random pixel shifts), used by ``snnedge demo``, the benchmarks and the notebooks. It
builds on the helpers of the spiking trainer, :mod:`snnedge.training`: the same optimizer and
cosine schedule (:mod:`snnedge.training.optim`) and the same augmentation
(:func:`snnedge.training.random_shift`).
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .errors import check_positive_int
from .training.data import random_shift
from .training.optim import cosine_schedule, make_optimizer


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` in eval mode; its train/eval mode is restored."""
    was_training = model.training
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    model.train(was_training)
    return correct / len(x)


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 10,
                     lr: float = 2e-3, batch_size: int = 128, seed: int = 0,
                     x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                     progress: bool = True, max_shift: int = 2) -> dict[str, list[float]]:
    """Train ``model`` in place with Adam and cross-entropy (cosine decay from ``lr`` to 0).

    Each batch is shifted by up to ``max_shift`` pixels (0 turns augmentation off). Shuffles
    and shifts come from a generator seeded with ``seed``. Returns ``{"loss", "train_acc",
    "val_acc", "seconds"}`` with one value per epoch; the model is left in eval mode.
    """
    check_positive_int(epochs, param="epochs", where="train_classifier")
    if len(x) != len(y):
        raise ValueError(f"train_classifier got {len(x)} samples but {len(y)} labels.")
    gen = torch.Generator().manual_seed(seed)
    opt = make_optimizer(None, model.parameters(), lr, where="train_classifier")
    sched = cosine_schedule(opt, epochs * math.ceil(len(x) / batch_size))
    shift = random_shift(max_shift) if max_shift > 0 else None
    history: dict[str, list[float]] = {"loss": [], "train_acc": [], "val_acc": [], "seconds": []}
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        total_loss, correct = 0.0, 0
        batches = torch.randperm(len(x), generator=gen).split(batch_size)
        for idx in tqdm(batches, desc=f"train epoch {epoch + 1}/{epochs}", leave=False,
                        disable=not progress):
            xb, yb = x[idx], y[idx]
            if shift is not None:
                xb = shift(xb, gen)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        history["loss"].append(total_loss / len(x))
        history["train_acc"].append(correct / len(x))
        if x_val is not None and y_val is not None:
            history["val_acc"].append(evaluate(model, x_val, y_val))
        history["seconds"].append(time.perf_counter() - start)
    model.eval()
    return history
