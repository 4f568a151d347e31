"""torchvision's classification models (issue 15's deep architectures, issue 17's list).

Every model built from ReLU / ReLU6 converts; every other one raises UnsupportedLayerError
naming its first unsupported module. Weights are random (nothing is downloaded); BatchNorm
statistics come from a few train-mode passes. The default run checks a fast subset at
32-64 px, digits copied to 3 channels; ``-m slow`` converts the whole list at its native
resolution (224 px, 299 for inception_v3). The module skips without torchvision (the
default environment has none; CI's second job installs it).
"""
import pytest
import torch
import torch.nn.functional as F

import snnedge
from converters import UnsupportedLayerError, convert
from snnedge.datasets import load_mnist_test

tv = pytest.importorskip("torchvision")

RELU_FAMILY = [
    "alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
    "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "googlenet",
    "inception_v3", "mobilenet_v2", "squeezenet1_0", "squeezenet1_1", "densenet121",
    "densenet161", "densenet169", "densenet201", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0",
    "mnasnet1_3", "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf",
    "regnet_x_8gf", "regnet_x_16gf", "regnet_x_32gf"]

# The first module each family cannot convert (path, type), in forward order.
UNSUPPORTED = {
    "efficientnet_b0": ("features.0.2", "SiLU"), "efficientnet_v2_s": ("features.0.2", "SiLU"),
    "mobilenet_v3_small": ("features.0.2", "Hardswish"),
    "mobilenet_v3_large": ("features.0.2", "Hardswish"),
    "convnext_tiny": ("features.0.1", "LayerNorm2d"), "swin_t": ("features.0.1", "Permute"),
    "swin_v2_t": ("features.0.1", "Permute"),
    "vit_b_16": ("permute", "Tensor.permute"),  # VisionTransformer.forward: patches to tokens
    "maxvit_t": ("stem.0.2", "GELU"),
    "regnet_y_400mf": ("trunk_output.block1.block1-0.f.se", "SqueezeExcitation"),
}

# Smallest convenient input per model in the fast run (AlexNet's stride-4 stem and three
# overlapping pools need 63 px or more, Inception-v3 75 px).
SMALL = {"alexnet": 64, "inception_v3": 80}
FAST = ["resnet18", "googlenet", "mobilenet_v2", "shufflenet_v2_x0_5", "squeezenet1_1",
        "alexnet", "mnasnet0_5", "regnet_x_400mf", "densenet121"]
NATIVE = {"inception_v3": 299}


def build(name: str, x_bn: torch.Tensor) -> torch.nn.Module:
    """The model with random weights (seeded), BatchNorm statistics from train-mode passes
    over ``x_bn``, in eval mode."""
    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    model = tv.models.get_model(name, weights=None, num_classes=10, **kw)
    model.train()
    with torch.no_grad():
        for part in x_bn.split(8):
            model(part)
    return model.eval()


def digits(n: int, size: int) -> torch.Tensor:
    """``n`` MNIST test digits resized to ``size`` px and copied to 3 channels."""
    x, _ = load_mnist_test()
    x = F.interpolate(x[:n], size=(size, size), mode="bilinear", align_corners=False)
    return x.repeat(1, 3, 1, 1)


def check_converts(name: str, size: int, calibration: int = 8, timesteps: int = 4):
    x = digits(calibration + 1, size)
    ann = build(name, x[:calibration])
    snn = convert(ann, x[:calibration], calibrate_membrane=False)
    assert snn.shapes((3, size, size))[snn.output_name] == (10,)
    res = snnedge.simulate(snn, x[-1:], timesteps=timesteps)
    assert res.output.shape == (1, 10) and torch.isfinite(res.output).all()
    assert sum(res.spike_counts.values()) > 0
    return ann, snn


@pytest.mark.parametrize("name", FAST)
def test_relu_models_convert_at_small_size(name):
    check_converts(name, SMALL.get(name, 32))


# Agreement of SNN and ANN predictions at T = 64 (random weights: the ANN predicts only one to
# four classes on these digits, so agreement says little about accuracy; issue 15's zoo of
# trained networks measures that). Measured on 32 digits, 32 calibration samples, 32 px
# unless noted: resnet18 0.97, googlenet 1.00, mobilenet_v2 1.00, shufflenet_v2_x0_5 1.00,
# squeezenet1_1 0.91, alexnet (64 px) 1.00, mnasnet0_5 1.00, regnet_x_400mf 1.00,
# densenet121 0.72 (the ANN spread over 4 classes), vgg11_bn 1.00, inception_v3 (80 px)
# 1.00. The tests ask for most of a batch of 16.
AGREEMENT_FAST = ["resnet18", "mobilenet_v2", "shufflenet_v2_x0_5"]


def agreement(name: str, size: int, n: int = 16, timesteps: int = 64) -> float:
    x = digits(32 + n, size)
    ann = build(name, x[:32])
    snn = convert(ann, x[:32], calibrate_membrane=False)
    res = snnedge.simulate(snn, x[32:], timesteps=timesteps)
    with torch.no_grad():
        expected = ann(x[32:]).argmax(1)
    return float((res.predictions == expected).float().mean())


@pytest.mark.parametrize("name", AGREEMENT_FAST)
def test_snn_agrees_with_the_ann_on_most_digits(name):
    assert agreement(name, 32) > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in FAST if n not in AGREEMENT_FAST])
def test_snn_agrees_with_the_ann_on_most_digits_slow(name):
    assert agreement(name, SMALL.get(name, 32)) > 0.5


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenet_v3_small", "regnet_y_400mf",
                                  "convnext_tiny", "swin_t"])
def test_other_models_name_their_first_unsupported_module(name):
    model = tv.models.get_model(name, weights=None).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnsupportedLayerError) as e:
        convert(model, torch.rand(2, 3, 64, 64))
    assert (e.value.path, e.value.layer_type) == UNSUPPORTED[name]
    assert f"'{e.value.path}' ({e.value.layer_type})" in str(e.value) and "Fix: " in str(e.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_every_other_model_names_its_first_unsupported_module(name):
    model = tv.models.get_model(name, weights=None).eval()
    with pytest.raises(UnsupportedLayerError) as e:
        convert(model, torch.rand(2, 3, 224, 224))
    assert (e.value.path, e.value.layer_type) == UNSUPPORTED[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", RELU_FAMILY)
def test_every_relu_model_converts_at_native_resolution(name):
    check_converts(name, NATIVE.get(name, 224), calibration=4, timesteps=2)
