"""Tests for snnedge.datasets: layout, value ranges, caching, IDX parsing and error messages."""
from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import importlib.util
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from snnedge import datasets
from snnedge.datasets import (as_loader, load_digits_8x8, load_mnist_digits, load_mnist_test,
                              read_idx, synthetic_images, train_test_split)

# The MNIST test set ships inside the package (snnedge/data/mnist); SHA-256 of the
# decompressed IDX bytes, as its README lists them.
PACKAGED_MNIST = importlib.resources.files("snnedge").joinpath("data", "mnist")
MNIST_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def check_layout(x: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...], classes: int) -> None:
    assert tuple(x.shape) == shape
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.shape == (shape[0],)
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0
    assert 0 <= y.min().item() and y.max().item() < classes


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    """Write ``array`` (uint8) as a gzip IDX file: magic (0x08 type, ndim), dims, data."""
    magic = 0x0800 + array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_digits_layout_and_cache_round_trip(tmp_path):
    x, y = load_mnist_digits(cache_dir=tmp_path)
    check_layout(x, y, (5000, 1, 28, 28), 10)
    assert torch.equal(y.bincount(), torch.full((10,), 500))
    # Pixels are p / 255 for integer p: the scaling lost nothing.
    assert torch.equal((x * 255).round() / 255, x)
    cache = tmp_path / "mnist_digits_5000.npz"
    assert cache.is_file()
    with np.load(cache, allow_pickle=False) as data:
        assert data["images"].dtype == np.uint8
    x2, y2 = load_mnist_digits(cache_dir=tmp_path)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_mnist_digits_rebuilds_a_corrupted_cache(tmp_path):
    (tmp_path / "mnist_digits_5000.npz").write_bytes(b"not a zip file")
    x, y = load_mnist_digits(cache_dir=tmp_path)
    assert x.shape == (5000, 1, 28, 28)
    with np.load(tmp_path / "mnist_digits_5000.npz", allow_pickle=False) as data:
        assert data["labels"].shape == (5000,)


def test_mnist_digits_default_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    load_mnist_digits()
    assert (tmp_path / "snnedge" / "mnist_digits_5000.npz").is_file()


def test_mnist_test_set_ships_with_the_package(monkeypatch):
    monkeypatch.delenv("SNNEDGE_MNIST_DIR", raising=False)
    x, y = load_mnist_test()
    check_layout(x, y, (10000, 1, 28, 28), 10)
    # Class counts of the MNIST test set (LeCun et al. 1998), and its first labels.
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y.bincount().tolist() == counts
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # the loader reads exactly the shipped files: same labels and pixels, byte for byte
    for name, digest in MNIST_SHA256.items():
        with PACKAGED_MNIST.joinpath(name).open("rb") as f:
            assert hashlib.sha256(gzip.decompress(f.read())).hexdigest() == digest, name
    with PACKAGED_MNIST.joinpath("t10k-images-idx3-ubyte.gz").open("rb") as f:
        pixels = np.frombuffer(gzip.decompress(f.read()), np.uint8, offset=16)
    assert torch.equal((x * 255).round().to(torch.uint8).flatten(), torch.from_numpy(pixels.copy()))


def test_mnist_package_data_credits_and_declaration():
    readme = PACKAGED_MNIST.joinpath("README.md").read_text()
    for credit in ("Yann LeCun", "Corinna Cortes", "Burges", "CC BY-SA 3.0"):
        assert credit in readme
    # pyproject.toml declares every shipped file as package data, so wheels carry them too
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["snnedge"]
    for name in [*MNIST_SHA256, "README.md"]:
        assert any(Path("data", "mnist", name).match(g) for g in globs), name


def test_mnist_test_incomplete_installation(tmp_path, monkeypatch):
    monkeypatch.delenv("SNNEDGE_MNIST_DIR", raising=False)
    monkeypatch.setattr(datasets.importlib.resources, "files", lambda package: tmp_path)
    expected = tmp_path / "data" / "mnist"
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"The MNIST test set that ships with snnedge is missing from {expected}: this "
            "installation of snnedge is incomplete. Reinstall it")):
        load_mnist_test()


def test_idx_parsing_golden(tmp_path):
    # Three 28x28 images whose pixel (i, r, c) is (i * 50 + r + c) % 256, labels 3, 0, 9.
    i, r, c = np.meshgrid(np.arange(3), np.arange(28), np.arange(28), indexing="ij")
    images = ((i * 50 + r + c) % 256).astype(np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([3, 0, 9]))
    raw = read_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 0x00000803)
    assert raw.shape == (3, 28, 28) and raw.dtype == np.uint8
    x, y = load_mnist_test(tmp_path)
    check_layout(x, y, (3, 1, 28, 28), 10)
    assert y.tolist() == [3, 0, 9]
    assert x[0, 0, 0, 0].item() == 0.0                             # (0 + 0 + 0) % 256 = 0
    assert x[1, 0, 27, 27].item() == pytest.approx(104 / 255)     # 50 + 27 + 27 = 104
    assert x[2, 0, 27, 27].item() == pytest.approx(154 / 255)     # 100 + 27 + 27 = 154


def test_idx_corrupted_magic_number(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)), magic=0x00000903)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2]))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    message = (f"IDX file {path} has magic number 0x00000903; expected 0x00000803. The file is "
               "corrupted or is not the IDX file it is named as; replace it.")
    with pytest.raises(ValueError, match=re.escape(message)):
        load_mnist_test(tmp_path)


def test_idx_size_mismatch(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes((0x801).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes([1, 2, 3]))
    with pytest.raises(ValueError, match=r"declares dimensions \(5,\) \(5 bytes of data\); got 3"):
        read_idx(path)


def test_mnist_test_images_and_labels_must_agree(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="2 images in .* but 3 labels in"):
        load_mnist_test(tmp_path)


def test_mnist_test_missing_directory(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("SNNEDGE_MNIST_DIR", str(missing))
    message = (f"MNIST test set directory not found; tried: {missing}. Put "
               "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in a directory and pass "
               "it as root= or set the SNNEDGE_MNIST_DIR environment variable to it.")
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        load_mnist_test()


def test_mnist_test_directory_from_environment_overrides_package_data(tmp_path, monkeypatch):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.full((2, 28, 28), 51))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([6, 8]))
    monkeypatch.setenv("SNNEDGE_MNIST_DIR", str(tmp_path))
    x, y = load_mnist_test()
    check_layout(x, y, (2, 1, 28, 28), 10)
    assert y.tolist() == [6, 8] and torch.all(x == 51 / 255)
    # root= wins over the environment variable
    x_pkg, _ = load_mnist_test(PACKAGED_MNIST)
    assert len(x_pkg) == 10000


def test_mnist_test_override_without_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNEDGE_MNIST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"MNIST test file(s) missing: {tmp_path / 't10k-images-idx3-ubyte.gz'}, "
            f"{tmp_path / 't10k-labels-idx1-ubyte.gz'}. Copy them there or point root= / "
            "SNNEDGE_MNIST_DIR at a complete copy.")):
        load_mnist_test()


def test_mnist_test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz, .*t10k-labels"):
        load_mnist_test(tmp_path)


def test_digits_8x8():
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("scikit-learn is not installed")
    x, y = load_digits_8x8()
    check_layout(x, y, (1797, 1, 8, 8), 10)
    assert x.max().item() == 1.0  # 16 / 16
    # First image of the UCI optdigits set: a zero. Row 0 is 0 0 5 13 9 1 0 0 (out of 16).
    assert y[0].item() == 0
    assert (x[0, 0, 0] * 16).tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_digits_8x8_without_sklearn(monkeypatch):
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=re.escape("`pip install scikit-learn`")):
        load_digits_8x8()


@pytest.mark.parametrize("shape, classes", [((1, 28, 28), 10), ((3, 8, 8), 4), ((2, 5, 7), 2)])
def test_synthetic_layout_and_balance(shape, classes):
    x, y = synthetic_images(103, shape=shape, classes=classes, seed=1)
    check_layout(x, y, (103, *shape), classes)
    counts = y.bincount(minlength=classes)
    assert counts.max() - counts.min() <= 1


def test_synthetic_is_seeded_and_learnable():
    x, y = synthetic_images(500, seed=0)
    x2, y2 = synthetic_images(500, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, synthetic_images(500, seed=1)[0])
    # Classes are shared across seeds: nearest class mean fitted on seed 0 classifies seed 1.
    x_test, y_test = synthetic_images(300, seed=1)
    means = torch.stack([x[y == k].mean(0) for k in range(10)]).flatten(1)
    predictions = torch.cdist(x_test.flatten(1), means).argmin(1)
    assert (predictions == y_test).float().mean().item() > 0.9


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "The 'n' parameter of synthetic_images must be a positive integer. Got 0 instead."),
    ({"n": 5, "classes": 1}, "The 'classes' parameter of synthetic_images must be an integer >= 2"),
    ({"n": 5, "shape": (28, 28)}, "must be a tuple (C, H, W) of positive integers"),
])
def test_synthetic_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        synthetic_images(**kwargs)


def test_train_test_split_partitions():
    x, y = torch.arange(20.0).view(10, 2), torch.arange(10)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_fraction=0.3, seed=4)
    assert len(x_te) == 3 and len(x_tr) == 7
    assert sorted(torch.cat([y_tr, y_te]).tolist()) == list(range(10))
    assert torch.equal(x_tr[:, 0], 2.0 * y_tr)  # rows stay paired with their labels
    again = train_test_split(x, y, test_fraction=0.3, seed=4)
    assert torch.equal(again[3], y_te)


def test_train_test_split_errors():
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=re.escape("must be a float in (0, 1). Got 1.5 instead.")):
        train_test_split(x, y, test_fraction=1.5)
    with pytest.raises(ValueError, match="leaves an empty part"):
        train_test_split(x, y, test_fraction=0.1)
    with pytest.raises(ValueError, match=r"Got x \(4, 2\) and y \(3,\) instead"):
        train_test_split(x, y[:3], test_fraction=0.5)
    with pytest.raises(TypeError, match="must be torch.Tensor. Got ndarray and Tensor"):
        train_test_split(np.zeros((4, 2)), y, test_fraction=0.5)


def test_as_loader_batches_and_seeded_shuffle():
    x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    batches = list(as_loader(x, y, batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    first = [b[1].tolist() for b in as_loader(x, y, batch_size=4, shuffle=True, seed=3)]
    second = [b[1].tolist() for b in as_loader(x, y, batch_size=4, shuffle=True, seed=3)]
    assert first == second and sorted(sum(first, [])) == list(range(10))
    with pytest.raises(ValueError, match="The 'batch_size' parameter of as_loader"):
        as_loader(x, y, batch_size=0)
