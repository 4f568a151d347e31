"""Training and evaluating the conventional networks that get converted.

A small, seeded trainer for image classifiers (Adam, cross-entropy, cosine learning-rate
decay, random pixel shifts), used by ``snnedge demo``, the benchmarks and the notebooks.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .errors import check_positive_int


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image ``[B, C, H, W]`` by up to ``max_shift`` pixels per axis, zero-filled."""
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    batch = torch.arange(b)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


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
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    history: dict[str, list[float]] = {"loss": [], "train_acc": [], "val_acc": [], "seconds": []}
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        total_loss, correct = 0.0, 0
        batches = torch.randperm(len(x), generator=gen).split(batch_size)
        for idx in tqdm(batches, desc=f"train epoch {epoch + 1}/{epochs}", leave=False,
                        disable=not progress):
            xb, yb = x[idx], y[idx]
            if max_shift > 0:
                xb = random_shift(xb, max_shift, gen)
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
