"""The seed paper's networks as ANNs: torchvision's architectures, or stand-ins with its shapes.

Xu et al., "Scaling for edge inference of deep neural networks", Nature Electronics 1:216
(2018), doi:10.1038/s41928-018-0059-3, set AlexNet, VGG-16, GoogLeNet, ResNet-50 and
MobileNet against edge hardware. :func:`build_seed_model` builds each at any input size with
random weights (nothing is downloaded): torchvision's model (``weights=None``) when
torchvision is installed, else a stand-in written here with torchvision's module paths,
layer shapes, strides, paddings, pools and weight initialisation, drawn in torchvision's
order: with the same seed its state dict equals torchvision's model's, key for key and value
for value, so results do not depend on which one was built (``tests/test_seed_report.py``
checks this where torchvision is installed).

BatchNorm statistics come from a few train-mode passes over random images (each layer's
running mean and variance the average over the passes), then the model is put in eval mode,
as a network with measured statistics would be.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_choice, check_positive_int

#: The five networks, by torchvision's names.
SEED_NETWORKS = ("alexnet", "vgg16", "googlenet", "resnet50", "mobilenet_v2")
#: How each is written in tables and plots.
DISPLAY_NAMES = {"alexnet": "AlexNet", "vgg16": "VGG-16", "googlenet": "GoogLeNet",
                 "resnet50": "ResNet-50", "mobilenet_v2": "MobileNetV2"}
SOURCES = ("auto", "torchvision", "snnedge")
TORCHVISION = "torchvision"
STAND_IN = "snnedge stand-in"


@dataclass(frozen=True)
class SeedModel:
    """One built network: ``model`` (eval mode), which builder made it (``source``:
    ``"torchvision"`` or ``"snnedge stand-in"``) and one sample's ``input_shape``."""

    name: str
    model: nn.Module
    source: str
    input_shape: tuple[int, int, int]

    @property
    def display_name(self) -> str:
        return DISPLAY_NAMES.get(self.name, self.name)


def has_torchvision() -> bool:
    """Whether torchvision can be imported here (checked without importing it)."""
    return importlib.util.find_spec("torchvision") is not None


def build_seed_model(name: str, size: int = 224, source: str = "auto", num_classes: int = 1000,
                     seed: int = 0, bn_passes: int = 3, bn_batch: int = 4) -> SeedModel:
    """One of :data:`SEED_NETWORKS` with random weights (seeded), BatchNorm statistics from
    ``bn_passes`` train-mode passes of ``bn_batch`` random images (standard normal, as
    normalised images are), in eval mode.

    ``source``: ``"torchvision"`` (``torchvision.models.get_model(name, weights=None)``),
    ``"snnedge"`` (the stand-in of this module) or ``"auto"`` (torchvision when installed).
    GoogLeNet is built without its auxiliary classifiers (they only serve training).
    """
    check_positive_int(size, param="size", where="build_seed_model")
    if name == "alexnet" and size < 63:
        raise ValueError(f"AlexNet needs inputs of at least 63 px (a stride-4 stem and three "
                         f"overlapping 3x3 pools). Got size={size}; pass size=64 or more.")
    torch.manual_seed(seed)
    model, used = architecture(name, source, num_classes)
    set_batchnorm_statistics(model, (3, size, size), bn_passes, bn_batch, seed)
    return SeedModel(name, model.eval(), used, (3, size, size))


def architecture(name: str, source: str = "auto", num_classes: int = 1000) -> tuple[nn.Module, str]:
    """``(model, source used)``: the bare architecture, weights drawn from torch's global
    generator as its builder draws them, in train mode (build it under ``torch.device("meta")``
    to count its operations without memory). :func:`build_seed_model` seeds it and sets its
    BatchNorm statistics."""
    check_choice(name, SEED_NETWORKS, param="name", where="build_seed_model")
    check_choice(source, SOURCES, param="source", where="build_seed_model")
    check_positive_int(num_classes, param="num_classes", where="build_seed_model")
    if source == "torchvision" and not has_torchvision():
        raise ValueError("build_seed_model(source='torchvision') needs torchvision, which is not "
                         "installed; install it, or pass source='snnedge' (stand-ins with "
                         "torchvision's shapes) or source='auto'.")
    if source == "torchvision" or (source == "auto" and has_torchvision()):
        import torchvision

        kw = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kw)
        return model, TORCHVISION
    return STAND_INS[name](num_classes), STAND_IN


@torch.no_grad()
def set_batchnorm_statistics(model: nn.Module, input_shape: tuple[int, ...], passes: int = 3,
                             batch: int = 4, seed: int = 0) -> None:
    """Set every BatchNorm layer's running statistics to their average over ``passes``
    train-mode passes of ``batch`` standard-normal inputs (momentum ``None``: a cumulative
    average, restored afterwards); a model without BatchNorm is left as it is."""
    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    norms = [m for m in model.modules() if isinstance(m, kinds)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(passes):
        model(torch.randn(batch, *input_shape, generator=gen))
    model.eval()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


# ---------------------------------------------------------------------------------------
# stand-ins: torchvision's module paths, shapes and initialisation
# ---------------------------------------------------------------------------------------
class AlexNet(nn.Module):
    """Krizhevsky et al. 2012, torchvision's single-tower variant (64-192-384-256-256)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    """Simonyan & Zisserman 2015, configuration D (VGG-16, no BatchNorm)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, c = [], 3
        for v in VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(4096, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 1e-3), ReLU."""

    def __init__(self, cin: int, cout: int, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four branches concatenated: 1x1; 1x1-3x3; 1x1-3x3 (torchvision's "5x5" branch is
    3x3, vision issue 906); 3x3 max pool-1x1."""

    def __init__(self, cin: int, ch1: int, ch3r: int, ch3: int, ch5r: int, ch5: int, proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(cin, ch1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, ch3r, kernel_size=1),
                                     BasicConv2d(ch3r, ch3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, ch5r, kernel_size=1),
                                     BasicConv2d(ch5r, ch5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


GOOGLENET = {"3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
             "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
             "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
             "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
             "5b": (832, 384, 192, 384, 48, 128, 128)}


class GoogLeNet(nn.Module):
    """Szegedy et al. 2015 as torchvision builds it, without the auxiliary classifiers."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for key, args in GOOGLENET.items():
            setattr(self, f"inception{key}", Inception(*args))
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for key in ("4a", "4b", "4c", "4d", "4e"):
            x = getattr(self, f"inception{key}")(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1, 3x3 (the stride), 1x1 x4 channels; one ReLU module."""

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class ResNet50(nn.Module):
    """He et al. 2016, 50 layers, torchvision's v1.5 layout."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                     (512, 3, 2)), start=1):
            down = nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride=stride, bias=False),
                                 nn.BatchNorm2d(4 * width))
            layers = [Bottleneck(cin, width, stride, down)]
            layers += [Bottleneck(4 * width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layers))
            cin = 4 * width
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1
                  ) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` with BatchNorm and ReLU6."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups,
                                   bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """Expand 1x1 (unless t = 1), depthwise 3x3, project 1x1; a skip where shapes agree."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers = [conv_bn_relu6(cin, hidden, 1)] if expand != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))  # (expansion t, channels c, blocks n, stride s)


class MobileNetV2(nn.Module):
    """Sandler et al. 2018, width 1.0."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, cin = [conv_bn_relu6(3, 32, 3, 2)], 32
        for t, c, n, s in MOBILENET_V2:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn_relu6(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


#: Stand-in builders by name, each ``(num_classes) -> nn.Module``.
STAND_INS = {"alexnet": AlexNet, "vgg16": VGG, "googlenet": GoogLeNet, "resnet50": ResNet50,
             "mobilenet_v2": MobileNetV2}
