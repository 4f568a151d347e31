"""Every zoo network converts with the defaults, and its SNN agrees with its ANN (issue 15).

The zoo is ``examples/benchmarks/zoo.py``. The default run trains a few small members
briefly (seconds each); ``-m slow`` takes every member trained fully (cached in
``examples/benchmarks/_cache/``; torchvision's members run where torchvision imports).
Agreement: the SNN's prediction after T = 64 steps is the ANN's on >= 95% of 64 test
digits. Where the ANN's largest output is shared (tv_squeezenet1_1's ReLU readout is silent,
all zeros, on a few digits: examples/benchmarks/RESULTS.md, "Why tv_squeezenet1_1 loses..."),
any class it rates highest counts as its prediction; the ANN must decide (a unique maximum)
on >= 90% of the digits, so that a silent network cannot pass.
"""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import snnedge
from converters import UnsupportedLayerError, convert
from snnedge.ann import train_classifier
from snnedge.datasets import load_mnist_digits, load_mnist_test

BENCHMARKS = Path(__file__).resolve().parents[1] / "examples" / "benchmarks"
# Shortcuts, overlapping padded ceil_mode pools, concatenation; the rest runs with -m slow.
FAST = ["lenet_w8", "resnet8_f", "vgg_overlap", "inception_small"]


@pytest.fixture(scope="module")
def zoo():
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("zoo", BENCHMARKS / "zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("zoo", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return sys.modules["zoo"]


@pytest.fixture(scope="module")
def digits():
    x, y = load_mnist_digits()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x_test, _ = load_mnist_test()
    return x[perm], y[perm], x_test[:64]


def agreement(zoo, name: str, ann, digits, n_calib: int = 256) -> float:
    member = zoo.MEMBERS[name]
    x_train, _, x_test = digits
    calib, x = zoo.inputs_for(member, x_train[:n_calib]), zoo.inputs_for(member, x_test)
    snn = convert(ann, calib)
    res = snnedge.simulate(snn, x, timesteps=64, progress=False)
    with torch.no_grad():
        out = ann(x)
    best = out == out.max(1, keepdim=True).values  # the classes the ANN rates highest
    assert float((best.sum(1) == 1).float().mean()) >= 0.9, f"{name}: the ANN leaves digits undecided"
    return float(best.gather(1, res.predictions.view(-1, 1)).float().mean())


def test_the_zoo_varies_depth_and_width(zoo):
    depths = {n: zoo.weighted_layers(zoo.build(n)) for n in zoo.available(include_torchvision=False)}
    assert min(depths.values()) == 3 and max(depths.values()) >= 50
    assert len(zoo.MEMBERS) >= 12


@pytest.mark.parametrize("name", FAST)
def test_briefly_trained_zoo_networks_agree_with_their_ann(zoo, digits, name):
    x, y, _ = digits
    member = zoo.MEMBERS[name]
    ann = zoo.build(name)
    torch.set_num_threads(1)
    train_classifier(ann, zoo.inputs_for(member, x[:1000]), y[:1000], epochs=1, progress=False)
    assert agreement(zoo, name, ann.eval(), digits, n_calib=128) >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    "mlp_dropout", "lenet_w8", "vgg_max", "vgg_functional", "allconv_strided", "vgg_wide256",
    "resnet8_f", "resnet", "preact_resnet", "inception_small", "densenet_small", "dwsep_relu6",
    "vgg_overlap", "resnet_deep", "tv_resnet18", "tv_googlenet", "tv_mobilenet_v2", "tv_alexnet",
    "tv_vgg11_bn", "tv_densenet121", "tv_squeezenet1_1", "tv_shufflenet_v2"])
def test_trained_zoo_networks_agree_with_their_ann(zoo, digits, name):
    if zoo.MEMBERS[name].torchvision:
        pytest.importorskip("torchvision")
    ann = zoo.trained(name)
    try:
        assert agreement(zoo, name, ann, digits) >= 0.95
    except UnsupportedLayerError as err:
        pytest.fail(f"{name} does not convert: {err}")


def test_readout_ties_finds_outputs_whose_maximum_repeats():
    """examples/benchmarks/readout_ties.py: an ANN output of all zeros (a silent ReLU readout)
    or with two equal maxima has no decision; argmax would pick the first."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("readout_ties", BENCHMARKS / "readout_ties.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.3, 0.2], [2.0, 1.0, 2.0], [-1.0, -2.0, -1.5]])
    assert module.tied(out).tolist() == [True, False, True, False]


def test_zoo_results_cache_measures_a_retrained_member_again(zoo, tmp_path, monkeypatch):
    """examples/benchmarks/conversion_zoo.py caches results by network, code and options; a
    result carries the digest of the weights it was measured on, so a member retrained with
    another recipe (same cache key) is measured again instead of reported stale."""
    spec = importlib.util.spec_from_file_location("conversion_zoo", BENCHMARKS / "conversion_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS_CACHE", tmp_path)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with torch.no_grad():
        b.weight.add_(1.0)
    da, db = module.weights_digest(a), module.weights_digest(b)
    assert da != db and da == module.weights_digest(a)
    key = {"network": "net", "what": "ann"}
    calls = []

    def compute(value):
        calls.append(value)
        return {"acc": value}

    assert module.cached(key, lambda: compute(0.5), False, weights=da)["acc"] == 0.5
    assert module.cached(key, lambda: compute(0.7), False, weights=da)["acc"] == 0.5
    assert module.cached(key, lambda: compute(0.9), False, weights=db)["acc"] == 0.9
    assert calls == [0.5, 0.9]
    with pytest.raises(module.NotMeasured):
        module.cached({"network": "other", "what": "ann"}, lambda: compute(1.0), False,
                      cached_only=True)
