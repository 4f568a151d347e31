"""Writing files and folders in one step: a reader never sees half of one.

Every file snnedge writes for later reading (saved networks, checkpoints, the MNIST cache,
report folders) goes through one of these two context managers: the content is written to a
temporary name beside the target, on the same file system, and moved into place with
``os.replace``, which POSIX and Windows perform atomically; on any error the temporary is
removed and the target is left as it was.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
>>> with atomic_path(path) as tmp:
...     _ = tmp.write_text("complete")
>>> open(path).read(), sorted(os.listdir(os.path.dirname(path)))
('complete', ['a.txt'])
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_folder"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step
    (``os.replace``), on failure it is removed. A reader never sees half a file.

    The temporary's name ends in ``.tmp``: a writer that appends its own suffix to a name
    (``np.savez`` adds ``.npz``) should be given an open file, ``open(tmp, "wb")``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh folder beside ``path`` to fill; on success it replaces ``path`` as a whole
    (an existing folder is moved aside first and removed after), on failure it is removed."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}-old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
