"""Which threads run the parts of snnedge's compiled kernels.

A kernel call split over threads (samples, neurons or pooled rows that do not overlap) can
run in two ways:

* ``"openmp"`` (the default where it applies): all parts at once on the OpenMP threads of
  the ``libgomp`` that PyTorch itself loaded, through the kernel module's ``parallel``.
  These are the threads that run PyTorch's own operators (oneDNN convolutions, the dense
  engine's tensor ops). After a parallel region they spin a while waiting for the next one
  (GNU OpenMP's ``GOMP_SPINCOUNT``), so work handed to them starts at once.
* ``"python"``: the first part on the calling thread, the others on a Python thread pool
  (the kernels release the GIL). Where a PyTorch operator ran just before, its OpenMP
  threads are still spinning on the same cores and the pool's threads compete with them:
  an event convolution measured 7.6 ms after another event layer and 14.8 ms right after a
  oneDNN convolution (2 threads, AMD EPYC Zen 4, examples/benchmarks/RESULTS.md, issue 16
  section 8). It is the fallback where PyTorch does not run on GNU OpenMP (macOS, Windows,
  builds with another runtime) or its library cannot be found.

Both run the same parts with the same arithmetic, so results are identical bit for bit
(tests/test_kernel_threads.py). ``SNNEDGE_KERNEL_THREADS=python|openmp`` or
:func:`set_kernel_threads` chooses; :func:`kernel_threads` says which is in use.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import os
from pathlib import Path

import torch

MODES = ("openmp", "python")
_mode: str | None = None  # None: not chosen yet (the environment, else the best available)


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                                 thread_name_prefix="snnedge-kernels")


def torch_libgomp() -> Path | None:
    """The GNU OpenMP library PyTorch's operators run on, or None: PyTorch's parallel backend
    is not OpenMP, or no ``libgomp`` is mapped into this process (macOS, Windows), or several
    are and none is PyTorch's own (the one under ``torch/lib``)."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    found = set()
    for line in maps.splitlines():  # address perms offset dev inode path
        fields = line.split(None, 5)
        if len(fields) == 6 and "libgomp" in Path(fields[5]).name:
            found.add(Path(fields[5]))
    if not found:
        return None
    torch_lib = Path(torch.__file__).resolve().parent / "lib"
    own = [p for p in found if p.resolve().parent == torch_lib]
    if own:
        return own[0]
    return next(iter(found)) if len(found) == 1 else None


@functools.cache
def _bind(kernel) -> bool:
    """Give ``kernel`` (the compiled module) libgomp's entry points; False where it cannot."""
    path = torch_libgomp()
    if path is None or not hasattr(kernel, "parallel"):
        return False
    try:  # the library already loaded: RTLD_NOLOAD never loads a second copy
        lib = ctypes.CDLL(str(path), mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        names = ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads")
        addresses = [ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in names]
    except (OSError, AttributeError):
        return False
    return bool(kernel.bind_openmp(*addresses))


def _kernel():
    """The compiled kernel module, or None where it was not built."""
    try:
        from . import _event_kernels
    except ImportError:
        return None
    return _event_kernels


def kernel_threads() -> str:
    """``"openmp"`` or ``"python"``: how split kernel calls run now (see the module's text)."""
    global _mode
    if _mode is None:
        wanted = os.environ.get("SNNEDGE_KERNEL_THREADS", "").strip().lower()
        if wanted and wanted not in MODES:
            raise ValueError(f"SNNEDGE_KERNEL_THREADS={wanted!r}: expected one of "
                             f"{', '.join(MODES)}. Unset it to use the best available.")
        kernel = _kernel()
        available = kernel is not None and _bind(kernel)
        if wanted == "openmp" and not available:
            raise RuntimeError("SNNEDGE_KERNEL_THREADS=openmp, but PyTorch does not run on a GNU "
                               "OpenMP library this process can find (or the compiled kernels "
                               "are not built); unset it to use Python threads.")
        _mode = wanted or ("openmp" if available else "python")
    return _mode


def set_kernel_threads(mode: str | None) -> str | None:
    """Run split kernel calls on ``"openmp"`` or ``"python"`` threads from now on (``None``:
    choose again from the environment); returns the previous choice. A ValueError for an
    unknown mode, a RuntimeError for ``"openmp"`` where it is not available."""
    global _mode
    if mode is not None and mode not in MODES:
        raise ValueError(f"set_kernel_threads: mode must be one of {', '.join(MODES)} or None; "
                         f"got {mode!r}.")
    previous = _mode
    if mode == "openmp":
        kernel = _kernel()
        if kernel is None or not _bind(kernel):
            raise RuntimeError("set_kernel_threads('openmp'): PyTorch does not run on a GNU "
                               "OpenMP library this process can find, or the compiled kernels "
                               "are not built; use 'python'.")
    _mode = mode
    return previous


def run_split(fn, parts: list[tuple]) -> None:
    """``fn(*part)`` for every part at once (``fn`` one of the compiled module's kernels, the
    parts disjoint): on PyTorch's OpenMP threads, or on this thread and the Python pool."""
    if not parts:
        return
    if len(parts) > 1 and kernel_threads() == "openmp":
        fn.__self__.parallel(fn.__name__, list(parts), len(parts))
        return
    jobs = [_pool().submit(fn, *part) for part in parts[1:]]
    fn(*parts[0])
    for job in jobs:
        job.result()


def submit(fn, *args) -> concurrent.futures.Future:
    """``fn(*args)`` on the Python pool (for other libraries' compiled kernels that release
    the GIL, such as scipy's sparse product)."""
    return _pool().submit(fn, *args)


__all__ = ["MODES", "kernel_threads", "run_split", "set_kernel_threads", "submit", "torch_libgomp"]
